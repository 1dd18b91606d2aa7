"""KV2 read throughput of the embedded dev server (issue 3, KV2-NFR-130, KV2-AC-152).

Measures, on loopback:
  raw_keepalive_reads_per_s  one http.client connection, keep-alive, sequential GETs
  hvac_reads_per_s           hvac read_secret_version in a loop (one requests session)
and prints one JSON object. Target: raw >= 1500 reads/s. Nagle check: a server that
wrote headers and body separately would show ~25 reads/s here (40 ms delayed ACK).

    python benchmarks/devserver_throughput.py [--seconds 2] [--flavor vault] [--tls]
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import ssl
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import hvac

try:
    from kv2render.devserver import DevServer
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kv2render.devserver import DevServer

TARGET = 1500.0


def _raw_rate(srv: DevServer, seconds: float) -> dict[str, float]:
    url = urllib.parse.urlsplit(srv.url)
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(srv.ca_file))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "", url.port, context=ctx
        )
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port)
    headers = (
        {"Authorization": f"Bearer {srv.root_token}"}
        if srv.flavor == "ovh"
        else {"X-Vault-Token": srv.root_token, "X-Vault-Request": "true"}
    )
    path = url.path + "/v1/secret/data/bench/db"
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        t1 = time.perf_counter()
        if resp.status != 200:
            raise SystemExit(f"unexpected status {resp.status}")
        latencies.append(t1 - t0)
        if t1 >= deadline:
            break
    elapsed = time.perf_counter() - start
    conn.close()
    latencies.sort()
    return {
        "reads": len(latencies),
        "reads_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


def _hvac_rate(srv: DevServer, seconds: float) -> dict[str, float]:
    verify: Any = str(srv.ca_file) if srv.ca_file else True
    if srv.flavor == "ovh":
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {srv.root_token}"
        session.verify = verify
        client = hvac.Client(url=srv.url, token="", session=session, strict_http=True)
    else:
        client = hvac.Client(url=srv.url, token=srv.root_token, verify=verify)
    kv = client.secrets.kv.v2
    reads = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        kv.read_secret_version("bench/db", raise_on_deleted_version=True)
        reads += 1
    elapsed = time.perf_counter() - start
    client.adapter.close()
    return {"reads": reads, "reads_per_s": round(reads / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each measurement")
    p.add_argument("--flavor", default="vault", choices=("vault", "openbao", "ovh"))
    p.add_argument("--tls", action="store_true", help="measure over HTTPS with the dev CA")
    args = p.parse_args(argv)

    with DevServer(flavor=args.flavor, tls=args.tls) as srv:
        srv.put("bench/db", {"username": "bench", "password": "x" * 32})
        _raw_rate(srv, 0.2)  # warm-up: imports, first connection
        raw = _raw_rate(srv, args.seconds)
        hv = _hvac_rate(srv, args.seconds)
        served = srv.request_count(path_prefix="/v1/secret/data/bench/db")
    result = {
        "benchmark": "devserver_throughput",
        "flavor": args.flavor,
        "tls": args.tls,
        "seconds_per_measurement": args.seconds,
        "raw_keepalive_reads_per_s": raw["reads_per_s"],
        "raw_p50_ms": raw["p50_ms"],
        "raw_p99_ms": raw["p99_ms"],
        "hvac_reads_per_s": hv["reads_per_s"],
        "requests_served": served,
        "target_raw_reads_per_s": TARGET,
        "meets_target": raw["reads_per_s"] >= TARGET,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
