"""The benchmarks' dev server, in its own process, with a control channel on stdin.

``kv2render dev-server`` has no latency switch and no way to read its request
counters from another process, so the benchmarks start the same ``DevServer``
from this wrapper (issue 8: "the dev server runs in a separate process").

Protocol: the first stdout line is ``{"addr": URL, "token": ROOT_TOKEN}``. Then
one JSON command per stdin line, one JSON answer per stdout line:

    {"op": "latency", "s": 0.005}                     -> {"ok": true}
    {"op": "seed", "items": [[path, {data}], ...]}    -> {"ok": true, "versions": [...]}
    {"op": "count", "prefix": "/v1/secret/", "method": "GET"}  -> {"n": N}
    {"op": "summary"}   -> {"n": N, "by_path": {"GET /v1/...": n, ...}}
    {"op": "reset"}     -> {"ok": true}
EOF on stdin stops the server. The root token is a benchmark-only dev token.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

try:
    from kv2render.devserver import DevServer
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kv2render.devserver import DevServer


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _handle(srv: DevServer, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "latency":
        srv.faults.latency = float(cmd["s"])
        return {"ok": True}
    if op == "seed":
        versions = [srv.put(path, data) for path, data in cmd["items"]]
        return {"ok": True, "versions": versions}
    if op == "count":
        return {"n": srv.request_count(cmd.get("method"), cmd.get("prefix"))}
    if op == "summary":
        with srv._rec_lock:  # a snapshot; the list grows from handler threads
            rows = list(srv.requests)
        by_path = Counter(f"{m} {p}" for m, p, _ in rows)
        return {"n": len(rows), "by_path": dict(by_path.most_common(20))}
    if op == "reset":
        srv.reset_counters()
        return {"ok": True}
    return {"error": f"unknown op {op!r}"}


def main() -> int:
    srv = DevServer(flavor="vault").start()
    try:
        _answer({"addr": srv.url, "token": srv.root_token})
        for line in sys.stdin:
            if line.strip():
                _answer(_handle(srv, json.loads(line)))
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
