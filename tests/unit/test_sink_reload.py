"""A config reload that changes only the token sink reconnects, so that the next login
writes the new sink (KV2-INV-490)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kv2render.config.sink import FileSink
from kv2render.daemon.ticks import ReloadRequested

from .test_loop import POLL, two_templates


def test_reload_with_a_new_sink_logs_in_again() -> None:
    """KV2-INV-490: a sink added by a reload is written by a fresh login; the same config
    again changes nothing."""
    h = two_templates()
    other = replace(h.cfg, sinks=(FileSink(Path("/run/app/token")),))
    h.kw = {"reload_config": lambda: other}
    h.run(POLL, ReloadRequested(), POLL)
    assert h.store.closed and h.store.logins == 2
