"""The destination directory (issue 14 items 7 and 8): it holds only the outputs, and a
directory another user could change is refused or warned about, naming the real risk.

Tests that hand a directory to another user run as root (``chown`` to 65534, ``nobody``)
and are skipped otherwise, saying why.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kv2render.devserver import DevServer
from kv2render.errors import WriteError
from kv2render.output.writer import temp_file_name, write_atomic

from .cli_helpers import DaemonProcess, run_cli, write_config

SENTINEL = b"S3NTINEL-dirs-51e0"
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _wait(predicate: Callable[[], bool], timeout: float, what: str, proc: DaemonProcess) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.alive(), proc.log()[-3000:]
        assert time.monotonic() < deadline, f"no {what} in {timeout}s:\n{proc.log()[-3000:]}"
        time.sleep(0.1)


def _two_templates(srv: DevServer, workdir: Path, out: Path) -> Path:
    srv.put("app/db", {"password": "pw", "user": "app"})
    return write_config(
        workdir,
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(out / "pw")},
                {"ref": "vault+kv2:///secret/data/app/db#user", "destination": str(out / "user")},
            ]
        },
    )


# -- item 7: no lock file among the outputs -----------------------------------------------


def test_daemon_without_status_file_leaves_only_outputs(
    dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-384 KV2-INV-382 KV2-INV-167: no status file: the daemon's instance lock adds no
    file to the destination directory, and a second daemon still warns naming the first."""
    out = workdir / "secrets"
    out.mkdir(mode=0o700)
    cfg = _two_templates(dev_server, workdir, out)
    env = {"VAULT_ADDR": dev_server.url, "VAULT_TOKEN": dev_server.root_token}
    first = DaemonProcess(cfg, workdir / "logs", env)
    second: DaemonProcess | None = None
    try:
        _wait(lambda: (out / "user").is_file() and (out / "pw").is_file(), 20, "render", first)
        second = started = DaemonProcess(cfg, workdir / "logs", env)
        _wait(lambda: "another kv2render" in started.log(), 20, "warning", started)
        assert f"pid {first.pid}" in started.log()
        assert sorted(os.listdir(out)) == ["pw", "user"]
        second.stop()  # it may still be starting (signals not yet routed): its code varies
        assert first.stop() == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    assert sorted(os.listdir(out)) == ["pw", "user"]


def test_once_without_status_file_leaves_only_outputs(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-384 KV2-INV-382 KV2-AC-295: a --once run that takes the instance lock (a
    leftover temp file makes it) leaves exactly the outputs behind."""
    out = workdir / "secrets"
    out.mkdir(mode=0o700)
    cfg = _two_templates(dev_server, workdir, out)
    (out / temp_file_name("pw")).write_bytes(b"partial")
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": dev_server.url, "VAULT_TOKEN": dev_server.root_token},
    )
    assert result.code == 0, result.text
    assert sorted(os.listdir(out)) == ["pw", "user"]


# -- item 8: who else could change the destination ----------------------------------------


@as_root
def test_directory_owned_by_another_user_is_refused(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-385 KV2-FC-380 KV2-INV-383: root must not write into nobody's directory: its
    owner could delete or replace the file. Exit 6, nothing written, the fix named."""
    out = workdir / "nobodys"
    out.mkdir(mode=0o700)
    os.chown(out, NOBODY, NOBODY)
    dev_server.put("app/db", {"password": SENTINEL.decode()})
    cfg = write_config(
        workdir,
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(out / "pw")}
            ]
        },
    )
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": dev_server.url, "VAULT_TOKEN": dev_server.root_token},
    )
    assert result.code == 6, result.text
    assert f"uid {NOBODY}" in result.err and "delete or replace" in result.err
    assert "chown" in result.err
    assert os.listdir(out) == []
    assert SENTINEL.decode() not in result.text


@as_root
def test_directory_of_the_files_own_user_is_accepted(workdir: Path) -> None:
    """KV2-AC-385 KV2-INV-383: with user: 65534 the file is nobody's anyway; their directory
    adds no risk, so the write goes ahead."""
    out = workdir / "nobodys"
    out.mkdir(mode=0o700)
    os.chown(out, NOBODY, NOBODY)
    assert write_atomic(out / "pw", SENTINEL, user=NOBODY) is True
    assert (out / "pw").stat().st_uid == NOBODY


