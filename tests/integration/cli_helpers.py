"""Helpers for driving the real CLI against the dev server.

``run_cli`` calls ``kv2render.cli.main`` in-process with an explicit
environment (the autouse fixture already scrubbed VAULT_*/BAO_*), capturing
stdout and stderr; ``run_cli_subprocess`` runs ``python -m kv2render`` for the
cases where a process boundary matters.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def write_config(directory: Path, tree: Mapping[str, Any], name: str = "kv2render.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(dict(tree), sort_keys=False), encoding="utf-8")
    return path


def run_cli(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> CliResult:
    from kv2render.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        for name, value in (env or {}).items():
            os.environ[name] = value
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
            for handler in logging.getLogger().handlers:
                handler.flush()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "KV2RENDER_"))
    }
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli_subprocess(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60
) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "kv2render", *argv],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
