"""Helpers for issue 17: a daemon with its metrics listener, scraped over HTTP; the real
Prometheus and promtool from Debian's ``prometheus`` package."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.cli_helpers import REPO, cli_env

EXAMPLES = REPO / "examples" / "observability"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:PORT/PATH; 0 when refused."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()
    except OSError:
        return 0, "", ""


def status_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``kv2render status ARGS`` as a subprocess (the probe Kubernetes and systemd run)."""
    return subprocess.run(
        [sys.executable, "-m", "kv2render", "status", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def sample_names(exposition: str) -> set[str]:
    """The metric names a Prometheus text exposition exports: those of its samples, and of
    its declared families (a labelled counter has no sample until its first event; a
    histogram family is queried as NAME_bucket, NAME_sum, NAME_count)."""
    out: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out.add(name)
            if kind == "histogram":
                out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            out.add(line.split("{", 1)[0].split(" ", 1)[0])
    return out


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def prometheus_binary(name: str) -> str:
    """/usr/bin/prometheus or promtool (Debian's ``prometheus``); skip outside CI when
    missing, fail under CI=true (the pattern of ``_bao_or_skip`` in tests/conftest.py)."""
    path = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
    )
    if path is None:
        why = f"{name} not installed (apt-get install prometheus)"
        if _in_ci():
            pytest.fail(f"the Prometheus tests must run in CI: {why}")
        pytest.skip(why)
    return path
