"""Shared pieces of the fault scenarios: full/short sizing, the JSON summary line, a
raw-socket HTTP server for hostile responses, and file-system probes.

Every scenario ends with :func:`record`, one ``FAULTS-SUMMARY {json}`` line on stdout
(and appended to ``$KV2RENDER_FAULTS_SUMMARY`` when set): what it tried and what
survived. docs/reliability.md tabulates the full forms' lines (KV2-AC-294). A module whose
scenario is its set of test cases writes the line from a module fixture's finalizer, from
the cases' own outcomes (:func:`outcome`), never from a test that depends on running last
(KV2-AC-456).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import DaemonProcess

FULL = os.environ.get("KV2RENDER_FULL_FAULTS") == "1"
IN_CI = os.environ.get("CI", "").lower() == "true"


def sized(short: int, full: int) -> int:
    """The short size by default (CI), the full size with KV2RENDER_FULL_FAULTS=1."""
    return full if FULL else short


def record(scenario: str, *, tries: int, survived: int, **figures: Any) -> dict[str, Any]:
    line = {
        "scenario": scenario,
        "form": "full" if FULL else "short",
        "tries": tries,
        "survived": survived,
        **figures,
    }
    text = json.dumps(line, sort_keys=True)
    print(f"FAULTS-SUMMARY {text}")
    target = os.environ.get("KV2RENDER_FAULTS_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return line


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()  # filled by tests/faults/conftest.py


def outcome(item: pytest.Item) -> bool | None:
    """Whether a case survived: True when setup and call passed, False when either failed (an
    xfail too), None when it did not run or was skipped (not a try)."""
    reports = item.stash.get(REPORTS, {})
    if not reports or any(r.skipped and not hasattr(r, "wasxfail") for r in reports.values()):
        return None
    return "call" in reports and all(r.passed for r in reports.values())


def case_outcomes(request: pytest.FixtureRequest, prefix: str = "test_") -> dict[str, bool]:
    """The outcomes of this module's cases named ``prefix...`` that ran in this session, for a
    module fixture's finalizer (the module's last case has its call report by then)."""
    found: dict[str, bool] = {}
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module or not item.name.startswith(prefix):
            continue
        survived = outcome(item)
        if survived is not None:
            found[item.name.removeprefix("test_")] = survived
    return found


def record_cases(
    request: pytest.FixtureRequest, scenario: str, prefix: str = "test_", **figures: Any
) -> None:
    """One FAULTS-SUMMARY line for the module's cases that ran: tries, survived and the names
    of those that did not survive (KV2-AC-294, KV2-AC-456). Nothing when none ran."""
    outcomes = case_outcomes(request, prefix)
    if outcomes:
        record(
            scenario,
            tries=len(outcomes),
            survived=sum(outcomes.values()),
            failed=sorted(name for name, ok in outcomes.items() if not ok),
            **figures,
        )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def temp_files(directory: Path) -> list[Path]:
    """writer.py's temp files, ``.<name>.kv2render-<16 hex>.tmp`` (KV2-INV-280)."""
    return sorted(
        p for p in directory.iterdir() if p.name.startswith(".") and ".kv2render-" in p.name
    )


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll every 20 ms; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(0.02)


# -- a raw HTTP server whose every byte the test decides -----------------------------------


@dataclass
class Seen:
    """One request as it arrived: request line and headers (names lower-cased)."""

    line: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.line.split(" ")[1] if " " in self.line else ""


Handler = Callable[["RawConnection", Seen], None]


@dataclass
class RawConnection:
    sock: socket.socket

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(
        self,
        status: str = "200 OK",
        body: bytes = b"",
        *,
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        if content_type is not None:
            head.append(f"Content-Type: {content_type}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


@dataclass
class RawServer:
    """A loopback HTTP/1.1 server: each request goes to ``handler`` with the raw socket.

    Not the dev server on purpose: a hostile server sends what no faithful server would
    (bodies of any size, bad bytes, trickles, redirects) and records what it received.
    """

    handler: Handler
    host: str = "127.0.0.1"
    seen: list[Seen] = field(default_factory=list)
    _sock: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RawServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        thread = threading.Thread(target=self._accept, name="raw-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            seen = Seen(head[0], headers)
            self.seen.append(seen)
            self.handler(RawConnection(conn), seen)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


def raw_server(handler: Handler) -> Iterator[RawServer]:
    server = RawServer(handler).start()
    try:
        yield server
    finally:
        server.stop()


def kv2_body(data: Any, version: int = 1) -> bytes:
    """A faithful KV2 read body around ``data``."""
    return json.dumps(
        {
            "request_id": "r",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {
                "data": data,
                "metadata": {
                    "created_time": "2026-01-01T00:00:00Z",
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": version,
                },
            },
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
    ).encode()


# -- the real daemon as a subprocess ---------------------------------------------------------


DaemonProc = DaemonProcess  # the daemon under test, output in a log file


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
