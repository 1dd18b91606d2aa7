"""What the daemon says about itself: the status file, its copy for metrics, systemd's lines.

    Daemon --write(state, templates, token)--> StatusReport --document()--> StatusFile
                                                            └--publish()--> metrics
    Daemon pass done --after_pass(templates)--> READY=1 once, then STATUS= on a change

:class:`StatusReport` holds what the reports need across passes (ready yet, the last
summary line, the state word); the loop (:mod:`kv2render.daemon.loop`) calls it after each
pass and on each change of state. The status file holds metadata only: versions, times
and error text that already went through redaction, never a secret or a token
(KV2-AC-181).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from kv2render.daemon.metrics import NullRecorder
from kv2render.daemon.notify import Notifier
from kv2render.daemon.templates import TemplateState
from kv2render.logsetup import count
from kv2render.output.status import StatusFile, TemplateStatus, document
from kv2render.refs import SecretLocation

log = logging.getLogger(__name__)


class StatusReport:
    """The status file (replaced on a reload that moves it), systemd's notify socket and
    the metrics recorder's copy of the status document."""

    def __init__(
        self,
        status_file: StatusFile,
        notifier: Notifier,
        metrics: NullRecorder,
        *,
        started: float,
    ) -> None:
        self.status_file = status_file
        self.notifier = notifier
        self.metrics = metrics
        self.started = started
        self.ready = False
        self.state = "starting"
        self._last_line = ""

    def write(
        self,
        state: str,
        templates: Iterable[TemplateState],
        *,
        token: dict[str, Any] | None,
        now: float,
        last_successful_poll: float | None,
    ) -> None:
        doc = document(
            template_status(templates),
            started=self.started,
            now=now,
            ready=self.ready,
            state=state,
            token=token,
            last_successful_poll=last_successful_poll,
        )
        self.status_file.write(doc)
        self.metrics.publish(doc)

    def after_pass(self, templates: Sequence[TemplateState]) -> None:
        """Set the state word; READY=1 after the first complete render, STATUS= on change."""
        line, ok, failed = summary(templates)
        self.state = "running" if failed == 0 else "degraded"
        if not self.ready and ok == len(templates):
            # READY=1 after the first complete render: units ordered After= us find files.
            self.ready = True
            self.notifier.ready(line)
            log.info("%s rendered; ready", count(len(templates), "template"))
        elif line != self._last_line:
            self.notifier.status(line)
        self._last_line = line


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
