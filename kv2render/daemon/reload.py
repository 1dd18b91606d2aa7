"""Config reload and template source edits: the decisions, not the loop's state.

    SIGHUP / config file edit --> load_new(): load + prepare, or keep the running config
    template source edit ------> reprepare(): compile the edited source, or keep the old one
    FilesChanged paths --------> expand_changed(): a Kubernetes '..data' swap means all files

The loop (:mod:`kv2render.daemon.loop`) applies what these return to its own state. On
any error the running config or template stays in force (reference/vault-agent.md §6:
SIGHUP and config edits reload templates too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from kv2render.config import Config
from kv2render.daemon.templates import TemplateState
from kv2render.errors import Kv2RenderError
from kv2render.runner import PreparedTemplate

log = logging.getLogger(__name__)


def watched_files(
    templates: Iterable[TemplateState], config_path: Path | None, credentials: Iterable[Path]
) -> frozenset[Path]:
    """The files whose change the loop acts on: sources, the config, credential files."""
    files: set[Path] = {t.item.spec.source for t in templates if t.item.spec.source is not None}
    if config_path is not None:
        files.add(config_path)
    files.update(credentials)
    return frozenset(Path(os.path.abspath(f)) for f in files if f is not None)


def expand_changed(paths: frozenset[str], watched: Callable[[], Iterable[Path]]) -> set[str]:
    """The normalised changed paths, with every watched file of a folder whose '..data'
    symlink was swapped."""
    changed = {os.path.normpath(p) for p in paths}
    for p in list(changed):
        if os.path.basename(p) == "..data":
            # Kubernetes ConfigMap/Secret volumes swap a '..data' symlink: every file
            # in that directory may have changed at once.
            folder = os.path.dirname(p)
            changed |= {str(f) for f in watched() if str(f.parent) == folder}
    return changed


def reprepare(t: TemplateState, cfg: Config, prepare_one: Callable[..., PreparedTemplate]) -> bool:
    """Compile a template's edited source into ``t``; False when the edit was refused
    (``t.source_error`` says why; the previous version stays in use)."""
    spec = t.item.spec
    if spec.source is not None and not spec.source.exists():
        # Editors that save by rename remove the file for an instant; the next event
        # brings it back. Until then the previous version stays in use.
        log.debug(
            "%s: source %s is gone for now; keeping the previous version",
            spec.where,
            spec.source,
        )
        return True
    try:
        item = prepare_one(
            spec,
            max_output_bytes=cfg.template_config.max_output_bytes,
            render_timeout=cfg.template_config.render_timeout,
        )
    except Kv2RenderError as exc:
        t.source_error = exc
        log.error(
            "%s: edited source refused, the previous version stays in use: %s", spec.where, exc
        )
        return False
    log.info("%s: source %s changed; re-rendering", spec.where, spec.source)
    t.item = item
    t.source_error = None
    t.dynamic = frozenset()  # the edited template's render finds its own (KV2-INV-392)
    t.dirty = True
    return True


class Refused(Exception):
    """The new config could not be loaded or prepared; the running one stays."""


def load_new(
    reason: str,
    running: Config,
    reload_config: Callable[[], Config],
    prepare: Callable[[Config], list[PreparedTemplate]],
    *,
    only_if_different: bool,
) -> tuple[Config, list[PreparedTemplate]] | None:
    """The new config and its prepared templates; None when it equals the running one
    and ``only_if_different``. Raises :class:`Refused` (after logging why) on any error."""
    try:
        new = reload_config()
        if only_if_different and new == running:
            log.debug("%s: config unchanged", reason)
            return None
        return new, prepare(new)
    except Kv2RenderError as exc:
        log.error("%s: new config refused, the running config stays in force: %s", reason, exc)
        raise Refused(reason) from None
