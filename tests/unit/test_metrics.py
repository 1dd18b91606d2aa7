"""Issue 17 in-process: the probe's verdicts, the recorder's health, the metrics config (YAML
and Vault Agent vocabulary), and that metrics cost nothing when off."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import MetricsSettings, load
from kv2render.daemon.metrics import PrometheusRecorder
from kv2render.devserver import DevServer
from kv2render.errors import ConfigError
from kv2render.output.status import (
    PROBE_DEGRADED,
    PROBE_NOT_READY,
    PROBE_OK,
    PROBE_STALE,
    PROBE_STOPPED,
    assess,
    document,
    parse_utc,
    utc,
)
from tests.integration.cli_helpers import cli_env

NOW = 1_800_000_000.0


def _doc(
    state: str = "running",
    *,
    ready: bool = True,
    error: str | None = None,
    rendered: bool = True,
    poll: float | None = NOW - 10,
    pinned: int | None = None,
) -> dict[str, Any]:
    return {
        "state": state,
        "ready": ready,
        "last_successful_poll": utc(poll),
        "templates": [
            {
                "template": "template[0]",
                "destination": "/run/a",
                "secrets": [{"mount": "secret", "path": "a", "pinned_version": pinned}],
                "last_render": utc(NOW - 20) if rendered else None,
                "last_error": error,
            }
        ],
    }


@pytest.mark.parametrize(
    ("doc", "max_age", "code"),
    [
        (_doc(), None, PROBE_OK),
        (_doc(), 60.0, PROBE_OK),
        (_doc(poll=NOW - 120), 60.0, PROBE_STALE),
        (_doc(poll=None), 60.0, PROBE_STALE),
        (_doc(poll=None, pinned=3), 60.0, PROBE_OK),  # nothing polled: nothing stale
        (_doc("degraded", error="template[0]: denied"), None, PROBE_DEGRADED),
        (_doc("degraded", ready=False, rendered=False, error="x"), None, PROBE_DEGRADED),
        (_doc("login-failed"), None, PROBE_DEGRADED),
        (_doc("starting", ready=False, rendered=False), None, PROBE_NOT_READY),
        (_doc("running", rendered=False), None, PROBE_NOT_READY),  # after a reload
        (_doc("stopped"), None, PROBE_STOPPED),
        (_doc("exited", error="x"), None, PROBE_STOPPED),
    ],
)
def test_assess_table(doc: dict[str, Any], max_age: float | None, code: int) -> None:
    """KV2-AC-420, KV2-INV-422, KV2-INV-423: each row of the exit-code table."""
    assert assess(doc, now=NOW, max_age=max_age).code == code


def test_utc_round_trip_and_document_field() -> None:
    """KV2-INV-423: the status document carries last_successful_poll, parsed back exactly."""
    assert parse_utc(utc(NOW + 0.25)) == pytest.approx(NOW + 0.25)
    assert parse_utc(None) is None and parse_utc("garbage") is None
    doc = document([], started=NOW, now=NOW, ready=True, state="running", last_successful_poll=NOW)
    assert parse_utc(doc["last_successful_poll"]) == NOW


def test_healthz_follows_the_loops_schedule() -> None:
    """KV2-AC-422: /healthz is 503 before the loop ticks and when it is late for its own
    planned wake-up plus the grace; 200 otherwise. /readyz follows the status verdict."""
    clock = [NOW]
    rec = PrometheusRecorder(stale_after=900, wall=lambda: clock[0], health_grace=10)
    assert rec.healthz()[0] is False
    rec.tick(NOW, 300)
    clock[0] = NOW + 305
    assert rec.healthz() == (True, "ok")
    clock[0] = NOW + 311
    ok, reason = rec.healthz()
    assert not ok and "late" in reason
    assert rec.readyz()[0] is False
    rec.publish(_doc())
    clock[0] = NOW
    assert rec.readyz() == (True, "1 template(s) fresh")
    clock[0] = NOW + 1000
    assert rec.readyz()[0] is False  # no successful poll within 3 intervals


def test_yaml_metrics_block(tmp_path: Path) -> None:
    """KV2-AC-424, KV2-FC-422: `metrics: {address}` turns the listener on; `{}` uses
    127.0.0.1:9102; a bad address names the key and the fix; absent means off."""

    def config(metrics: str) -> Any:
        path = tmp_path / "c.yaml"
        path.write_text(
            "vault: {address: http://127.0.0.1:8200}\n"
            f"template: [{{contents: x, destination: {tmp_path / 'o'}}}]\n" + metrics,
            encoding="utf-8",
        )
        return load(path, env={}, require_credentials=False)

    assert config("").metrics is None
    assert config("metrics: {}\n").metrics == MetricsSettings()
    assert config("metrics: {address: '[::1]:9200'}\n").metrics == MetricsSettings("::1", 9200)
    assert config("metrics: {address: '0.0.0.0:9102'}\n").metrics.loopback is False
    for bad in ("'9102'", "'host:'", "'h:99999'", "':9102'"):
        with pytest.raises(ConfigError) as err:
            config(f"metrics: {{address: {bad}}}\n")
        assert "metrics.address" in str(err.value) and "HOST:PORT" in str(err.value)
    with pytest.raises(ConfigError, match="metrics"):
        config("metrics: {port: 1}\n")


def _agent(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "agent.hcl"
    path.write_text(
        'vault { address = "http://127.0.0.1:8200" }\n'
        f'template {{\n  contents = "x"\n  destination = "{tmp_path / "o"}"\n}}\n' + extra,
        encoding="utf-8",
    )
    return load(path, env={}, require_credentials=False)


def test_agent_metrics_only_listener_and_telemetry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-424, KV2-INV-426: Vault Agent's own vocabulary turns the listener on."""
    cfg = _agent(
        tmp_path,
        'listener "tcp" {\n  address = "127.0.0.1:8201"\n  tls_disable = true\n'
        '  role = "metrics_only"\n}\n'
        'telemetry {\n  prometheus_retention_time = "24h"\n  disable_hostname = true\n}\n',
    )
    assert cfg.metrics == MetricsSettings("127.0.0.1", 8201)


