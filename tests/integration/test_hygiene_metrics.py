"""Issue 17's surfaces in the hygiene suite: /metrics, /agent/v1/metrics, /healthz, /readyz
and ``kv2render status`` (text and JSON) never show a secret value or a credential
(KV2-INV-001, KV2-INV-420).

A real daemon subprocess at trace level logs in with approle (sentinel role_id and
secret_id, a short renewable token so renewals run), renders sentinel secrets (one
rotated), has a template failing on a denied path and one failing on a missing key (error
text that could quote data), and is scraped on every surface while it runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from kv2render.devserver import DevServer
from tests.daemon.obs_util import free_port, get, status_cli

from .cli_helpers import cli_env, write_config
from .hygiene_util import Sentinels, report

SURFACES = ("/metrics", "/agent/v1/metrics?format=prometheus", "/healthz", "/readyz")


def _sentinels() -> Sentinels:
    s = Sentinels()
    for name, prefix in [
        ("password", "SENTINEL-SECRET-pw"),
        ("rotated", "SENTINEL-SECRET-rotated"),
        ("api_key", "SENTINEL-SECRET-apikey"),
        ("root_token", "hvs.SENTINEL-TOKEN-root"),
        ("role_id", "SENTINEL-ROLEID"),
        ("secret_id", "SENTINEL-SECRETID"),
    ]:
        s.make(name, prefix)
    s.add_number("count")
    return s


def _scrape(port: int, s: Sentinels, status: Path) -> tuple[list[str], dict[str, str]]:
    leaks: list[str] = []
    seen: dict[str, str] = {}
    for path in SURFACES:
        code, _, body = get(port, path)
        seen[path] = body
        leaks += s.leaks(f"GET {path} ({code})", body)
    for fmt in ("text", "json"):
        shown = status_cli("--status-file", str(status), "--log-format", fmt)
        seen[f"status {fmt}"] = shown.stdout
        leaks += s.leaks(f"kv2render status ({fmt}) stdout", shown.stdout)
        leaks += s.leaks(f"kv2render status ({fmt}) stderr", shown.stderr)
    return leaks, seen


def test_metrics_health_and_status_surfaces_have_no_sentinel(workdir: Path) -> None:
    """KV2-AC-423, KV2-INV-420, KV2-INV-001: every issue-17 surface, while templates render,
    rotate and fail, and after the daemon stopped, is free of sentinel values and tokens."""
    s = _sentinels()
    with DevServer(root_token=s["root_token"]) as srv:
        srv.put("app/db", {"password": s["password"], "count": s.items["count"].value})
        srv.put("app/api", {"api_key": s["api_key"]})
        srv.add_policy("app-read", {"secret/data/app/*": ["read"]})
        srv.add_approle("app", s["role_id"], s["secret_id"], ["app-read"], token_ttl=3)
        creds = workdir / "creds"
        creds.mkdir(mode=0o700)
        (creds / "role_id").write_text(s["role_id"])
        (creds / "secret_id").write_text(s["secret_id"])
        out = workdir / "out"
        out.mkdir(mode=0o700)
        status = workdir / "status.json"
        port = free_port()
        cfg = write_config(
            workdir,
            {
                "vault": {"address": srv.url, "retry": {"num_retries": 1}},
                "auto_auth": {
                    "method": {
                        "type": "approle",
                        "config": {
                            "role_id_file_path": str(creds / "role_id"),
                            "secret_id_file_path": str(creds / "secret_id"),
                            "remove_secret_id_file_after_reading": False,
                        },
                    }
                },
                "template_config": {"static_secret_render_interval": "1s"},
                "status_file": str(status),
                "metrics": {"address": f"127.0.0.1:{port}"},
                "template": [
                    {"ref": "vault+kv2:///secret/app/db#password", "destination": str(out / "pw")},
                    {
                        "contents": '{{ kv2("vault+kv2:///secret/app/api#api_key") }} '
                        '{{ kv2("vault+kv2:///secret/app/db#count") + 1 }}\n',
                        "destination": str(out / "conf"),
                    },
                    # A missing key: the error names the place, never the secret's values.
                    {"ref": "vault+kv2:///secret/app/api#nope", "destination": str(out / "bad")},
                    # Denied (the policy covers app/* only).
                    {"ref": "vault+kv2:///secret/other/x#k", "destination": str(out / "denied")},
                ],
            },
        )
        log = (workdir / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kv2render", "--config", str(cfg), "--log-level", "trace"],
            env=cli_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        leaks: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while not (out / "pw").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (out / "pw").exists(), "the daemon never rendered"
            first, seen = _scrape(port, s, status)
            leaks += first
            assert "kv2render_renders_total" in seen["/metrics"]
            assert "failing" in seen["/readyz"]
            srv.put("app/db", {"password": s["rotated"], "count": s.items["count"].value})
            while s["rotated"] not in (out / "pw").read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(3.5)  # past the token's 3 s TTL: renewals and a re-login happened
            second, seen = _scrape(port, s, status)
            leaks += second
            assert 'kv2render_token_renewals_total{result="success"}' in seen["/metrics"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        for fmt in ("text", "json"):
            shown = status_cli("--status-file", str(status), "--log-format", fmt)
            leaks += s.leaks(f"kv2render status ({fmt}) after stop", shown.stdout + shown.stderr)
        leaks += s.leaks("status file", status.read_text(encoding="utf-8"))
        leaks += s.leaks("daemon log", (workdir / "daemon.log").read_bytes())
        json.loads(status.read_text(encoding="utf-8"))
    assert not leaks, report(leaks)
