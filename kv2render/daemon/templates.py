"""One template's state across the daemon's passes.

    Daemon pass --render result--> TemplateState (versions, error, backoff, times)
    TemplateState --status_doc.template_status()--> the status file's rows

The loop (:mod:`kv2render.daemon.loop`) keeps one :class:`TemplateState` per configured
template; a reload replaces them all. Only metadata lives here (mount, path, version,
destination, error text that already went through redaction): never a secret's value,
which the status file must not hold (KV2-AC-181).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kv2render.errors import CommandError, Kv2RenderError
from kv2render.refs import SecretLocation
from kv2render.runner import PreparedTemplate, RenderResult


@dataclass
class TemplateState:
    """One template's state across passes (metadata plus the compiled template)."""

    item: PreparedTemplate
    versions: dict[SecretLocation, int] = field(default_factory=dict)
    dirty: bool = True  # render at the next pass whatever the versions say
    failures: int = 0
    retry_at: float = 0.0
    error: Kv2RenderError | None = None
    source_error: Kv2RenderError | None = None
    command_error: CommandError | None = None
    last_render: float | None = None
    last_write: float | None = None
    # KV2-INV-392: secrets whose paths the last render computed; polled like the constant
    # ones, and a new version of one re-renders this template (and only the templates that
    # used it).
    dynamic: frozenset[SecretLocation] = frozenset()

    @property
    def spec_where(self) -> str:
        return self.item.spec.where

    @property
    def locations(self) -> frozenset[SecretLocation]:
        return self.item.locations | self.dynamic if self.dynamic else self.item.locations

    def succeeded(self, result: RenderResult, wall_now: float) -> None:
        """A render without error: its versions are the ones to compare at the next poll."""
        self.dirty = False
        self.dynamic = frozenset(result.versions.keys() - self.item.locations)
        self.versions = dict(result.versions)
        self.error = None
        self.failures = 0
        self.last_render = wall_now
        if result.did_write:
            self.last_write = self.last_render
            self.command_error = None

    def failed(self, error: Kv2RenderError) -> Kv2RenderError:
        """A failed read or render; the caller decides when to retry (KV2-FC-161)."""
        self.dirty = False
        self.error = error
        self.failures += 1
        return error
