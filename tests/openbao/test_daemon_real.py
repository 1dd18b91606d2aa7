"""The daemon (``python -m kv2render --config ...``) against the real OpenBao server.

Change detection at a 1 s ``static_secret_render_interval``; a deleted or destroyed latest
version (the last good file is kept and the failure reported, then the daemon recovers by
itself); and a persistent (raft) server stopped and started again, or sealed and unsealed,
while the daemon runs: files untouched during the outage, recovery without intervention, and a
change made afterwards lands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import Daemon, read_text, wait_for
from tests.openbao.kvreal import (
    assert_no_leak,
    assert_one_line_errors,
    assert_rendered,
    config,
    file_state,
    leftovers,
    ref_template,
    running_daemon,
    sentinel,
    status,
    stop_cleanly,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao

INTERVAL = 1.0  # static_secret_render_interval ("1s") for every test here


def _tree(server: BaoServer, workdir: Path, path: str, **kw: Any) -> dict[str, Any]:
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    ref = f"vault+kv2:///secret/data/{path}#password"
    return config(server, workdir, [ref_template(ref, out / "pw")], interval="1s", **kw)


def _last_error(workdir: Path) -> str | None:
    templates = status(workdir).get("templates") or [{}]
    error: str | None = templates[0].get("last_error")
    return error


def _status_ok(workdir: Path) -> bool:
    templates = status(workdir).get("templates") or [{}]
    return templates[0].get("ok") is True


def _untouched_for(daemon: Daemon, path: Path, seconds: float) -> None:
    """For ``seconds``: the process lives and the file keeps bytes, inode, mtime and mode."""
    before = file_state(path)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.log()[-3000:]
        assert file_state(path) == before
        time.sleep(0.1)


def test_a_new_version_lands_within_the_interval_and_nothing_else_is_written(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-327 KV2-AC-160 KV2-AC-161: polls of an unchanged secret leave the file alone
    (inode, mtime); a new version on the real server is on disk within interval + 2 s."""
    path = unique("poll")
    v1, v2 = sentinel("p1"), sentinel("p2")
    bao_server.kv_put(path, {"password": v1})
    dest = workdir / "out" / "pw"
    with running_daemon(workdir, _tree(bao_server, workdir, path)) as daemon:
        wait_for(lambda: read_text(dest) == v1, 15, "first render", proc=daemon)
        _untouched_for(daemon, dest, 2.5 * INTERVAL)
        written = time.monotonic()
        bao_server.kv_put(path, {"password": v2})
        wait_for(lambda: read_text(dest) == v2, INTERVAL + 2, "the new version", proc=daemon)
        took = time.monotonic() - written
        wait_for(lambda: _status_ok(workdir), 5, "status ok", proc=daemon)
        doc = status(workdir)
        log = stop_cleanly(daemon)
    assert took <= INTERVAL + 2
    assert_rendered(dest, v2)
    assert doc["templates"][0]["secrets"][0]["version"] == 2
    assert leftovers(dest.parent) == []
    assert_no_leak(log, v1, v2)
    assert_no_leak(str(doc), v1, v2)


