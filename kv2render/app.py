"""The sub-commands' bodies: config -> store -> runner, for ``--once``, ``check``,
``status`` and ``quickstart``. The daemon lives in ``loop.py`` and ``service.py``.

Kept apart from ``cli.py`` so that the CLI only parses argv and maps errors to
exit codes, and apart from ``runner.py`` so that a pass stays free of process
concerns (which store to open, what to print).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kv2render import logsetup, runner
from kv2render.config import Config, load
from kv2render.errors import ConfigError, Kv2RenderError
from kv2render.vault import SecretStore

if TYPE_CHECKING:
    from kv2render.status import InstanceLock

log = logging.getLogger(__name__)


def open_store(cfg: Config) -> Any:
    """The real store for ``cfg`` (hvac is imported here, lazily, and only through vault.py)."""
    from kv2render.vault import open_store as _open

    return _open(cfg)


def warn_transport(cfg: Config) -> None:
    if cfg.vault.tls_skip_verify:
        # KV2-INV-190: said on every start, never the default.
        log.warning(
            "vault.tls_skip_verify is on: the server's TLS certificate is NOT verified; "
            "anyone on the path can read the secrets and the token"
        )
    if cfg.vault.address.startswith("http://") and not _is_loopback(cfg.vault.address):
        log.warning(
            "vault.address %s is plain http to a non-loopback host: tokens and secrets cross "
            "the network unencrypted",
            cfg.vault.address,
        )


def _is_loopback(address: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(address).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _destinations(cfg: Config) -> list[Path]:
    return [t.destination for t in cfg.templates] + (
        [cfg.status_file] if cfg.status_file is not None else []
    )


def instance_lock(cfg: Config) -> InstanceLock:
    """The lock that tells two kv2render instances serving the same files of each other."""
    from kv2render.status import InstanceLock, lock_path

    return InstanceLock(lock_path(cfg.status_file, [t.destination for t in cfg.templates]))


def remove_leftover_temp_files(cfg: Config) -> None:
    """Remove the temp files a killed run left next to each output (KV2-INV-280).

    The caller holds the instance lock: another kv2render writing the same files at this
    moment would otherwise lose its temp file (and retry the write).
    """
    from kv2render.writer import cleanup_stale_temp_files

    for dest in _destinations(cfg):
        try:
            removed = cleanup_stale_temp_files(dest.parent, dest.name)
        except (OSError, Kv2RenderError) as exc:
            log.debug("temp file clean-up in %s skipped: %s", dest.parent, exc)
            continue
        if removed:
            log.info("removed %d stale temp file(s) next to %s", removed, dest)


def _once_cleanup(cfg: Config) -> None:
    """--once removes leftovers too, when there are any and no daemon holds the lock. The
    directory listing is cheap; the lock is taken only when something is left over."""
    from kv2render.writer import stale_temp_files

    if not any(stale_temp_files(d.parent, d.name) for d in _destinations(cfg)):
        return
    lock = instance_lock(cfg)
    if lock.acquire():
        try:
            remove_leftover_temp_files(cfg)
        finally:
            lock.release()


def render_once(cfg: Config, *, store: SecretStore | None = None) -> int:
    """``kv2render --once``: one pass over every template; the pass's exit code."""
    prepared = runner.prepare(cfg)
    warn_transport(cfg)
    _once_cleanup(cfg)
    pid_file = None
    if cfg.pid_file is not None:
        from kv2render.status import PidFile

        pid_file = PidFile(cfg.pid_file)
        pid_file.write()
    own = store is None
    active = open_store(cfg) if store is None else store
    try:
        login = getattr(active, "login", None)
        if callable(login):
            login()
        report = runner.run_pass(prepared, active, concurrency=cfg.template_config.concurrency)
    finally:
        if own:
            active.close()
        if pid_file is not None:
            pid_file.remove()
    written = sum(1 for r in report.results if r.did_write)
    failed = len(report.failed)
    log.info(
        "pass complete: %d templates, %d written, %d unchanged, %d failed, %d secrets read",
        len(report.results),
        written,
        len(report.results) - written - failed,
        failed,
        report.reads,
    )
    return report.exit_code


