"""Issue 17: see it working. ``kv2render status`` as a probe, the metrics listener, the real
Prometheus scraping it, and the ready-made dashboard and alert rules.

Real daemon subprocess -> real hvac -> dev server over a socket; promtool and prometheus
from Debian's ``prometheus`` package.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.devserver import DevServer
from tests.daemon.conftest import Daemon, make_config, read_text, wait_for
from tests.daemon.obs_util import (
    EXAMPLES,
    free_port,
    get,
    prometheus_binary,
    sample_names,
    status_cli,
)

PW = "vault+kv2:///secret/app/db#password"
DENIED = "vault+kv2:///secret/other/db#password"  # the approle policy covers app/* only

# The metric families docs/operations.md lists (a histogram shows as _bucket/_sum/_count).
EXPORTED = {
    "kv2render_build_info",
    "kv2render_renders_total",
    "kv2render_render_errors_total",
    "kv2render_template_last_success_timestamp_seconds",
    "kv2render_template_failing",
    "kv2render_secret_version",
    "kv2render_secret_reads_total",
    "kv2render_secret_read_errors_total",
    "kv2render_poll_duration_seconds_bucket",
    "kv2render_last_successful_poll_timestamp_seconds",
    "kv2render_logins_total",
    "kv2render_token_ttl_seconds",
    "kv2render_oldest_output_age_seconds",
    "kv2render_ready",
    "kv2render_loop_last_tick_timestamp_seconds",
    "process_start_time_seconds",
}


def _tree(
    srv: DevServer, workdir: Path, *, denied: bool = False, port: int | None = None, **kw: Any
) -> dict[str, Any]:
    templates = [{"ref": PW, "destination": str(workdir / "out" / "pw"), "create_dest_dirs": True}]
    if denied:
        templates.append({"ref": DENIED, "destination": str(workdir / "out" / "other")})
    tree = make_config(srv, workdir, templates, **kw)
    if port is not None:
        tree["metrics"] = {"address": f"127.0.0.1:{port}"}
    return tree


def _status(workdir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(read_text(workdir / "status.json") or "{}")
    return doc


def _state(workdir: Path, state: str) -> Callable[[], bool]:
    return lambda: _status(workdir).get("state") == state


def _probe(workdir: Path, *extra: str) -> int:
    return status_cli("--status-file", str(workdir / "status.json"), *extra).returncode


@pytest.fixture
def rendered(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> Iterator[tuple[Daemon, int]]:
    """A daemon with its metrics listener, past its first render; (daemon, port)."""
    dev_server.put("app/db", {"password": "one"})
    dev_server.put("other/db", {"password": "two"})
    port = free_port()
    daemon = start_daemon(_tree(dev_server, workdir, denied=True, port=port))
    wait_for(_state(workdir, "degraded"), 15, "the first pass", proc=daemon)
    yield daemon, port


# -- kv2render status: one test per row of the exit-code table -------------------------------


def test_status_running_then_stale(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-420, KV2-INV-422, KV2-INV-423: running with every template fresh exits 0 (with
    the config or --status-file); --max-age exits 12 once no poll succeeded for that long."""
    dev_server.put("app/db", {"password": "one"})
    daemon = start_daemon(_tree(dev_server, workdir, interval="1h"))
    wait_for(_state(workdir, "running"), 15, "the first render", proc=daemon)
    assert status_cli("--config", str(daemon.config)).returncode == 0
    shown = status_cli("--status-file", str(workdir / "status.json"), "--max-age", "1h")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["last_successful_poll"]
    assert "status: running (exit 0)" in shown.stderr
    time.sleep(1.2)  # the interval is an hour: no poll comes
    stale = status_cli("--status-file", str(workdir / "status.json"), "--max-age", "1s")
    assert stale.returncode == 12, stale.stderr
    assert "no successful poll within 1s" in stale.stderr
    assert daemon.terminate()[0] == 0


