"""The daemon reads a secret path computed from a secret's value and never shows it (issue 16).

Real daemon subprocess -> real hvac -> dev server over a socket, with the metrics listener.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kv2render.devserver import DevServer
from tests.daemon.conftest import Daemon, make_config, read_text, reads, wait_for
from tests.daemon.obs_util import free_port, get, status_cli
from tests.integration.hygiene_util import Sentinels

SHOWN = "[path computed from a secret value at "


def test_status_file_status_command_metrics_and_logs_never_show_it(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-486 KV2-INV-497 KV2-INV-394: the daemon renders the template, polls the
    computed location and re-renders on its new version; the status file, ``kv2render
    status`` (text and JSON), the metrics labels and the trace-level log show the location
    redacted and hold neither the tenant nor a password."""
    sentinels = Sentinels()
    tenant = sentinels.make("tenant", "tenant")
    first = sentinels.make("password", "pw")
    dev_server.put("app/tenant", {"name": tenant})
    dev_server.put(f"app/tenants/{tenant}", {"password": first})
    out = workdir / "out" / "pw"
    contents = (
        '{{ with secret "secret/data/app/tenant" }}\n'
        '{{ with secret (printf "secret/data/app/tenants/%s" .Data.data.name) }}'
        "{{ .Data.data.password }}{{ end }}{{ end }}"
    )
    port = free_port()
    tree = make_config(
        dev_server,
        workdir,
        [{"contents": contents, "syntax": "consul-template", "destination": str(out),
          "create_dest_dirs": True}],
        metrics={"address": f"127.0.0.1:{port}"},
    )  # fmt: skip
    daemon = start_daemon(tree, log_level="trace")
    wait_for(lambda: read_text(out) == f"\n{first}", 15, "first render", proc=daemon)
    # The computed location is polled, and its new version re-renders the template.
    second = sentinels.make("password2", "pw")
    dev_server.put(f"app/tenants/{tenant}", {"password": second})
    wait_for(lambda: read_text(out) == f"\n{second}", 15, "re-render", proc=daemon)
    assert reads(dev_server, f"app/tenants/{tenant}") >= 2
    status = read_text(workdir / "status.json") or ""
    assert f'"path": "{SHOWN}' in status
    metrics = get(port, "/metrics")[2]
    assert f'path="{SHOWN}' in metrics
    texts = {
        "status file": status,
        "metrics": metrics,
        "agent metrics": get(port, "/agent/v1/metrics?format=prometheus")[2],
    }
    for fmt in ("text", "json"):
        probe = status_cli("--status-file", str(workdir / "status.json"), "--log-format", fmt)
        assert probe.returncode == 0, probe.stderr
        assert SHOWN in probe.stdout
        texts[f"status ({fmt})"] = probe.stdout + probe.stderr
    daemon.terminate()
    texts["log"] = daemon.log()
    assert SHOWN in texts["log"]
    leaks = [hit for where, text in texts.items() for hit in sentinels.leaks(where, text)]
    assert leaks == []
