"""Process hardening (issue 14 item 4): core dumps off, the dev server kept on loopback.

Core dumps are observed from outside the process, through the kernel's own files:

* ``/proc/<pid>/limits``: the soft "Max core file size" of the running kv2render;
* ``/proc/<pid>/environ``: readable by another process of the same user without
  ``CAP_SYS_PTRACE`` only while the target is dumpable (``ptrace_may_access``).

kv2render runs a template command, ``sh`` reading ``/proc/$PPID/...``, so the observer is a
process of kv2render's own user, whether that is root or not. Run as root, kv2render is
started through ``setpriv`` with no capabilities (its command inherits that): root with
``CAP_SYS_PTRACE`` may read any process's ``environ``, which would prove nothing.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kv2render.authority import is_loopback_host
from kv2render.devserver import DevServer

from .cli_helpers import cli_env, write_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SENTINEL = "S3NTINEL-core-9f1c"
START_LIMIT = 1 << 20  # the soft core limit kv2render inherits in these tests


@pytest.fixture
def core_limit() -> Iterator[int]:
    """A non-zero soft core limit for the children, so that 0 is kv2render's own doing
    (an earlier in-process --once may have lowered pytest's own limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard != resource.RLIM_INFINITY and hard < START_LIMIT:
        pytest.skip(f"the hard core limit ({hard}) is below {START_LIMIT}")
    resource.setrlimit(resource.RLIMIT_CORE, (START_LIMIT, hard))
    try:
        yield START_LIMIT
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def _no_caps() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run kv2render as root without capabilities")
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all"]


def _config(srv: DevServer, workdir: Path) -> tuple[Path, Path]:
    srv.put("app/db", {"password": SENTINEL})
    report = workdir / "report"
    probe = (
        f"cat /proc/$PPID/limits > {report}.limits; "
        f"if cat /proc/$PPID/environ > /dev/null 2>&1; then echo readable; else echo denied; fi "
        f"> {report}.environ"
    )
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "ref": "vault+kv2:///secret/data/app/db#password",
                    "destination": str(workdir / "out"),
                    "command": probe,
                }
            ]
        },
    )
    return cfg, report


def _env(srv: DevServer, allow: bool) -> dict[str, str]:
    extra = {"VAULT_ADDR": srv.url, "VAULT_TOKEN": srv.root_token}
    if allow:
        extra["KV2RENDER_ALLOW_CORE_DUMPS"] = "1"
    return cli_env(extra)


def _observed(report: Path) -> tuple[str, str]:
    """(soft core limit, "readable"/"denied") as the command saw its parent, kv2render."""
    limits = Path(f"{report}.limits").read_text(encoding="ascii")
    match = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", limits, re.MULTILINE)
    assert match, limits
    return match.group(1), Path(f"{report}.environ").read_text(encoding="ascii").strip()


def _once(srv: DevServer, workdir: Path, allow: bool) -> tuple[str, str, str]:
    cfg, report = _config(srv, workdir)
    proc = subprocess.run(
        [*_no_caps(), sys.executable, "-m", "kv2render", "--config", str(cfg), "--once"],
        env=_env(srv, allow),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert SENTINEL not in proc.stdout + proc.stderr
    return (*_observed(report), proc.stderr)


def test_once_runs_without_core_dumps(
    dev_server: DevServer, workdir: Path, core_limit: int
) -> None:
    """KV2-AC-380 KV2-INV-380: a --once process has a soft core limit of 0 and is not dumpable
    (a process of its own user cannot read its /proc/<pid>/environ)."""
    soft, environ, _ = _once(dev_server, workdir, allow=False)
    assert soft == "0"
    assert environ == "denied"


def test_daemon_runs_without_core_dumps(
    dev_server: DevServer, workdir: Path, core_limit: int
) -> None:
    """KV2-AC-380 KV2-INV-380: the daemon too, observed while it runs."""
    cfg, report = _config(dev_server, workdir)
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*_no_caps(), sys.executable, "-m", "kv2render", "--config", str(cfg)],
            env=_env(dev_server, allow=False),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while (
                not Path(f"{report}.environ").is_file()
                or not Path(f"{report}.environ").stat().st_size
            ):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            soft, environ = _observed(report)
            own_limits = Path(f"/proc/{proc.pid}/limits").read_text(encoding="ascii")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=15)
    assert code == 0, log_path.read_text()
    assert soft == "0" and environ == "denied"
    assert re.search(r"^Max core file size\s+0\s", own_limits, re.MULTILINE), own_limits
    assert SENTINEL not in log_path.read_text()


def test_allow_core_dumps_leaves_them_on(
    dev_server: DevServer, workdir: Path, core_limit: int
) -> None:
    """KV2-AC-381 KV2-INV-380: KV2RENDER_ALLOW_CORE_DUMPS=1 keeps the inherited limit and
    the dumpable flag, and says so."""
    soft, environ, err = _once(dev_server, workdir, allow=True)
    assert soft == str(core_limit)
    assert environ == "readable"
    assert "core dumps stay enabled" in err


# -- loopback -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "127.0.0.1",
        "127.1",
        "127.0.0.2",
        "2130706433",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_spellings(host: str) -> None:
    """KV2-AC-383 KV2-INV-381: every spelling of loopback counts."""
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "127.example.com", "", "127.1 x"]
)
def test_not_loopback(host: str) -> None:
    """KV2-AC-383 KV2-INV-381: a name that merely starts with 127. is not loopback."""
    assert not is_loopback_host(host)


def test_plain_http_to_a_name_starting_with_127_is_warned_about(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-383 KV2-INV-381: vault.address http://127.example.com:8200 is not loopback
    (the old check, startswith("127."), kept quiet)."""
    from kv2render.config import load
    from kv2render.store.transport import warn_transport

    path = write_config(
        workdir,
        {
            "vault": {"address": "http://127.example.com:8200"},
            "template": [
                {"ref": "vault+kv2:///secret/data/a#b", "destination": str(workdir / "o")}
            ],
        },
    )
    cfg = load(path, env={"VAULT_TOKEN": "t"}, require_credentials=False)
    with caplog.at_level(logging.WARNING, logger="kv2render.app"):
        warn_transport(cfg.vault)
    assert "plain http to a non-loopback host" in caplog.text


# -- dev-server --allow-remote ---------------------------------------------------------------


def test_dev_server_refuses_a_remote_address_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KV2-AC-382 KV2-FC-381: 0.0.0.0 without --allow-remote exits 2 naming the flag, before
    anything listens or any address or token is printed."""
    from kv2render.devserver.cli import main

    assert main(["--listen", "0.0.0.0:0"]) == 2
    captured = capsys.readouterr()
    assert "--allow-remote" in captured.err and "not a loopback address" in captured.err
    assert captured.out == ""


def test_dev_server_listens_on_127_1_without_allow_remote() -> None:
    """KV2-AC-383 KV2-INV-381: 127.1 is loopback, so no flag is needed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kv2render.devserver.cli", "--listen", "127.1:0"],
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    assert first.startswith("VAULT_ADDR=http://127.1:"), (first, err)
    assert "not loopback" not in err
