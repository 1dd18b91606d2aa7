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
from kv2render.config.auth import TokenEnvSettings, config_keys
from kv2render.errors import ConfigError, Kv2RenderError, raise_all
from kv2render.logsetup import count
from kv2render.output.instance import destinations, instance_lock, remove_leftover_temp_files
from kv2render.store.transport import transport_warnings, warn_transport

if TYPE_CHECKING:
    from kv2render.store.client import SessionStore

log = logging.getLogger(__name__)


def _once_cleanup(cfg: Config) -> None:
    """--once removes leftovers too, when there are any and no daemon holds the lock. The
    directory listing is cheap; the lock is taken only when something is left over."""
    from kv2render.output.writer import any_stale_temp_files

    if not any_stale_temp_files(destinations(cfg)):
        return
    lock = instance_lock(cfg)
    if lock.acquire():
        try:
            remove_leftover_temp_files(cfg)
        finally:
            lock.release()


def render_once(cfg: Config, *, store: SessionStore | None = None) -> int:
    """``kv2render --once``: one pass over every template; the pass's exit code."""
    from kv2render.hardening import disable_core_dumps

    disable_core_dumps()  # KV2-INV-380: before the first login, so no token is ever dumped
    prepared = runner.prepare(cfg)
    if cfg.exec is not None:
        # KV2-INV-478: as Vault Agent, a one-shot run starts no supervised child.
        log.info("exec: %s is not run with --once or exit_after_auth", cfg.exec.command[0])
    warn_transport(cfg.vault)
    _once_cleanup(cfg)
    pid_file = None
    if cfg.pid_file is not None:
        from kv2render.output.status import PidFile

        pid_file = PidFile(cfg.pid_file)
        pid_file.write()
    own = store is None
    active: SessionStore | None = None
    try:
        # Inside the try: a malformed VAULT_TOKEN is refused here (KV2-INV-351), and the
        # pid file must still go. hvac is imported here, lazily, by the one opener.
        if store is None:
            from kv2render.output.sink import token_writer
            from kv2render.store.client import open_store

            # KV2-INV-490: with a sink, the token is written there after the login.
            active = open_store(cfg, once=True, on_token=token_writer(cfg.sinks))
        else:
            active = store
        # KV2-INV-354: waiting for the server (logins, reads, retries) is bounded.
        active.set_deadline(cfg.once_timeout, f"--timeout {cfg.once_timeout:g}s")
        active.login()
        report = runner.run_pass(prepared, active, concurrency=cfg.template_config.concurrency)
        if report.exit_code == 0:
            # KV2-INV-352: --once keeps the AppRole secret_id file until the run succeeded.
            active.authenticator.release_credentials()
    finally:
        if own and active is not None:
            active.close()
        if pid_file is not None:
            pid_file.remove()
    log.info("pass complete: %s", report.summary())
    return report.exit_code


