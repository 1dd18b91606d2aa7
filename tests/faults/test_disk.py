"""Scenario 2: the destination on a tiny filesystem that fills up, then goes read-only.

A 64 KiB tmpfs is mounted for each test (root only). Without the permission to mount, the
tests skip with the reason, except in CI (CI=true), where a skip would hide the scenario:
there they fail (issue 10: "required in CI"). KV2-AC-282, KV2-AC-283, KV2-INV-094.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kv2render.devserver import DevServer

from ..integration.cli_helpers import run_cli, write_config
from .helpers import IN_CI, DaemonProc, mode_of, record_cases, temp_files, wait_until

SIZE = 64 * 1024
BIG = "x" * (40 * 1024)  # the new content: fits an empty filesystem, not a full one
OLD = b"old-good-content"


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """KV2-AC-294 KV2-AC-456: this scenario's tries and survivals, from the cases that ran."""
    yield
    record_cases(request, "disk-full-read-only")


def _run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), capture_output=True, check=False, timeout=30)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount_point))
    if done.returncode != 0:
        reason = (
            f"cannot mount a {SIZE // 1024} KiB tmpfs (needs root/CAP_SYS_ADMIN): "
            + done.stderr.decode(errors="replace").strip()
        )
        if IN_CI:
            pytest.fail(f"required in CI (issue 10): {reason}")
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        _run("mount", "-o", "remount,rw", str(mount_point))
        if _run("umount", str(mount_point)).returncode != 0:
            _run("umount", "-l", str(mount_point))


def _fill(directory: Path) -> Path:
    """Fill the filesystem to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (4096, 512, 1):  # unbuffered: every byte that fits, then ENOSPC
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _config(workdir: Path, server: DevServer, dest: Path, interval: str | None = None) -> Path:
    tree: dict[str, object] = {
        "vault": {"address": server.url},
        "template": [
            {
                "contents": '{{ kv2("vault+kv2:///secret/data/app/db#password") }}\n',
                "destination": str(dest),
            }
        ],
    }
    if interval:
        tree["template_config"] = {"static_secret_render_interval": interval}
        # The instance lock sits next to the status file, else beside the first destination;
        # held open read-write, it would make the read-only remount fail ("busy").
        tree["status_file"] = str(workdir / "status.json")
    return write_config(workdir, tree)


def _once(cfg: Path, server: DevServer) -> tuple[int, str]:
    result = run_cli(["--config", str(cfg), "--once"], {"VAULT_TOKEN": server.root_token})
    return result.code, result.text


def _assert_kept(dest: Path, name: str) -> None:
    assert dest.read_bytes() == OLD, f"{name}: the old file changed"
    assert mode_of(dest) == 0o600
    assert temp_files(dest.parent) == [], f"{name}: temp file left: {temp_files(dest.parent)}"


def test_disk_full_keeps_old_file_and_says_no_space(
    small_fs: Path, dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-282: on a full filesystem --once exits 6 with "no space"; the old file stays."""
    dest = small_fs / "db-password"
    dest.write_bytes(OLD)
    dest.chmod(0o600)
    dev_server.put("app/db", {"password": BIG})
    filler = _fill(small_fs)
    code, text = _once(_config(workdir, dev_server, dest), dev_server)
    assert code == 6, text
    assert "no space" in text.lower(), text
    assert BIG not in text
    _assert_kept(dest, "disk full")
    # Space comes back: the next run writes.
    filler.unlink()
    code, text = _once(_config(workdir, dev_server, dest), dev_server)
    assert code == 0, text
    assert dest.read_text() == BIG + "\n" and mode_of(dest) == 0o600


def test_read_only_keeps_old_file_and_says_read_only(
    small_fs: Path, dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-283: on a read-only filesystem --once exits 6 with "read-only"; the file stays."""
    dest = small_fs / "db-password"
    dest.write_bytes(OLD)
    dest.chmod(0o600)
    dev_server.put("app/db", {"password": "new-value"})
    assert _run("mount", "-o", "remount,ro", str(small_fs)).returncode == 0
    code, text = _once(_config(workdir, dev_server, dest), dev_server)
    assert code == 6, text
    assert "read-only" in text.lower(), text
    _assert_kept(dest, "read-only")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_daemon_recovers_when_space_or_writes_return(
    small_fs: Path, dev_server: DevServer, workdir: Path, fault: str
) -> None:
    """KV2-AC-282 KV2-AC-283: the daemon keeps the old file while the fault lasts, says why,
    and writes the new content by itself once space returns / after a remount."""
    dest = small_fs / "db-password"
    dev_server.put("app/db", {"password": "first"})
    cfg = _config(workdir, dev_server, dest, interval="200ms")
    daemon = DaemonProc(cfg, workdir / "logs", env={"VAULT_TOKEN": dev_server.root_token})
    try:
        wait_until(lambda: dest.exists() and dest.read_text() == "first\n", 15, "first render")
        if fault == "full":
            filler = _fill(small_fs)
            dev_server.put("app/db", {"password": BIG})
            words = "no space"
        else:
            assert _run("mount", "-o", "remount,ro", str(small_fs)).returncode == 0
            dev_server.put("app/db", {"password": "second"})
            words = "read-only"
        wait_until(lambda: words in daemon.log().lower(), 15, f"the {words!r} error")
        assert dest.read_text() == "first\n"
        assert temp_files(small_fs) == []
        if fault == "full":
            filler.unlink()
            expected = BIG + "\n"
        else:
            assert _run("mount", "-o", "remount,rw", str(small_fs)).returncode == 0
            expected = "second\n"
        wait_until(lambda: dest.read_text() == expected, 20, "recovery")
        assert daemon.alive()
        assert mode_of(dest) == 0o600
        log = daemon.log()
    finally:
        daemon.stop()
    assert BIG not in log and "second" not in log
