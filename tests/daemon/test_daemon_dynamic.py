"""The daemon follows secret paths computed while rendering (issue 16 item 1).

Real CLI subprocess -> real hvac -> dev server over a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kv2render.devserver import DevServer
from tests.daemon.conftest import (
    INTERVAL,
    SENTINEL_SECRET,
    Daemon,
    make_config,
    read_text,
    reads,
    wait_for,
)


def test_new_version_of_a_computed_secret_rerenders_only_its_template(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-394 KV2-INV-392: a secret a template found only while rendering (its path
    comes from the environment) is polled; its new version re-renders that template, the
    other template's file is untouched, and the debug log carries no secret value."""
    dev_server.put("app/prod/alerting", {"webhook": "hook-v1"})
    dev_server.put("app/other", {"password": "other-value"})
    out, other = workdir / "out" / "alerting", workdir / "out" / "other"
    dynamic = (
        '{{ with secret (printf "secret/data/app/%s/alerting" (env "ENV")) }}'
        "{{ .Data.data.webhook }}{{ end }}"
    )
    tree = make_config(
        dev_server,
        workdir,
        [
            {
                "contents": dynamic,
                "syntax": "consul-template",
                "destination": str(out),
                "create_dest_dirs": True,
            },
            {
                "ref": "vault+kv2:///secret/app/other#password",
                "destination": str(other),
                "create_dest_dirs": True,
            },
        ],
    )
    daemon = start_daemon(tree, env={"ENV": "prod"})
    wait_for(lambda: read_text(out) == "hook-v1", 15, "first render", proc=daemon)
    wait_for(lambda: read_text(other) == "other-value", 5, "second template", proc=daemon)
    before = other.stat()
    # The computed secret is polled like a constant one.
    polled = reads(dev_server, "app/prod/alerting")
    wait_for(
        lambda: reads(dev_server, "app/prod/alerting") >= polled + 1,
        INTERVAL * 1.1 + 2,
        "a poll of the computed secret",
        proc=daemon,
    )
    dev_server.put("app/prod/alerting", {"webhook": SENTINEL_SECRET})
    wait_for(lambda: read_text(out) == SENTINEL_SECRET, INTERVAL * 1.1 + 3, "v2", proc=daemon)
    after = other.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # The status file is written once per pass, after that pass's files: wait for it rather
    # than read it the instant the output changes.
    status = wait_for(
        lambda: (s := read_text(workdir / "status.json") or "") and '"version": 2' in s and s,
        5,
        "the status file to show version 2",
        proc=daemon,
    )
    assert '"path": "app/prod/alerting"' in status
    assert SENTINEL_SECRET not in status
    code, _ = daemon.terminate()
    assert code == 0
    log = daemon.log()
    assert "secret/app/prod/alerting" in log  # the computed location, as metadata
    assert SENTINEL_SECRET not in log
