"""Shared helpers for the KV2 lifecycle, namespace, policy and daemon tests against the real
OpenBao server (``tests/realbao.py``): kv2render is driven as a user drives it, through a YAML
config and the CLI (in-process ``cli.main``, or ``python -m kv2render`` as a subprocess).
"""

from __future__ import annotations

import contextlib
import json
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daemon.conftest import Daemon, write_yaml
from tests.integration.cli_helpers import CliResult, run_cli, run_cli_subprocess, write_config
from tests.realbao import BaoServer

# Secret values are sentinels: a test that sees one in a log or an error has found a leak.
SENTINEL = "S3NTINEL-bao-kv"


def sentinel(tag: str) -> str:
    return f"{SENTINEL}-{tag}"


def token_file(workdir: Path, token: str, name: str = "token") -> Path:
    path = workdir / name
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def config(
    server: BaoServer,
    workdir: Path,
    templates: Sequence[Mapping[str, Any]],
    *,
    token: str | None = None,
    auth: Mapping[str, Any] | None = None,
    num_retries: int = -1,
    interval: str | None = None,
    **vault: Any,
) -> dict[str, Any]:
    """A kv2render config for ``server``: ``token_file`` auth with ``token`` (root by default),
    or ``auth`` as the whole ``auto_auth`` block; ``auth={}`` means no auto_auth (token from
    the environment)."""
    tree: dict[str, Any] = {
        "vault": {
            "address": server.address,
            "retry": {"num_retries": num_retries},
            "timeout": "5s",
            **vault,
        }
    }
    if auth is None:
        path = token_file(workdir, server.root_token if token is None else token)
        tree["auto_auth"] = {
            "method": {"type": "token_file", "config": {"token_file_path": str(path)}}
        }
    elif auth:
        tree["auto_auth"] = dict(auth)
    if interval is not None:
        tree["template_config"] = {"static_secret_render_interval": interval}
        tree["status_file"] = str(workdir / "status.json")
    tree["template"] = [dict(t) for t in templates]
    return tree


def ref_template(ref: str, destination: Path) -> dict[str, Any]:
    return {"ref": ref, "destination": str(destination)}


def once(workdir: Path, tree: Mapping[str, Any], env: Mapping[str, str] | None = None) -> CliResult:
    """``kv2render --config ... --once`` in-process, at debug level (more text to search)."""
    path = write_config(workdir, tree)
    return run_cli(["--config", str(path), "--once", "--log-level", "debug"], env)


def once_subprocess(
    workdir: Path,
    tree: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> CliResult:
    """The same as a separate process, for what only a process boundary shows (environment)."""
    path = write_config(workdir, tree)
    return run_cli_subprocess(
        ["--config", str(path), "--once", "--log-level", "debug", *extra], env
    )


@dataclass(frozen=True)
class FileState:
    """What "the file is untouched" means: bytes, inode, mtime and mode."""

    data: bytes
    inode: int
    mtime_ns: int
    mode: int


def file_state(path: Path) -> FileState:
    st = path.stat()
    return FileState(path.read_bytes(), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


def assert_rendered(path: Path, expected: str) -> None:
    """``path`` holds exactly ``expected`` (byte for byte) with mode 0600 (KV2-AC-090)."""
    assert path.read_bytes() == expected.encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def assert_no_leak(text: str, *values: str) -> None:
    """No secret value, and no sentinel at all, in ``text`` (KV2-AC-116)."""
    for value in values:
        assert value not in text
    assert SENTINEL not in text, "a sentinel secret value reached the output"


def assert_one_line_errors(text: str) -> None:
    """Every log line starts like a log line: a server's multi-line error text (go-multierror's
    ``"1 error occurred:\\n\\t* permission denied"``) never splits one (KV2-AC-318)."""
    for line in text.splitlines():
        if line.strip():
            assert line[:4].isdigit() or line.startswith("{"), f"not a log line: {line!r}"


def leftovers(directory: Path) -> list[str]:
    """Temp files a write left behind (``.NAME.kv2render-HEX.tmp``, KV2-AC-094)."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def status(workdir: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((workdir / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return doc


def kv_metadata(server: BaoServer, path: str, *, mount: str = "secret") -> dict[str, Any]:
    out: dict[str, Any] = server.api("GET", f"{mount}/metadata/{path}")["data"]
    return out


@contextlib.contextmanager
def running_daemon(
    workdir: Path, tree: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    """``python -m kv2render --config ...`` (the daemon) at debug level; killed at the end.
    Its log lives in ``workdir/logs`` (the daemon watches the config's own folder)."""
    path = write_yaml(workdir / "kv2render.yaml", tree)
    daemon = Daemon(path, workdir, env)
    try:
        yield daemon
    finally:
        daemon.close()


def stop_cleanly(daemon: Daemon) -> str:
    """SIGTERM: exit 0 within 5 s (KV2-AC-176); the whole log."""
    code, _seconds = daemon.terminate()
    assert code == 0, daemon.log()[-3000:]
    return daemon.log()