def test_a_deleted_latest_version_keeps_the_file_until_undelete(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-328 KV2-FC-161 KV2-INV-168: the latest version soft-deleted under a running
    daemon: the file stays as it was, the log and the status file say "version 1 is deleted"
    (metadata only); after ``undelete`` the status is ok again with no rewrite, and a new
    version then lands."""
    path = unique("ddel")
    v1, v2 = sentinel("dd1"), sentinel("dd2")
    bao_server.kv_put(path, {"password": v1})
    dest = workdir / "out" / "pw"
    with running_daemon(workdir, _tree(bao_server, workdir, path)) as daemon:
        wait_for(lambda: read_text(dest) == v1, 15, "first render", proc=daemon)
        good = file_state(dest)
        bao_server.api("DELETE", f"secret/data/{path}")
        expect = f"secret/{path}: version 1 is deleted"
        wait_for(lambda: expect in (_last_error(workdir) or ""), 10, "status error", proc=daemon)
        assert expect in daemon.log()
        _untouched_for(daemon, dest, 1.5 * INTERVAL)
        bao_server.api("POST", f"secret/undelete/{path}", {"versions": [1]})
        wait_for(lambda: _status_ok(workdir), 15, "recovery after undelete", proc=daemon)
        assert file_state(dest) == good  # version 1 again: the same bytes, nothing rewritten
        bao_server.kv_put(path, {"password": v2})
        wait_for(lambda: read_text(dest) == v2, INTERVAL + 5, "the new version", proc=daemon)
        doc = status(workdir)
        log = stop_cleanly(daemon)
    assert_rendered(dest, v2)
    assert_one_line_errors(log)
    assert_no_leak(log, v1, v2)
    assert_no_leak(str(doc), v1, v2)


def test_a_destroyed_latest_version_keeps_the_file_until_a_new_version(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-328 KV2-INV-162: the latest version destroyed under a running daemon: file kept,
    "version 1 is destroyed" reported; a new version recovers without a restart."""
    path = unique("ddes")
    v1, v2 = sentinel("dx1"), sentinel("dx2")
    bao_server.kv_put(path, {"password": v1})
    dest = workdir / "out" / "pw"
    with running_daemon(workdir, _tree(bao_server, workdir, path)) as daemon:
        wait_for(lambda: read_text(dest) == v1, 15, "first render", proc=daemon)
        bao_server.api("POST", f"secret/destroy/{path}", {"versions": [1]})
        expect = f"secret/{path}: version 1 is destroyed"
        wait_for(lambda: expect in (_last_error(workdir) or ""), 10, "status error", proc=daemon)
        _untouched_for(daemon, dest, 1.5 * INTERVAL)
        bao_server.kv_put(path, {"password": v2})
        wait_for(lambda: read_text(dest) == v2, 15, "recovery by a new version", proc=daemon)
        wait_for(lambda: _status_ok(workdir), 5, "status ok", proc=daemon)
        log = stop_cleanly(daemon)
    assert_rendered(dest, v2)
    assert expect in log
    assert_no_leak(log, v1, v2)


def _outage_then_recovery(
    server: BaoServer, workdir: Path, begin: str, end: str, expect_in_log: str
) -> None:
    path = "app/db"
    v1, v2 = sentinel("o1"), sentinel("o2")
    server.kv_put(path, {"password": v1})
    server.put_policy("app", 'path "secret/data/app/db" {\n  capabilities = ["read"]\n}\n')
    token = server.create_token(policies=["app"], ttl="1h")
    dest = workdir / "out" / "pw"
    tree = _tree(server, workdir, path, token=token, num_retries=1)
    with running_daemon(workdir, tree) as daemon:
        wait_for(lambda: read_text(dest) == v1, 15, "first render", proc=daemon)
        good = file_state(dest)
        getattr(server, begin)()
        wait_for(lambda: expect_in_log in daemon.log(), 10, "the outage seen", proc=daemon)
        _untouched_for(daemon, dest, 2.0)
        getattr(server, end)()
        server.wait_ready()
        wait_for(lambda: _status_ok(workdir), 20, "recovery", proc=daemon)
        assert file_state(dest) == good  # nothing changed meanwhile: nothing rewritten
        server.kv_put(path, {"password": v2})
        wait_for(lambda: read_text(dest) == v2, 15, "a change after the outage", proc=daemon)
        log = stop_cleanly(daemon)
    assert_rendered(dest, v2)
    assert leftovers(dest.parent) == []
    assert_one_line_errors(log)
    assert_no_leak(log, v1, v2, token)


@pytest.mark.timeout(90)
def test_server_stopped_and_started_again(bao_persistent_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-329 KV2-AC-166 KV2-INV-162: the real server stopped (connection refused) under
    the daemon: alive, file untouched; started again on the same port with its raft storage
    and unsealed: the daemon recovers by itself, and a version written afterwards lands."""
    _outage_then_recovery(bao_persistent_server, workdir, "stop", "start", "cannot reach")


@pytest.mark.timeout(90)
def test_server_sealed_and_unsealed(bao_persistent_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-329 KV2-AC-167 KV2-INV-162: the real server sealed (503 "Vault is sealed") under
    the daemon: alive, file untouched; unsealed: recovery without intervention, and a version
    written afterwards lands."""
    _outage_then_recovery(bao_persistent_server, workdir, "seal", "unseal", "Vault is sealed")
