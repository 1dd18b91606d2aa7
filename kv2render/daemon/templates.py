"""One template's state across the daemon's passes, and the status file's rows for it.

    Daemon pass --render result--> TemplateState (versions, error, backoff, times)
    TemplateState --template_status()--> output.status.TemplateStatus rows

The loop (:mod:`kv2render.daemon.loop`) keeps one :class:`TemplateState` per configured
template; a reload replaces them all. Only metadata lives here (mount, path, version,
destination, error text that already went through redaction): never a secret's value,
which the status file must not hold (KV2-AC-181).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kv2render.errors import CommandError, Kv2RenderError
from kv2render.logsetup import count
from kv2render.output.status import TemplateStatus
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


def template_status(templates: Iterable[TemplateState]) -> list[TemplateStatus]:
    """The status file's ``templates`` rows: versions, times and the first error's text."""
    out = []
    for t in templates:
        versions: dict[SecretLocation, int | None] = {loc: None for loc in t.locations}
        versions.update(t.versions)
        err = t.error or t.source_error or t.command_error
        out.append(
            TemplateStatus(
                where=t.spec_where,
                destination=t.item.spec.destination,
                source=t.item.spec.source,
                versions=versions,
                last_render=t.last_render,
                last_write=t.last_write,
                last_error=None if err is None else str(err),
            )
        )
    return out


def summary(templates: Sequence[TemplateState]) -> tuple[str, int, int]:
    """The one-line summary (systemd STATUS=), with the rendered and failing counts."""
    ok = sum(1 for t in templates if t.error is None and t.last_render is not None)
    failed = sum(1 for t in templates if t.error is not None)
    line = f"{count(len(templates), 'template')}: {ok} rendered, {failed} failing"
    failed_commands = sum(1 for t in templates if t.command_error is not None)
    if failed_commands:
        # KV2-INV-399: a failing command shows in the summary as in the status file.
        line += f"; {count(failed_commands, 'command')} failed"
    return line, ok, failed