def test_status_degraded_is_10(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-420: a template failing on a 403 makes the probe fail with 10, naming it."""
    dev_server.put("app/db", {"password": "one"})
    daemon = start_daemon(_tree(dev_server, workdir, denied=True))
    wait_for(_state(workdir, "degraded"), 15, "the failing template", proc=daemon)
    shown = status_cli("--status-file", str(workdir / "status.json"))
    assert shown.returncode == 10, shown.stderr
    assert "failing: template[1]" in shown.stderr
    assert daemon.terminate()[0] == 0


def test_status_not_ready_is_11(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-420: before the first render (the login hangs) the probe says 11, and the
    listener's /healthz is 200 while /readyz is 503."""
    dev_server.put("app/db", {"password": "one"})
    port = free_port()
    tree = _tree(dev_server, workdir, port=port)
    tree["vault"]["timeout"] = "60s"
    dev_server.faults.hang = True
    daemon = start_daemon(tree)
    wait_for(_state(workdir, "starting"), 15, "the starting status", proc=daemon)
    assert _probe(workdir) == 11
    wait_for(lambda: get(port, "/healthz")[0] == 200, 10, "/healthz", proc=daemon)
    code, _, body = get(port, "/readyz")
    assert code == 503 and "not every template has rendered" in body
    daemon.close()


def test_status_after_sigterm_and_sigkill_is_13(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-420, KV2-INV-422: after SIGTERM the status says stopped (13); after SIGKILL it
    still says "running", but the pid is gone and the lock free: 13 too, not 0."""
    dev_server.put("app/db", {"password": "one"})
    daemon = start_daemon(_tree(dev_server, workdir))
    wait_for(_state(workdir, "running"), 15, "the first render", proc=daemon)
    assert _probe(workdir) == 0
    assert daemon.terminate()[0] == 0
    stopped = status_cli("--status-file", str(workdir / "status.json"))
    assert stopped.returncode == 13 and "'stopped'" in stopped.stderr

    second = start_daemon(_tree(dev_server, workdir))
    wait_for(_state(workdir, "running"), 15, "the second daemon's render", proc=second)
    assert _probe(workdir) == 0
    second.kill9()
    assert _status(workdir)["state"] == "running"  # what a killed daemon leaves behind
    killed = status_cli("--status-file", str(workdir / "status.json"))
    assert killed.returncode == 13, killed.stderr
    assert "crashed" in killed.stderr and f"pid {second.pid}" in killed.stderr


def test_status_pid_of_another_program_is_13(workdir: Path) -> None:
    """KV2-AC-420, KV2-INV-422: a status file whose pid now belongs to another program (pid
    reuse after a crash) is a crashed daemon, not a running one."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        doc = {
            "pid": other.pid,
            "state": "running",
            "ready": True,
            "last_successful_poll": None,
            "templates": [{"template": "template[0]", "last_render": "x", "last_error": None}],
        }
        path = workdir / "status.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        shown = status_cli("--status-file", str(path))
        assert shown.returncode == 13, shown.stderr
        assert "another program" in shown.stderr
    finally:
        other.kill()
        other.wait()


def test_status_without_a_status_file(workdir: Path) -> None:
    """KV2-AC-420, KV2-AC-428: no status file is 14; a config naming none is a usage error
    (2); a config broken elsewhere still gives its status_file (read leniently)."""
    assert _probe(workdir) == 14
    config = workdir / "c.yaml"
    config.write_text(
        "vault: {address: http://127.0.0.1:1}\n"
        f"template: [{{contents: x, destination: {workdir / 'out'}}}]\n",
        encoding="utf-8",
    )
    none = status_cli("--config", str(config))
    assert none.returncode == 2 and "status_file" in none.stderr
    config.write_text(
        f"status_file: {workdir / 'status.json'}\nvault: {{address: 42}}\nbogus: 1\n",
        encoding="utf-8",
    )
    lenient = status_cli("--config", str(config))
    assert lenient.returncode == 14, lenient.stderr
    assert "read anyway" in lenient.stderr
    assert status_cli("--status-file", str(workdir / "x"), "--max-age", "soon").returncode == 2


# -- the listener ------------------------------------------------------------------------------


def test_metrics_health_and_readiness(rendered: tuple[Daemon, int], workdir: Path) -> None:
    """KV2-AC-421, KV2-AC-422, KV2-INV-421, KV2-INV-424: /metrics and Vault Agent's
    /agent/v1/metrics serve the listed metrics with bounded labels; /healthz is 200;
    /readyz is 503 naming the failing template, as `kv2render status` does."""
    daemon, port = rendered
    code, ctype, text = get(port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert EXPORTED <= sample_names(text), EXPORTED - sample_names(text)
    assert (
        'kv2render_renders_total{destination="%s",result="written",template="template[0]"} 1.0'
        % (workdir / "out" / "pw")
    ) in text
    assert 'kv2render_secret_version{mount="secret",path="app/db"} 1.0' in text
    assert re.search(
        r'kv2render_render_errors_total\{destination="[^"]+",error="AccessDeniedError",'
        r'template="template\[1\]"\} [1-9]',
        text,
    )
    assert 'kv2render_logins_total{result="success"} 1.0' in text
    assert "kv2render_ready 0.0" in text
    labels = set(re.findall(r"([a-z_]+)=\"", text))
    assert labels <= {
        "destination",
        "template",
        "result",
        "error",
        "mount",
        "path",
        "version",
        "le",
    }
    agent = get(port, "/agent/v1/metrics?format=prometheus")
    assert agent[0] == 200 and "kv2render_renders_total" in agent[2]
    assert get(port, "/healthz")[:1] == (200,)
    ready = get(port, "/readyz")
    assert ready[0] == 503 and "failing: template[1]" in ready[2]
    assert get(port, "/nope")[0] == 404
    assert daemon.terminate()[0] == 0


def test_exposition_passes_promtool(rendered: tuple[Daemon, int], workdir: Path) -> None:
    """KV2-AC-421: `promtool check metrics` accepts the exposition (names, types, units)."""
    promtool = prometheus_binary("promtool")
    _, port = rendered
    text = get(port, "/metrics")[2]
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_real_prometheus_scrapes_the_daemon(rendered: tuple[Daemon, int], workdir: Path) -> None:
    """KV2-AC-421: the real Prometheus (loopback only, scrape every 1s) scrapes the daemon's
    listener, and its query API answers with the secret's version."""
    binary = prometheus_binary("prometheus")
    _, port = rendered
    prom_port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "kv2render",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        query = urllib.parse.quote('kv2render_secret_version{path="app/db"}')

        def answered() -> list[Any]:
            code, _, body = get(prom_port, f"/api/v1/query?query={query}")
            if code != 200:
                return []
            result: list[Any] = json.loads(body)["data"]["result"]
            return result

        result = wait_for(answered, 60, "a scrape by Prometheus")
        assert result[0]["metric"]["job"] == "kv2render"
        assert result[0]["value"][1] == "1"
        up = json.loads(get(prom_port, "/api/v1/query?query=up")[2])["data"]["result"]
        assert up[0]["value"][1] == "1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- the ready-made dashboard and alert rules --------------------------------------------------


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:kv2render|process)_[a-z0-9_]+)\b", expr))


