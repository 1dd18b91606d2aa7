"""The daemon keeps files current: versions, commands, pinned reads, edits, config reloads.

Real CLI subprocess -> real hvac -> dev server over a socket (issue 5 "Done when").
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kv2render.devserver import DevServer
from tests.daemon.conftest import (
    INTERVAL,
    SENTINEL_SECRET,
    SENTINEL_SECRET_ID,
    Daemon,
    command_count,
    make_config,
    read_text,
    reads,
    wait_for,
    write_yaml,
)


def _ref_template(workdir: Path, name: str, ref: str, **kw: Any) -> dict[str, Any]:
    return {"ref": ref, "destination": str(workdir / "out" / name), "create_dest_dirs": True, **kw}


def test_new_version_rerendered_within_interval_and_command_runs_once_per_change(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-160, KV2-AC-162, KV2-AC-164, KV2-AC-181, KV2-INV-161: a new version lands within
    interval + 2 s, the command runs once per actual change, the other template is untouched,
    and the trace-level log and the status file carry no secret value or secret_id."""
    dev_server.put("app/db", {"password": "first-value"})
    dev_server.put("app/other", {"password": "other-value"})
    other = workdir / "out" / "other"
    out = workdir / "out" / "db-password"
    cmd_log = workdir / "commands.log"
    tree = make_config(
        dev_server,
        workdir,
        [
            _ref_template(
                workdir, "db-password", "vault+kv2:///secret/app/db#password",
                command=["/bin/sh", "-c", f"echo changed >> {cmd_log}"],
            ),
            _ref_template(workdir, "other", "vault+kv2:///secret/app/other#password"),
        ],
    )  # fmt: skip
    daemon = start_daemon(tree, log_level="trace")
    wait_for(lambda: read_text(out) == "first-value", 15, "first render", proc=daemon)
    wait_for(lambda: read_text(other) == "other-value", 5, "second template", proc=daemon)
    other_before = other.stat()
    # The command runs after the pass's writes, so it may lag the file by a moment.
    wait_for(lambda: command_count(cmd_log) == 1, 5, "command run 1", proc=daemon)
    for n, value in enumerate(["second-value", SENTINEL_SECRET], start=2):
        dev_server.put("app/db", {"password": value})
        put_at = time.monotonic()
        wait_for(
            lambda v=value: read_text(out) == v, INTERVAL * 1.1 + 2, f"version {n}", proc=daemon
        )  # type: ignore[misc]
        assert time.monotonic() - put_at <= INTERVAL * 1.1 + 2
        wait_for(lambda n=n: command_count(cmd_log) == n, 5, f"command run {n}", proc=daemon)  # type: ignore[misc]
    # Two more polls with no change: no further command.
    before = reads(dev_server, "app/db")
    wait_for(lambda: reads(dev_server, "app/db") >= before + 2, 5, "two more polls", proc=daemon)
    assert command_count(cmd_log) == 3
    other_after = other.stat()
    assert (other_after.st_ino, other_after.st_mtime_ns) == (
        other_before.st_ino,
        other_before.st_mtime_ns,
    )
    status = read_text(workdir / "status.json") or ""
    assert '"version": 3' in status
    code, _ = daemon.terminate()
    assert code == 0
    text = daemon.log() + (read_text(workdir / "status.json") or "")
    assert SENTINEL_SECRET not in text and SENTINEL_SECRET_ID not in text
    assert out.stat().st_mode & 0o777 == 0o600


