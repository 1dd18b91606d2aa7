"""The daemon logs a command's output as DEBUG records, redacted (issue 14, item 11).

Real CLI subprocess -> real hvac -> dev server over a socket; a real shell command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kv2render.devserver import DevServer
from tests.daemon.conftest import (
    SENTINEL_SECRET,
    SENTINEL_SECRET_ID,
    Daemon,
    make_config,
    read_text,
    wait_for,
)

SECOND = "S3NTINEL-second-value-77aa"


def test_daemon_redacts_what_its_command_prints(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-403 KV2-INV-397 KV2-INV-396: a command that prints the file it follows: at
    debug, each line it prints is one DEBUG line of the daemon's log with the value read
    ``[redacted]``, for the first render and for a new version alike."""
    dev_server.put("app/db", {"password": SENTINEL_SECRET})
    out = workdir / "out" / "db-password"
    command = f"cat {out}; echo; echo $((6 * 7))-marker-$(cat {out} | wc -c)"
    tree = make_config(
        dev_server,
        workdir,
        [
            {
                "ref": "vault+kv2:///secret/app/db#password",
                "destination": str(out),
                "create_dest_dirs": True,
                "command": command,
            }
        ],
    )
    daemon = start_daemon(tree, log_level="debug")
    size = len(SENTINEL_SECRET)
    wait_for(lambda: f"42-marker-{size}" in daemon.log(), 15, "first command", proc=daemon)
    dev_server.put("app/db", {"password": SECOND})
    wait_for(lambda: read_text(out) == SECOND, 10, "second version", proc=daemon)
    wait_for(lambda: f"42-marker-{len(SECOND)}" in daemon.log(), 10, "second run", proc=daemon)
    code, _ = daemon.terminate()
    assert code == 0
    log = daemon.log()
    printed = [line for line in log.splitlines() if "template[0].command stdout:" in line]
    assert sum(line.endswith("stdout: [redacted]") for line in printed) == 2, printed
    assert all("[DEBUG]" in line for line in printed)
    for secret in (SENTINEL_SECRET, SECOND, SENTINEL_SECRET_ID):
        assert secret not in log
