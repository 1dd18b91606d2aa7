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
from typing import Any

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
    # the floor of kv2render's own stack (benchmarks/floor.py), KV2-AC-530
    "vs_agent_floor_once_ratio",
    "vs_agent_floor_once100_ratio",
    "vs_agent_floor_first_render_ratio",
    "vs_agent_once_over_floor",
    "vs_agent_once100_over_floor",
}


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kv2render_bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_section_produces_every_key(tmp_path: Path) -> None:
    """KV2-AC-230 KV2-AC-232 KV2-AC-233 KV2-AC-530: all keys measured (tiny sizes), the
    floor rows included; reads per pass equal the unique secrets; a poll over pinned
    versions reads nothing."""
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


@pytest.mark.openbao
def test_the_floor_does_kv2renders_job(tmp_path: Path, bao_server: Any) -> None:
    """KV2-AC-531: benchmarks/floor.py, the floor the vs_agent rows compare with, writes the
    same bytes with the same 0600 mode as ``kv2render --once`` on the same YAML config and
    real server, for one template and for several (its thread pool): a floor that skipped
    part of the job would flatter the stack."""
    from tests.realbao import unique

    sys.path.insert(0, str(BENCH))
    try:
        import _common as c
        import vs_agent
    finally:
        sys.path.remove(str(BENCH))
    token_file = tmp_path / "token"
    token_file.write_text(bao_server.root_token, encoding="utf-8")
    token_file.chmod(0o600)
    folder = unique("floor")
    paths = [f"{folder}/s{i}" for i in range(5)]
    for i, path in enumerate(paths):
        bao_server.kv_put(path, {"user": f"u{i}", "password": f"pw-{i}"})
    for n in (1, 5):
        got: dict[str, dict[str, tuple[bytes, int]]] = {}
        for tool in ("floor", "kv2render"):
            config = vs_agent.kv2render_yaml(
                tmp_path / f"{tool}-{n}", bao_server.address, token_file, paths[:n]
            )
            argv = (
                [c.PY, str(BENCH / "floor.py"), str(config)]
                if tool == "floor"
                else [*c.KV2RENDER, "--config", str(config), "--once"]
            )
            c.run_timed(argv, c.clean_env({"HOME": str(tmp_path)}))
            out = config.parent / "out"
            got[tool] = {
                p.name: (p.read_bytes(), p.stat().st_mode & 0o777) for p in sorted(out.iterdir())
            }
        assert got["floor"] == got["kv2render"]
        assert len(got["floor"]) == n
        assert {mode for _, mode in got["floor"].values()} == {0o600}
