"""Scenario 6: a long daemon run over 200 templates at a 1 s interval while secrets change.

~60 s in CI, 30 minutes with KV2RENDER_FULL_FAULTS=1. Figures: RSS after warm-up and at
the end (growth under 5 MB), open file descriptors (no growth), every change landing, and
exactly one write per change per template, counted from the daemon's one INFO line per
write ("rendered ... -> DEST", KV2-AC-292, KV2-NFR-280).
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from kv2render.devserver import DevServer

from ..integration.cli_helpers import write_config
from .helpers import FULL, DaemonProc, fd_count, record, rss_kib, sized, wait_until

TEMPLATES = 200
SECRETS = 50  # template i reads secret i % 50: each secret feeds 4 templates
DURATION = sized(60, 30 * 60)
WARM_UP = sized(20, 5 * 60)
CHANGE_EVERY = 0.5  # one secret changes every 0.5 s, round robin: each every 25 s
_RENDERED = re.compile(r"rendered \S+ -> (\S+)$")


@pytest.mark.timeout(DURATION + 120)
def test_long_run_memory_fds_and_exactly_once_renders(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-292 KV2-NFR-280: RSS flat, no fd leak, every change lands, none renders twice."""
    out = workdir / "out"
    out.mkdir(mode=0o700)
    for s in range(SECRETS):
        dev_server.put(f"app/s{s}", {"v": f"s{s}-g0"})
    cfg = write_config(
        workdir,
        {
            "vault": {"address": dev_server.url},
            "template_config": {"static_secret_render_interval": "1s"},
            "status_file": str(workdir / "status.json"),
            "template": [
                {
                    "contents": f'{{{{ kv2("vault+kv2:///secret/data/app/s{i % SECRETS}#v") }}}}\n',
                    "destination": str(out / f"f{i}"),
                }
                for i in range(TEMPLATES)
            ],
        },
    )
    daemon = DaemonProc(cfg, workdir / "logs", env={"VAULT_TOKEN": dev_server.root_token})
    changes: Counter[int] = Counter()
    generation = [0] * SECRETS
    stop = threading.Event()

    def churn() -> None:
        s = 0
        while not stop.wait(CHANGE_EVERY):
            generation[s] += 1
            dev_server.put(f"app/s{s}", {"v": f"s{s}-g{generation[s]}"})
            changes[s] += 1
            s = (s + 1) % SECRETS

    samples: list[tuple[float, int, int]] = []  # (seconds since start, rss KiB, fds)
    try:
        dests = [out / f"f{i}" for i in range(TEMPLATES)]
        wait_until(lambda: all(d.exists() for d in dests), 60, "the first 200 renders")
        started = time.monotonic()
        writer = threading.Thread(target=churn, name="churn", daemon=True)
        writer.start()
        while (elapsed := time.monotonic() - started) < DURATION:
            assert daemon.alive(), daemon.log()[-3000:]
            samples.append((elapsed, rss_kib(daemon.pid), fd_count(daemon.pid)))
            time.sleep(1.0 if not FULL else 5.0)
        stop.set()
        writer.join(timeout=5)
        # Every change lands: each file ends on its secret's last value.
        expected = {d: f"s{i % SECRETS}-g{generation[i % SECRETS]}\n" for i, d in enumerate(dests)}
        wait_until(
            lambda: all(d.read_text() == text for d, text in expected.items()),
            15,
            "the last changes to land",
        )
        samples.append((time.monotonic() - started, rss_kib(daemon.pid), fd_count(daemon.pid)))
        log = daemon.log()
    finally:
        stop.set()
        daemon.stop()
    renders = Counter(m.group(1) for line in log.splitlines() if (m := _RENDERED.search(line)))
    twice = {
        d.name: renders[str(d)] - 1 - changes[i % SECRETS]
        for i, d in enumerate(dests)
        if renders[str(d)] != 1 + changes[i % SECRETS]
    }
    after = [s for s in samples if s[0] >= WARM_UP]
    warm_rss = statistics.median(s[1] for s in after[:5])
    end_rss = statistics.median(s[1] for s in after[-5:])
    warm_fds = min(s[2] for s in after[:5])
    end_fds = min(s[2] for s in after[-5:])
    record(
        "long-run",
        tries=sum(changes.values()),
        survived=sum(changes.values()) if not twice else 0,
        duration_s=DURATION,
        templates=TEMPLATES,
        secrets=SECRETS,
        secret_changes=sum(changes.values()),
        writes=sum(renders.values()),
        renders_off_by=twice,
        rss_kib_after_warm_up=warm_rss,
        rss_kib_end=end_rss,
        rss_growth_kib=end_rss - warm_rss,
        rss_kib_max=max(s[1] for s in samples),
        fds_after_warm_up=warm_fds,
        fds_end=end_fds,
        samples=len(samples),
    )
    assert twice == {}, (
        f"renders != 1 + changes for {len(twice)} files: {dict(list(twice.items())[:5])}"
    )
    assert end_rss - warm_rss < 5 * 1024, f"RSS grew {end_rss - warm_rss} KiB after warm-up"
    assert end_fds <= warm_fds, f"fds grew from {warm_fds} to {end_fds}"