def test_agent_proxy_listener_is_ignored_and_bad_ones_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-424, KV2-FC-421: a listener with another role is the agent's API proxy: ignored
    with a warning saying what is served instead (KV2-FC-251); a metrics listener with TLS,
    of another type, or twice is refused naming the place."""
    with caplog.at_level(logging.WARNING, logger="kv2render.config"):
        cfg = _agent(tmp_path, 'listener "tcp" {\n  address = "127.0.0.1:8100"\n}\n')
    assert cfg.metrics is None
    assert 'role = "metrics_only" serves metrics' in caplog.text
    metrics_only = '  role = "metrics_only"\n}\n'
    for extra, where in [
        ('listener "tcp" {\n  tls_disable = false\n' + metrics_only, "tls_disable"),
        ('listener "unix" {\n  tls_disable = true\n' + metrics_only, 'listener "unix"'),
        (
            'listener "tcp" {\n  tls_disable = true\n  tls_cert_file = "c"\n' + metrics_only,
            "tls_cert_file",
        ),
        (('listener "tcp" {\n  tls_disable = true\n' + metrics_only) * 2, "more than one"),
    ]:
        with pytest.raises(ConfigError) as err:
            _agent(tmp_path, extra)
        assert where in str(err.value)


def test_metrics_off_imports_no_prometheus_client(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-426, KV2-NFR-420: --once never imports prometheus_client, nor does the daemon's
    code path without a listener."""
    dev_server.put("app/db", {"password": "x"})
    path = tmp_path / "c.yaml"
    path.write_text(
        f"vault: {{address: {dev_server.url}}}\n"
        "template: [{ref: 'vault+kv2:///secret/app/db#password', "
        f"destination: {tmp_path / 'o'}}}]\n",
        encoding="utf-8",
    )
    once = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kv2render", "--once", "--config", str(path)],
        env=cli_env({"VAULT_TOKEN": dev_server.root_token}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert once.returncode == 0, once.stderr[-2000:]
    assert "kv2render.runner" in once.stderr  # importtime output is there
    assert "prometheus_client" not in once.stderr
    daemon = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, kv2render.daemon.service, kv2render.daemon.metrics\n"
            "from kv2render.daemon.metrics import NullRecorder\n"
            "NullRecorder().render(None, 0.0)\n"
            "print('prometheus_client' in sys.modules)",
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert daemon.stdout.strip() == "False", daemon.stderr


def test_benchmark_reports_the_metrics_cost() -> None:
    """KV2-AC-427, KV2-NFR-421: the poll benchmark has the metrics-on key, its ratio row to
    the metrics-off key, and the 1.10 target."""
    from benchmarks import run

    assert run.KEYS.index("poll_cpu_ms_per_read_metrics") == (
        run.KEYS.index("poll_cpu_ms_per_read") + 1
    )
    assert run.RATIO_ROWS["metrics_cpu_ratio"] == (
        "poll_cpu_ms_per_read_metrics",
        "poll_cpu_ms_per_read",
    )
    label, check = run.TARGETS["metrics_cpu_ratio"]
    assert label == "<= 1.10"
    assert check({"poll_cpu_ms_per_read": 1.0, "poll_cpu_ms_per_read_metrics": 1.09})
    assert not check({"poll_cpu_ms_per_read": 1.0, "poll_cpu_ms_per_read_metrics": 1.2})


def test_health_grace_covers_a_pass_during_an_outage(tmp_path: Path) -> None:
    """KV2-AC-422, KV2-INV-424: /healthz waits out the longest pass the retries allow."""
    from kv2render.daemon.service import health_grace

    path = tmp_path / "c.yaml"
    path.write_text(
        "vault: {address: 'http://127.0.0.1:8200', timeout: 30s}\n"
        f"template: [{{contents: x, destination: {tmp_path / 'o'}}}]\n",
        encoding="utf-8",
    )
    cfg = load(path, env={}, require_credentials=False)
    assert health_grace(cfg) == 13 * 30 + 12 * 60
    path.write_text(
        path.read_text().replace("timeout: 30s", "timeout: 1s, retry: {num_retries: -1}")
    )
    assert health_grace(load(path, env={}, require_credentials=False)) == 120


def test_a_template_removed_by_reload_leaves_the_gauges() -> None:
    """KV2-INV-421: after a reload without a template, its failing gauge is gone (no alert
    on a template that no longer exists)."""
    from prometheus_client import generate_latest

    from kv2render.config import TemplateSpec
    from kv2render.errors import AccessDeniedError
    from kv2render.runner import RenderResult

    rec = PrometheusRecorder(stale_after=900, wall=lambda: NOW)
    spec = TemplateSpec(index=1, destination=Path("/run/b"), contents="x")
    rec.render(RenderResult(spec, error=AccessDeniedError("denied", where="secret/b")), NOW)
    two = _doc()
    two["templates"].append({"template": "template[1]", "destination": "/run/b"})
    rec.publish(two)
    assert (
        'kv2render_template_failing{destination="/run/b"' in generate_latest(rec.registry).decode()
    )
    rec.publish(_doc())
    text = generate_latest(rec.registry).decode()
    assert "/run/b" not in text.split("kv2render_template_failing", 1)[1].split("# HELP", 1)[0]


def test_non_loopback_listener_warns_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    """KV2-INV-425: a non-loopback address is used as configured, with a warning at start
    that it has no TLS or authentication; loopback says nothing of the kind."""
    import urllib.request

    from kv2render.daemon.health import HealthServer

    rec = PrometheusRecorder(stale_after=900)
    with caplog.at_level(logging.INFO, logger="kv2render.daemon.health"):
        server = HealthServer(MetricsSettings("0.0.0.0", _port()), rec).start()
    try:
        assert "non-loopback 0.0.0.0" in caplog.text and "without TLS" in caplog.text
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert b"kv2render_build_info" in reply.read()
    finally:
        server.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kv2render.daemon.health"):
        HealthServer(MetricsSettings("127.0.0.1", _port()), rec).start().close()
    assert "non-loopback" not in caplog.text


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
