"""Smoke test of benchmarks/run.py: every section at toy sizes, real processes.

No timing is asserted (issue 8: benchmarks are scripts, not timed tests). What is
asserted is that each section produces its keys, that the JSON document carries
exactly the documented keys, and the two counts that are behaviour, not speed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the daemon rows read /proc"
)

ISSUE_KEYS = {
    "import_floor_ms",
    "once_wall_ms",
    "once_overhead_ratio",
    "unique_secrets",
    "reads_per_pass",
    "reads_per_poll_pinned",
    "scale_distinct_s",
    "naive_distinct_s",
    "scale_shared_s",
    "naive_shared_s",
    "server_floor_s",
    "poll_cpu_ms_per_read",
    "poll_cpu_ms_per_read_metrics",
    "idle_cpu_s_per_min",
    "daemon_rss_mb",
    "change_latency_p50_s",
    "change_latency_p99_s",
    # issue 18: side by side with the real OpenBao Agent
    "vs_agent_once_ratio_yaml",
    "vs_agent_once_ratio_hcl",
    "vs_agent_once100_ratio",
    "vs_agent_first_render_ratio",
    "vs_agent_poll_cpu_ratio",
    "vs_agent_rss_ratio",
    "vs_agent_requests_ratio",
    "vs_agent_change_latency_p50_ratio",
    "poll_interval_drift",
}


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kv2render_bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_section_produces_every_key(tmp_path: Path) -> None:
    """KV2-AC-230 KV2-AC-232 KV2-AC-233: all keys measured (tiny sizes); reads per pass
    equal the unique secrets; a poll over pinned versions reads nothing."""
    run = _load_run()
    assert set(run.KEYS) == ISSUE_KEYS
    lines: list[str] = []
    bench = run.Bench(run.TINY, tmp_path, log=lines.append)
    result = bench.run_all()

    missing = {key: bench.reasons.get(key) for key in run.KEYS if result[key] is None}
    assert not missing, missing
    document = json.loads(run.report_json(result))
    assert list(document) == list(run.KEYS)
    # the constant secrets and the computed templates' own (issue 16: computed paths count)
    assert result["unique_secrets"] == run.TINY.reads_secrets + run.TINY.reads_dynamic_secrets
    assert result["reads_per_pass"] == result["unique_secrets"]
    assert result["reads_per_poll_pinned"] == 0
    for key in run.KEYS:
        assert isinstance(document[key], int | float) and document[key] >= 0, key
    table = run.table(bench)
    assert all(key in table for key in run.KEYS)


def test_failed_section_leaves_null_keys_and_a_reason(tmp_path: Path) -> None:
    """KV2-AC-235: a section that fails yields null keys with its reason, never a crash."""
    run = _load_run()
    bench = run.Bench(run.TINY, tmp_path, log=lambda _: None)

    def broken() -> None:
        raise RuntimeError("daemon exited 1")

    bench.section(("daemon_rss_mb",), broken)
    assert bench.result["daemon_rss_mb"] is None
    assert "daemon exited 1" in bench.reasons["daemon_rss_mb"]
    assert json.loads(run.report_json(bench.result))["daemon_rss_mb"] is None
    assert run.evaluate(bench.result)["daemon_rss_mb"] is None


def test_interleaving_and_percentiles() -> None:
    """Repetitions alternate A, B, A, B after the warm-up; nearest-rank percentiles."""
    sys.path.insert(0, str(BENCH))
    try:
        import _common as c
    finally:
        sys.path.remove(str(BENCH))
    order: list[str] = []
    samples = c.interleaved(
        {"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 2.0},
        reps=3,
        warmup=1,
    )
    assert order == ["a", "b"] * 4
    assert samples == {"a": [1.0] * 3, "b": [2.0] * 3}
    values = [float(i) for i in range(1, 101)]
    assert c.percentile(values, 50) == 50.0
    assert c.percentile(values, 99) == 99.0
    assert c.percentile([0.3], 99) == 0.3