def test_unchanged_version_keeps_inode_mtime_and_command_count(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-161, KV2-INV-161: polls that find the same version touch nothing on disk."""
    dev_server.put("app/db", {"password": "steady"})
    out = workdir / "out" / "pw"
    cmd_log = workdir / "commands.log"
    tree = make_config(
        dev_server,
        workdir,
        [
            _ref_template(
                workdir, "pw", "vault+kv2:///secret/app/db#password", command=f"echo x >> {cmd_log}"
            )
        ],
    )
    daemon = start_daemon(tree)
    wait_for(lambda: read_text(out) == "steady", 15, "first render", proc=daemon)
    wait_for(lambda: command_count(cmd_log) == 1, 5, "first command", proc=daemon)
    before = out.stat()
    polls = reads(dev_server, "app/db")
    wait_for(lambda: reads(dev_server, "app/db") >= polls + 4, 8, "four more polls", proc=daemon)
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert command_count(cmd_log) == 1
    assert daemon.terminate()[0] == 0


def test_pinned_reference_is_read_once(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-163, KV2-INV-160: a ?version=N reference is fetched once, counted at the server."""
    dev_server.put("app/pinned", {"password": "v1"})
    dev_server.put("app/pinned", {"password": "v2"})
    dev_server.put("app/latest", {"password": "l1"})
    tree = make_config(
        dev_server,
        workdir,
        [
            _ref_template(workdir, "pinned", "vault+kv2:///secret/app/pinned?version=1#password"),
            _ref_template(workdir, "latest", "vault+kv2:///secret/app/latest#password"),
        ],
    )
    daemon = start_daemon(tree)
    wait_for(
        lambda: read_text(workdir / "out" / "pinned") == "v1", 15, "pinned render", proc=daemon
    )
    wait_for(lambda: reads(dev_server, "app/latest") >= 5, 10, "five polls of latest", proc=daemon)
    assert reads(dev_server, "app/pinned") == 1
    assert daemon.terminate()[0] == 0


def test_edited_template_source_rerenders_in_place_and_rename_over(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-174: an edited source re-renders within about a second, whether the editor
    writes in place or renames a new file over the old one."""
    dev_server.put("app/db", {"password": "pw"})
    templates = workdir / "templates"
    templates.mkdir()
    source = templates / "app.conf.j2"
    source.write_text("one {{ kv2('vault+kv2:///secret/app/db#password') }}\n")
    out = workdir / "out" / "app.conf"
    tree = make_config(
        dev_server,
        workdir,
        [{"source": str(source), "destination": str(out), "create_dest_dirs": True}],
        interval="1m",  # long: only the watch can explain a quick re-render
    )
    daemon = start_daemon(tree)
    wait_for(lambda: read_text(out) == "one pw\n", 15, "first render", proc=daemon)
    wait_for(lambda: "ready" in daemon.log(), 5, "ready", proc=daemon)

    with source.open("r+", encoding="utf-8") as fh:  # in place: same inode
        fh.seek(0)
        fh.write("two {{ kv2('vault+kv2:///secret/app/db#password') }}\n")
        fh.truncate()
    wait_for(lambda: read_text(out) == "two pw\n", 3, "in-place edit re-rendered", proc=daemon)

    tmp = templates / ".app.conf.j2.swp"  # rename-over: a new inode at the same path
    tmp.write_text("three {{ kv2('vault+kv2:///secret/app/db#password') }}\n")
    os.replace(tmp, source)
    wait_for(lambda: read_text(out) == "three pw\n", 3, "rename-over edit re-rendered", proc=daemon)

    source.write_text("{{ broken\n")
    wait_for(lambda: "edited source refused" in daemon.log(), 3, "broken edit refused", proc=daemon)
    assert read_text(out) == "three pw\n"
    assert daemon.terminate()[0] == 0


def test_invalid_config_edit_is_refused_while_rendering_continues(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-175, KV2-FC-160: an invalid config edit is refused, the running config keeps
    rendering; a valid edit is applied like SIGHUP."""
    dev_server.put("app/db", {"password": "one"})
    out = workdir / "out" / "pw"
    tree = make_config(
        dev_server, workdir, [_ref_template(workdir, "pw", "vault+kv2:///secret/app/db#password")]
    )
    daemon = start_daemon(tree)
    wait_for(lambda: read_text(out) == "one", 15, "first render", proc=daemon)

    broken = dict(
        tree, template=[dict(tree["template"][0], destination="relative/out.txt", surprise=1)]
    )
    write_yaml(daemon.config, broken)
    wait_for(lambda: "new config refused" in daemon.log(), 5, "refusal logged", proc=daemon)
    dev_server.put("app/db", {"password": "two"})
    wait_for(
        lambda: read_text(out) == "two",
        INTERVAL * 1.1 + 2,
        "render under the old config",
        proc=daemon,
    )

    other = workdir / "out" / "pw-copy"
    fixed = dict(
        tree,
        template=[
            *tree["template"],
            _ref_template(workdir, "pw-copy", "vault+kv2:///secret/app/db#password"),
        ],
    )
    write_yaml(daemon.config, fixed)
    wait_for(lambda: read_text(other) == "two", 5, "valid edit applied", proc=daemon)
    assert daemon.poll() is None
    assert daemon.terminate()[0] == 0


def test_failing_command_is_logged_and_causes_no_extra_reads(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-180, KV2-INV-165: a failing command is logged with its exit code; the server
    sees no more reads for its secret than for a secret whose template has no command."""
    dev_server.put("app/db", {"password": "one"})
    dev_server.put("app/other", {"password": "x"})
    tree = make_config(
        dev_server,
        workdir,
        [
            _ref_template(workdir, "pw", "vault+kv2:///secret/app/db#password", command="exit 3"),
            _ref_template(workdir, "other", "vault+kv2:///secret/app/other#password"),
        ],
    )
    daemon = start_daemon(tree)
    wait_for(lambda: "status 3" in daemon.log(), 15, "command failure logged", proc=daemon)
    dev_server.put("app/db", {"password": "two"})
    wait_for(lambda: daemon.log().count("status 3") >= 2, 5, "second failure", proc=daemon)
    wait_for(lambda: reads(dev_server, "app/other") >= 6, 10, "more polls", proc=daemon)
    assert abs(reads(dev_server, "app/db") - reads(dev_server, "app/other")) <= 1
    assert daemon.log().count("status 3") == 2  # once per change, not once per poll
    assert daemon.terminate()[0] == 0


def test_changed_token_file_triggers_a_login(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-173, KV2-INV-164: a rewritten token file is picked up at once: the revoked old
    token is replaced and rendering continues."""
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    dev_server.put("app/db", {"password": "one"})
    old = dev_server.create_token(["app"], ttl=3600)
    token_file = workdir / "token"
    token_file.write_text(old)
    token_file.chmod(0o600)
    out = workdir / "out" / "pw"
    tree = make_config(
        dev_server,
        workdir,
        [_ref_template(workdir, "pw", "vault+kv2:///secret/app/db#password")],
        auto_auth={
            "method": {"type": "token_file", "config": {"token_file_path": str(token_file)}}
        },
        interval="1m",  # long: only the file change can explain a quick recovery
    )
    daemon = start_daemon(tree)
    wait_for(lambda: read_text(out) == "one", 15, "first render", proc=daemon)
    lookups = dev_server.request_count("GET", "/v1/auth/token/lookup-self")
    new = dev_server.create_token(["app"], ttl=3600)
    tmp = workdir / "token.new"
    tmp.write_text(new)
    tmp.chmod(0o600)
    os.replace(tmp, token_file)  # how a rotating agent replaces the file
    dev_server.revoke_token(old)
    wait_for(
        lambda: dev_server.request_count("GET", "/v1/auth/token/lookup-self") > lookups,
        5,
        "login with the new token file",
        proc=daemon,
    )
    assert "credential file changed" in daemon.log()
    assert old not in daemon.log() and new not in daemon.log()
    daemon.signal(__import__("signal").SIGHUP)  # forces a pass: reads must work with `new`
    dev_server.put("app/db", {"password": "two"})
    wait_for(lambda: read_text(out) == "two", 5, "render with the new token", proc=daemon)
    assert daemon.terminate()[0] == 0
