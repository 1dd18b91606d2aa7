"""The optional top-level blocks that most configs lack: process supervision and token sinks.

Each is parsed by a module of its own (config/supervise.py, config/sink.py), imported only
when the config has the block: a plain ``--once`` pays nothing for them at start-up
(KV2-NFR-238).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kv2render.config.values import Section

if TYPE_CHECKING:
    from kv2render.config.auth import AuthSettings
    from kv2render.config.sink import FileSink
    from kv2render.config.supervise import EnvTemplateSpec, ExecSpec

__all__ = ["has_sink", "sinks", "supervisor"]


def supervisor(
    top: Section, base: Path, supervised: bool
) -> tuple[tuple[EnvTemplateSpec, ...], ExecSpec | None]:
    """Process-supervisor mode's env templates and exec block; ((), None) without them."""
    if not supervised:
        return (), None
    from kv2render.config.supervise import supervisor_settings

    return supervisor_settings(top, base, bool(top.get("template")))


def has_sink(top: Section) -> bool:
    auto_auth = top.get("auto_auth")
    return isinstance(auto_auth, Mapping) and auto_auth.get("sink") is not None


def sinks(top: Section, auth: AuthSettings | None, base: Path) -> tuple[FileSink, ...]:
    """The ``auto_auth.sink`` blocks as file sinks; () without any."""
    if not has_sink(top):
        return ()
    from kv2render.config.sink import parse_sinks

    return parse_sinks(top.get("auto_auth")["sink"], base, auth)