def check(config_path: str, *, fmt: str = "text") -> int:
    """``kv2render check``: validate offline and list what would be read (KV2-AC-113).

    Every problem is reported in one run, not only the first: the config's and each
    template's (KV2-INV-398). A valid config still gets warnings for what only the target
    host can settle: missing files and folders, no token source, plain http, no TLS
    verification (KV2-INV-400).
    """
    from kv2render.config import TemplateConfig, auth_source, check_load

    checked = check_load(config_path)
    tc = checked.config.template_config if checked.config else TemplateConfig()
    prepared, template_problems = runner.prepare_all(
        checked.templates, tc.max_output_bytes, tc.render_timeout
    )
    raise_all([*checked.problems, *template_problems])
    cfg = checked.config
    assert cfg is not None  # no problem: the config was built
    prepared += _check_env_templates(cfg)
    warnings = offline_warnings(cfg)
    warn_transport(cfg.vault)
    for item in prepared:
        refs = sorted(str(loc) for loc in item.locations)
        shown = ", ".join(refs) or ("(computed paths only)" if item.dynamic else "(no secrets)")
        logsetup.emit(
            {
                "event": "check",
                "template": item.spec.where,
                "destination": None if _env_name(item.spec) else str(item.spec.destination),
                "env": _env_name(item.spec),
                "syntax": "ref" if item.spec.ref is not None else item.spec.syntax,
                "reads": refs,
                "dynamic": list(item.dynamic),
            },
            fmt,
            f"{item.spec.where}: {_target(item.spec)} <- {shown}",
        )
        for where in item.dynamic:
            # KV2-AC-393: a path computed while rendering is known only then (KV2-INV-390).
            logsetup.emit(
                {"event": "check", "template": item.spec.where, "dynamic_at": where},
                fmt,
                f"{item.spec.where}: dynamic secret path at {where} (resolved while rendering)",
            )
    _check_directories(cfg)
    unique = {loc for item in prepared for loc in item.locations}
    dynamic = sum(len(item.dynamic) for item in prepared)
    logsetup.emit(
        {
            "event": "check",
            "valid": True,
            "templates": len(cfg.templates),
            "env_templates": len(cfg.env_templates),
            "unique_secrets": len(unique),
            "auth": auth_source(cfg.auth),
            "warnings": len(warnings) + len(transport_warnings(cfg.vault)),
            "dynamic_paths": dynamic,
        },
        fmt,
        f"config OK: {count(len(cfg.templates), 'template')}, "
        + (f"{count(len(cfg.env_templates), 'env template')}, " if cfg.exec is not None else "")
        + f"{count(len(unique), 'unique secret')}"
        + (f" (+ {dynamic} computed while rendering)" if dynamic else "")
        + f", auth {auth_source(cfg.auth)}, address {cfg.vault.address}",
    )
    return 0


def _check_env_templates(cfg: Config) -> list[runner.PreparedTemplate]:
    """Process-supervisor mode: compile every env template too (KV2-INV-470), all problems
    in one run; ``check`` lists each as ``env_template.NAME: env NAME <- secrets``."""
    if cfg.exec is None:
        return []
    from kv2render.daemon.supervisor import prepare_env

    tc = cfg.template_config
    items, problems = [], []
    for env in cfg.env_templates:
        try:
            items.append(
                prepare_env(
                    env, max_output_bytes=tc.max_output_bytes, render_timeout=tc.render_timeout
                )
            )
        except ConfigError as exc:
            problems.append(exc)
    raise_all(problems)
    return items


def _env_name(spec: Any) -> str | None:
    return getattr(spec, "env_name", None) or None


def _target(spec: Any) -> str:
    env_name = _env_name(spec)
    return f"env {env_name}" if env_name else str(spec.destination)


def offline_warnings(cfg: Config) -> list[str]:
    """What ``check`` can see is missing on this host, without reading a secret or opening a
    connection: it may run where the config is built, not where it runs, so these warn
    rather than fail (KV2-INV-400). Each is logged at WARNING; the list is returned."""
    found: list[str] = []

    def missing(where: str, path: Path, what: str) -> None:
        if not path.exists():
            found.append(f"{where}: {what} {path} does not exist on this host")

    for key, value in sorted(config_keys(cfg.auth.config).items()):
        if isinstance(value, Path):
            missing(f"auto_auth.method.config.{key}", value, "credential file")
    for key in ("client_cert", "client_key", "ca_cert", "ca_path"):
        path = getattr(cfg.vault, key)
        if path is not None:
            what = "credential file" if key.startswith("client_") else "CA file"
            missing(f"vault.{key}", path, "CA folder" if key == "ca_path" else what)
    for spec in cfg.templates:
        folder = spec.destination.parent
        if not spec.create_dest_dirs and not folder.is_dir():
            found.append(
                f"{spec.where}.destination: folder {folder} does not exist on this host "
                "(create it, or set create_dest_dirs: true)"
            )
    if isinstance(cfg.auth.config, TokenEnvSettings) and cfg.auth.config.variable is None:
        found.append(
            "auto_auth: no token source: auto_auth is not configured and VAULT_TOKEN/BAO_TOKEN "
            "are unset here; a run needs one of them"
        )
    for text in found:
        log.warning("%s", text)
    return found