def check(config_path: str, *, fmt: str = "text") -> int:
    """``kv2render check``: validate offline and list what would be read (KV2-AC-113)."""
    cfg = load(config_path, require_credentials=False)
    prepared = runner.prepare(cfg)
    for item in prepared:
        refs = sorted(str(loc) for loc in item.locations)
        shown = ", ".join(refs) or ("(computed paths only)" if item.dynamic else "(no secrets)")
        logsetup.emit(
            {
                "event": "check",
                "template": item.spec.where,
                "destination": str(item.spec.destination),
                "syntax": "ref" if item.spec.ref is not None else item.spec.syntax,
                "reads": refs,
                "dynamic": list(item.dynamic),
            },
            fmt,
            f"{item.spec.where}: {item.spec.destination} <- {shown}",
        )
        for where in item.dynamic:
            # KV2-AC-393: a path computed while rendering is known only then (KV2-INV-390).
            logsetup.emit(
                {"event": "check", "template": item.spec.where, "dynamic_at": where},
                fmt,
                f"{item.spec.where}: dynamic secret path at {where} (resolved while rendering)",
            )
    unique = {loc for item in prepared for loc in item.locations}
    dynamic = sum(len(item.dynamic) for item in prepared)
    logsetup.emit(
        {
            "event": "check",
            "valid": True,
            "templates": len(prepared),
            "unique_secrets": len(unique),
            "dynamic_paths": dynamic,
        },
        fmt,
        f"config OK: {len(prepared)} templates, {len(unique)} unique secrets"
        + (f" (+ {dynamic} computed while rendering)" if dynamic else "")
        + f", auth {cfg.auth.type}, address {cfg.vault.address}",
    )
    return 0


def print_status(config_path: str, *, fmt: str = "text") -> int:
    cfg = load(config_path, require_credentials=False)
    if cfg.status_file is None:
        raise ConfigError(
            "no status file is configured", where="status_file", hint="set status_file"
        )
    try:
        text = cfg.status_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"status file {str(cfg.status_file)!r} does not exist yet (is the daemon running?)",
            where="status_file",
        ) from None
    if fmt == "json":
        sys.stdout.write(json.dumps(json.loads(text), separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def describe_file(path: Path) -> dict[str, Any]:
    """Metadata of a written file: size, mode, a short digest. Never its content."""
    st = path.lstat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return {
        "path": str(path),
        "bytes": st.st_size,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "sha256": digest,
    }


def _shown_dir(path: Path) -> str:
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else relative


def quickstart(directory: str, out: str, *, fmt: str = "text") -> int:
    """Dev server + the quickstart example, rendered once into ``out``."""
    from kv2render.devserver import DevServer

    example = Path(directory)
    config_file = example / "kv2render.yaml"
    seed = example / "seed.yaml"
    for needed in (config_file, seed):
        if not needed.is_file():
            raise ConfigError(
                f"{str(needed)!r} not found",
                where="quickstart",
                hint="run from the kv2render source folder, or pass the example folder",
            )
    out_dir = Path(out).resolve()
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with DevServer(flavor="vault", seed=seed) as server:
        logsetup.emit(
            {"event": "dev-server", "address": server.url},
            fmt,
            f"dev server (in memory, development only) listening on {server.url}",
        )
        env = {"VAULT_ADDR": server.url, "VAULT_TOKEN": server.root_token}
        cfg = load(config_file, env=env)
        cfg = dataclasses.replace(
            cfg,
            templates=tuple(
                dataclasses.replace(t, destination=out_dir / t.destination.name, command=None)
                for t in cfg.templates
            ),
        )
        code = render_once(cfg)
    for spec in cfg.templates:
        if spec.destination.exists():
            info = describe_file(spec.destination)
            logsetup.emit(
                {"event": "written", **info},
                fmt,
                f"wrote {info['path']} ({info['bytes']} bytes, mode {info['mode']}, "
                f"sha256 {info['sha256']}...)",
            )
    if code == 0:
        logsetup.emit(
            {"event": "done", "out": str(out_dir)},
            fmt,
            f"done: look at the files in {_shown_dir(out_dir)} (they hold dev-server secrets)",
        )
    return code


def run_daemon(cfg: Config, *, config_path: str, overrides: dict[str, Any]) -> int:
    from kv2render.service import run

    return run(cfg, config_path=config_path, overrides=overrides)
