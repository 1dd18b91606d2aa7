"""The opt-in HTTP listener: ``/metrics``, ``/healthz``, ``/readyz`` (issue 17).

A stdlib :class:`http.server.ThreadingHTTPServer` in a daemon thread, bound to
``metrics.address`` (loopback unless the config says otherwise, KV2-INV-425). No TLS
and no authentication: it serves metadata only (KV2-INV-420), and belongs on loopback
or behind the pod network.

    GET /metrics                   Prometheus text format (metrics.PrometheusRecorder)
    GET /agent/v1/metrics          the same, where Vault Agent serves its metrics
                                   (``?format=prometheus`` or not)
    GET /healthz                   200 while the render loop keeps its schedule, else 503
    GET /readyz                    200 when every template rendered and none is failing or
                                   stale (``kv2render status``'s verdict), else 503
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kv2render.config import MetricsSettings
from kv2render.daemon.metrics import PrometheusRecorder
from kv2render.errors import ConfigError

log = logging.getLogger(__name__)

METRICS_PATHS = ("/metrics", "/agent/v1/metrics")


class _Handler(BaseHTTPRequestHandler):
    recorder: PrometheusRecorder  # set on the subclass made per server
    server_version = "kv2render"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path in METRICS_PATHS:
            body, ctype = self.recorder.exposition()
            self._send(200, body, ctype)
        elif path in ("/healthz", "/readyz"):
            ok, reason = (self.recorder.healthz if path == "/healthz" else self.recorder.readyz)()
            self._send(200 if ok else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # One DEBUG line per request: a scrape every few seconds must not fill the log.
        log.debug("metrics listener: " + format, *args)


class HealthServer:
    """The listener's socket and thread; :meth:`close` stops both."""

    def __init__(self, settings: MetricsSettings, recorder: PrometheusRecorder) -> None:
        handler = type("Handler", (_Handler,), {"recorder": recorder})
        server_class = type(
            "Server",
            (ThreadingHTTPServer,),
            {"address_family": _family(settings.host), "daemon_threads": True},
        )
        try:
            self._server = server_class((settings.host, settings.port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {settings.address}: {exc.strerror or type(exc).__name__}",
                where="metrics.address",
                hint="choose a free port, or an address of this host",
            ) from None
        if not settings.loopback:
            # KV2-INV-425: an address in the config is an explicit choice; say what it means.
            log.warning(
                "metrics listener on non-loopback %s: metrics and health are served without "
                "TLS or authentication to anyone who can reach it (metadata only)",
                settings.address,
            )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="kv2render-metrics",
            daemon=True,
        )

    def start(self) -> HealthServer:
        self._thread.start()
        log.info(
            "metrics listener on %s: /metrics, /healthz, /readyz",
            MetricsSettings(self._host(), self.port).address,
        )
        return self

    def _host(self) -> str:
        return str(self._server.server_address[0])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)


def _family(host: str) -> int:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
