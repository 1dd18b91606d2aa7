"""What one kv2render instance owns besides its outputs: its lock, and the temp files a
killed run of it left next to them (KV2-INV-167, KV2-INV-280, KV2-AC-295).

Used by ``--once`` (kv2render.app) and by the daemon (kv2render.daemon.service) alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kv2render.config import Config
from kv2render.errors import Kv2RenderError
from kv2render.logsetup import count

if TYPE_CHECKING:
    # The status module is imported when a lock is taken: --once without leftovers and
    # without a pid file never is (KV2-NFR-240).
    from kv2render.output.status import InstanceLock

__all__ = ["destinations", "instance_lock", "remove_leftover_temp_files"]

log = logging.getLogger(__name__)


def destinations(cfg: Config) -> list[Path]:
    return [t.destination for t in cfg.templates] + (
        [cfg.status_file] if cfg.status_file is not None else []
    )


def instance_lock(cfg: Config) -> InstanceLock:
    """The lock that tells two kv2render instances serving the same files of each other."""
    from kv2render.output.status import instance_lock_for

    return instance_lock_for(cfg.status_file, [t.destination for t in cfg.templates])


def remove_leftover_temp_files(cfg: Config) -> None:
    """Remove the temp files a killed run left next to each output (KV2-INV-280).

    The caller holds the instance lock: another kv2render writing the same files at this
    moment would otherwise lose its temp file (and retry the write).
    """
    from kv2render.output.writer import cleanup_stale_temp_files

    for dest in destinations(cfg):
        try:
            removed = cleanup_stale_temp_files(dest.parent, dest.name)
        except (OSError, Kv2RenderError) as exc:
            log.debug("temp file clean-up in %s skipped: %s", dest.parent, exc)
            continue
        if removed:
            log.info("removed %s next to %s", count(removed, "stale temp file"), dest)