def _dashboard_exprs() -> list[str]:
    board = json.loads((EXAMPLES / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", ())]
    assert exprs, "the dashboard has no queries"
    return exprs


def test_dashboard_and_alerts_use_exported_metrics(rendered: tuple[Daemon, int]) -> None:
    """KV2-AC-425: every metric name a dashboard query or an alert rule uses is one a
    running daemon exports (scraped, not listed by hand)."""
    _, port = rendered
    exported = sample_names(get(port, "/metrics")[2])
    used = {name for expr in _dashboard_exprs() for name in _metric_names(expr)}
    rules = yaml.safe_load((EXAMPLES / "alerts.yml").read_text(encoding="utf-8"))
    alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used |= {name for expr in alert_exprs for name in _metric_names(expr)}
    assert used and used <= exported, sorted(used - exported)


def test_alert_rules_pass_promtool() -> None:
    """KV2-AC-425: `promtool check rules` accepts the alert rules, which cover a failing
    template, a low token TTL, no successful poll, and restarts."""
    promtool = prometheus_binary("promtool")
    path = EXAMPLES / "alerts.yml"
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "Kv2renderTemplateFailing",
        "Kv2renderTokenTTLLow",
        "Kv2renderNoSuccessfulPoll",
        "Kv2renderRestarting",
    } <= names


def test_sigterm_closes_the_listener(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-INV-425: the listener lives and dies with the daemon; a port in use is a clear
    start-up error naming metrics.address (KV2-FC-420)."""
    dev_server.put("app/db", {"password": "one"})
    port = free_port()
    daemon = start_daemon(_tree(dev_server, workdir, port=port))
    wait_for(lambda: get(port, "/readyz")[0] == 200, 15, "/readyz 200", proc=daemon)
    other_dir = workdir / "second"
    other_dir.mkdir()
    clash = Daemon(
        _write(other_dir, _tree(dev_server, other_dir, port=port)), other_dir, log_level="info"
    )
    try:
        assert clash.proc.wait(timeout=30) == 2
        assert f"metrics.address: cannot listen on 127.0.0.1:{port}" in clash.log()
    finally:
        clash.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert get(port, "/healthz")[0] == 0


def _write(directory: Path, tree: dict[str, Any]) -> Path:
    path = directory / "kv2render.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path
