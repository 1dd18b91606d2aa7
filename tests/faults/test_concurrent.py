"""Scenario 7: two daemons on the same destinations (and the same status file).

Neither may ever leave a torn file (each write is a rename of a complete temp file), and
the second warns about the first through the lock file next to the status file
(KV2-AC-293). The reader samples every file continuously while both run and secrets
change; ~10 s in CI, 2 minutes with KV2RENDER_FULL_FAULTS=1.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kv2render.devserver import DevServer

from ..integration.cli_helpers import write_config
from .helpers import DaemonProc, mode_of, record, sized, wait_until

FILES = 20
DURATION = sized(10, 120)
PAD = "c" * 2000


@pytest.mark.timeout(DURATION + 90)
def test_two_instances_never_tear_a_file_and_the_second_warns(
    dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-293: no torn file under two writers; the second names the first's pid."""
    out = workdir / "out"
    out.mkdir(mode=0o700)
    allowed: list[set[bytes]] = [set() for _ in range(FILES)]
    generation = [0] * FILES

    def put(n: int) -> None:
        generation[n] += 1
        value = f"file-{n}-g{generation[n]}-{PAD}"
        allowed[n].add((value + "\n").encode())
        dev_server.put(f"app/s{n}", {"v": value})

    for n in range(FILES):
        put(n)
    status = workdir / "status.json"
    cfg = write_config(
        workdir,
        {
            "vault": {"address": dev_server.url},
            "template_config": {"static_secret_render_interval": "200ms"},
            "status_file": str(status),
            "template": [
                {
                    "contents": f'{{{{ kv2("vault+kv2:///secret/data/app/s{n}#v") }}}}\n',
                    "destination": str(out / f"f{n}"),
                }
                for n in range(FILES)
            ],
        },
    )
    env = {"VAULT_TOKEN": dev_server.root_token}
    dests = [out / f"f{n}" for n in range(FILES)]
    first = DaemonProc(cfg, workdir / "logs", env=env)
    second: DaemonProc | None = None
    stop = threading.Event()
    reads = torn = 0
    try:
        wait_until(lambda: all(d.exists() for d in dests), 30, "the first instance's renders")
        second = DaemonProc(cfg, workdir / "logs", env=env)
        second_log = second
        wait_until(lambda: "holds" in second_log.log(), 15, "the second instance's warning")

        def churn() -> None:
            n = 0
            while not stop.wait(0.01):
                put(n)
                n = (n + 1) % FILES

        writer = threading.Thread(target=churn, daemon=True)
        writer.start()
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            for n, dest in enumerate(dests):
                data = dest.read_bytes()
                reads += 1
                if data not in allowed[n]:
                    torn += 1
                assert mode_of(dest) & 0o177 == 0
        stop.set()
        writer.join(timeout=5)
        assert first.alive() and second.alive()
        warning = next(line for line in second.log().splitlines() if "holds" in line)
    finally:
        stop.set()
        first.stop()
        if second is not None:
            second.stop()
    record(
        "concurrent-instances",
        tries=reads,
        survived=reads - torn,
        files=FILES,
        duration_s=DURATION,
        secret_writes=sum(generation),
    )
    assert torn == 0, f"{torn} of {reads} reads saw content that was never rendered"
    assert f"pid {first.pid}" in warning and str(status) + ".lock" in warning, warning