def test_sticky_world_writable_directory_names_the_real_risk(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-386 KV2-INV-383: /tmp-style (01777): others cannot replace the file but can
    create its name first; never called "group-writable"."""
    out = workdir / "sticky"
    out.mkdir()
    out.chmod(0o1777)
    with caplog.at_level(logging.WARNING, logger="kv2render.output.writer"):
        assert write_atomic(out / "pw", SENTINEL) is True
    text = caplog.text
    assert "group-writable" not in text
    assert "every local user" in text and "sticky bit set" in text
    assert "cannot delete or replace" in text and "create its name first" in text
    assert "S3NTINEL" not in text


def test_group_writable_directory_names_the_group(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-386 KV2-INV-099 KV2-INV-383: 0770: its group's members could delete or replace
    the files; the warning names the group."""
    import grp

    out = workdir / "shared"
    out.mkdir()
    out.chmod(0o770)
    group = grp.getgrgid(out.stat().st_gid).gr_name
    with caplog.at_level(logging.WARNING, logger="kv2render.output.writer"):
        assert write_atomic(out / "pw", SENTINEL) is True
    assert "group-writable" in caplog.text and f"group {group}" in caplog.text
    assert "delete or replace" in caplog.text


def _parent_warnings(caplog: pytest.LogCaptureFixture, parent: Path) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if f"directory {parent}, a parent" in r.getMessage()
    ]


@as_root
def test_parent_owned_by_another_user_is_warned_about_once(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-387 KV2-INV-384: nobody owns a parent: they could rename the directory below it
    away; written, with one warning over several writes."""
    parent = workdir / "p"
    parent.mkdir(mode=0o755)
    os.chown(parent, NOBODY, NOBODY)
    out = parent / "d"
    out.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="kv2render.output.writer"):
        assert write_atomic(out / "a", SENTINEL) is True
        assert write_atomic(out / "b", SENTINEL) is True
    warnings = _parent_warnings(caplog, parent)
    assert len(warnings) == 1, caplog.text
    assert f"uid {NOBODY}" in warnings[0] and "rename d away" in warnings[0]


def test_parent_writable_by_others_is_warned_about(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-387 KV2-INV-384: a 0777 parent without the sticky bit gets a warning; a 01777
    one none."""
    loose, sticky = workdir / "loose", workdir / "sticky"
    for parent, mode in ((loose, 0o777), (sticky, 0o1777)):
        parent.mkdir()
        parent.chmod(mode)
        (parent / "d").mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="kv2render.output.writer"):
        assert write_atomic(loose / "d" / "f", SENTINEL) is True
        assert write_atomic(sticky / "d" / "f", SENTINEL) is True
    assert len(_parent_warnings(caplog, loose)) == 1
    assert "every local user" in _parent_warnings(caplog, loose)[0]
    assert _parent_warnings(caplog, sticky) == []


def test_owner_refusal_is_a_write_error_naming_the_fix(workdir: Path) -> None:
    """KV2-FC-090 KV2-AC-096: the world-writable refusal still says why, now with the
    deletion it also allows."""
    out = workdir / "open"
    out.mkdir()
    out.chmod(0o777)
    with pytest.raises(WriteError) as info:
        write_atomic(out / "f", SENTINEL)
    assert "writable by others without the sticky bit" in str(info.value)
    assert "delete or replace" in str(info.value)


@as_root
def test_check_reports_directory_findings_offline(workdir: Path) -> None:
    """KV2-AC-388 KV2-INV-383: check says what a write would refuse, writes nothing, exits 0."""
    out = workdir / "nobodys"
    out.mkdir(mode=0o700)
    os.chown(out, NOBODY, NOBODY)
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "http://127.0.0.1:1"},
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(out / "pw")}
            ],
        },
    )
    result = run_cli(["check", "--config", str(cfg)])
    assert result.code == 0, result.text
    assert "template[0]: would refuse" in result.err and f"uid {NOBODY}" in result.err
    assert os.listdir(out) == []