def _check_directories(cfg: Config) -> None:
    """What the writer would refuse or warn about each existing destination directory
    (KV2-AC-388): stat() calls only. A user unknown here belongs to the host that writes
    (KV2-FC-092), so its template is skipped."""
    from kv2render.output import dirchecks
    from kv2render.output.writer import resolve_uid

    targets = [(t.where, t.destination, t.user) for t in cfg.templates]
    if cfg.status_file is not None:
        targets.append(("status_file", cfg.status_file, None))
    for where, dest, user in targets:
        try:
            uid = resolve_uid(user, dest)
            found = dirchecks.problems(dest.parent, dest, file_uid=uid)
        except (OSError, Kv2RenderError):
            continue
        for problem in found:
            log.warning(
                "%s: %s%s", where, "would refuse: " if problem.refuse else "", problem.message
            )


def print_status(
    config_path: str | None,
    *,
    fmt: str = "text",
    status_file: str | None = None,
    max_age: float | None = None,
) -> int:
    """``kv2render status``: print the status file, and exit with whether the files it
    describes can be trusted (issue 17, KV2-INV-422; the table is in docs/operations.md).

    The document goes to stdout unchanged; the verdict is one log line on stderr.
    """
    import time

    from kv2render.output.status import (
        PROBE_NO_STATUS,
        PROBE_STOPPED,
        Verdict,
        assess,
        process_alive,
    )

    path = Path(status_file) if status_file is not None else _status_path(config_path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text)
    except FileNotFoundError:
        return _verdict(
            Verdict(
                PROBE_NO_STATUS,
                "no-status",
                f"status file {str(path)!r} does not exist (is the daemon running?)",
            )
        )
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a JSON document"
        return _verdict(Verdict(PROBE_NO_STATUS, "no-status", f"{path}: {reason}"))
    if not isinstance(doc, dict):
        return _verdict(Verdict(PROBE_NO_STATUS, "no-status", f"{path}: not a status document"))
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    verdict = assess(doc, now=time.time(), max_age=max_age)
    if verdict.code != PROBE_STOPPED:
        from kv2render.output.status import instance_lock_for

        # The daemon that wrote a status file holds <status_file>.lock (KV2-INV-167).
        dead = process_alive(doc, instance_lock_for(path, ()).path)
        if dead is not None:
            verdict = Verdict(PROBE_STOPPED, "crashed", dead)
    return _verdict(verdict)


def _verdict(verdict: Any) -> int:
    level = logging.INFO if verdict.code == 0 else logging.WARNING
    log.log(
        level,
        "status: %s (exit %d): %s",
        verdict.word,
        verdict.code,
        verdict.reason,
        extra={"verdict": verdict.word},
    )
    return int(verdict.code)


def _status_path(config_path: str | None) -> Path:
    """The config's ``status_file``; a config with problems elsewhere is read leniently, so
    that a probe keeps answering while someone edits the config (issue 17)."""
    if config_path is None:
        raise ConfigError(
            "no config file or status file given",
            where="status",
            hint="pass --config PATH, --status-file PATH, or set KV2RENDER_CONFIG",
        )
    try:
        cfg = load(config_path, require_credentials=False)
        found = cfg.status_file
    except ConfigError as exc:
        found = _lenient_status_file(config_path, exc)
    if found is None:
        raise ConfigError(
            "no status file is configured",
            where="status_file",
            hint="set status_file, or pass --status-file PATH",
        )
    return found


def _lenient_status_file(config_path: str, problem: ConfigError) -> Path | None:
    from kv2render.config.sources import load_tree
    from kv2render.config.values import as_path

    path = Path(os.path.abspath(config_path))
    tree = load_tree(path)  # unreadable or not parseable: that error is the answer
    value = tree.get("status_file") if isinstance(tree, dict) else None
    if value is None:
        raise problem
    log.warning(
        "%s has problems (kv2render check lists them); its status_file is read anyway",
        path,
    )
    return as_path(value, "status_file", path.parent)


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
    from kv2render.daemon.service import run

    return run(cfg, config_path=config_path, overrides=overrides)
