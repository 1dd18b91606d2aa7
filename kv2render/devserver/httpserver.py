"""The socket side: ThreadingHTTPServer, HTTP/1.1 keep-alive, TLS, faults.

Two details matter for throughput (issue 3): TCP_NODELAY on every connection,
and each response (status line, headers, body) goes out in ONE send. Separate
small writes on a keep-alive connection meet Nagle's algorithm and the peer's
delayed ACK, which stalls ~40 ms per request.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from kv2render.devserver.protocol import JSON_CT, MAX_BODY, OVH, Reply, Request, Wire
from kv2render.devserver.router import Router
from kv2render.devserver.state import Faults, State

log = logging.getLogger("kv2render.devserver")


_FAULT_MESSAGES = {
    429: 'request path "{path}": rate limit quota exceeded',
    500: "internal error",
    502: "upstream rate limited",
    503: "Vault is sealed",
}


class Host(Protocol):
    """What the socket side needs from the DevServer that owns it. A Protocol, because
    server.py imports this module and this module may not import server.py back (no
    import cycle, docs/architecture.md)."""

    @property
    def state(self) -> State: ...

    @property
    def router(self) -> Router: ...

    @property
    def flavor(self) -> str: ...

    @property
    def base_path(self) -> str: ...

    @property
    def faults(self) -> Faults: ...

    def record(self, method: str, path: str, status: int) -> None: ...

    def take_fault_status(self) -> int | None: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    dev: Host
    ssl_context: ssl.SSLContext | None

    def __init__(self, addr: tuple[str, int], dev: Host, ctx: ssl.SSLContext | None) -> None:
        self.dev = dev
        self.ssl_context = ctx
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never print tracebacks to the console: a client that breaks the TLS handshake
        # or resets the connection is routine for a dev server.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            try:
                # socket.socket.shutdown, not SSLSocket.shutdown: the latter tears down
                # the SSL object under a thread that may be reading it.
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _date_cache: tuple[int, str] = (0, "")

    def setup(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = self.server.ssl_context
        if ctx is not None:
            sock.settimeout(10.0)  # a client that never finishes the handshake
            tls_sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            try:
                tls_sock.do_handshake()
            except BaseException:
                tls_sock.close()  # the SSLSocket owns the fd now; socketserver won't close it
                raise
            tls_sock.settimeout(None)
            self.request = tls_sock
        with self.server.conn_lock:
            self.server.connections.add(self.request)
        if self.server.stopping.is_set():
            self.close_connection = True
        super().setup()

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.request)
        try:
            super().finish()
        except OSError:
            pass
        if isinstance(self.request, ssl.SSLSocket):
            # socketserver closes the raw socket it accepted, which the SSLSocket detached.
            self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    # -- response writing ---------------------------------------------------------------

    def _date(self) -> str:
        now = int(time.time())
        cached = _Handler._date_cache
        if cached[0] != now:
            cached = (now, formatdate(now, usegmt=True))
            _Handler._date_cache = cached
        return cached[1]

    def _send(self, reply: Reply) -> None:
        reason = self.responses.get(reply.status, ("Unknown",))[0]
        lines = [f"HTTP/1.1 {reply.status} {reason}", "Cache-Control: no-store"]
        lines.append(f"Content-Type: {JSON_CT}")
        if reply.body is not None:
            lines.append(f"Content-Length: {len(reply.body)}")
        lines.append(f"Date: {self._date()}")
        lines.extend(f"{k}: {v}" for k, v in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # A HEAD answer has no body, or the keep-alive stream would desynchronise.
        body = b"" if getattr(self, "command", "") == "HEAD" else (reply.body or b"")
        self.wfile.write(head + body)  # one send: see module docstring

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server calls this for malformed request lines/headers; answer in the
        # flavour's JSON error shape instead of its HTML page.
        self.close_connection = True
        wire: Wire = self.server.dev.state.wire
        text = message or self.responses.get(code, ("error",))[0]
        self.server.dev.record(getattr(self, "command", None) or "-", "-", code)
        try:
            self._send(wire.error(code, [text]))
        except OSError:
            pass

    # -- request handling ---------------------------------------------------------------

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (OSError, ssl.SSLError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        try:
            self._serve()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        except Exception:  # never a traceback on the wire or a hung connection
            log.exception("dev server: unexpected error")
            self.close_connection = True
            try:
                self._send(self.server.dev.state.wire.error(500, ["internal error"]))
            except OSError:
                pass

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        dev = self.server.dev
        wire = dev.state.wire
        raw_path, _, raw_query = self.path.partition("?")
        path = urllib.parse.unquote(raw_path)
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            dev.record(self.command, path, 400)
            self._send(wire.error(400, ["malformed request body framing"]))
            return
        if body is None:
            self.close_connection = True
            dev.record(self.command, path, 413)
            self._send(wire.error(413, ["http: request body too large"]))
            return
        record_path = path
        if dev.flavor == OVH:
            if path == dev.base_path or path.startswith(dev.base_path + "/"):
                record_path = path[len(dev.base_path) :]
            else:
                record_path = ""
        if self._apply_faults(record_path or path):
            return
        reply = self._dispatch(record_path, raw_query, body)
        # Record before sending: a client that has its answer sees it counted.
        dev.record(self.command, record_path or path, reply.status)
        self._send(reply)

    def _apply_faults(self, path: str) -> bool:
        """Apply injected faults; True when the request has been dealt with."""
        dev, faults = self.server.dev, self.server.dev.faults
        if faults.hang:
            self.close_connection = True
            self.server.stopping.wait()
            return True
        if faults.latency > 0:
            self.server.stopping.wait(faults.latency)
        if faults.drop:
            self.close_connection = True
            dev.record(self.command, path, 0)
            return True
        status = dev.take_fault_status()
        if status is not None:
            message = _FAULT_MESSAGES.get(status, "injected fault").format(
                path=path.removeprefix("/v1/")
            )
            reply = dev.state.wire.error(status, [message])
            if faults.retry_after is not None:
                reply.headers.append(("Retry-After", str(faults.retry_after)))
            dev.record(self.command, path, status)
            self._send(reply)
            return True
        return False

    def _dispatch(self, path: str, raw_query: str, body: bytes) -> Reply:
        dev = self.server.dev
        wire = dev.state.wire
        if not path.startswith("/v1/"):
            return wire.error(404, [])
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                peer = self.connection.getpeercert() or None
            except (ValueError, ssl.SSLError):
                peer = None
        req = Request(
            method=self.command.upper(),
            path=path[len("/v1/") :],
            query=urllib.parse.parse_qs(raw_query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            peer_cert=peer,
        )
        return dev.router.handle(req)


__all__ = ["Faults"]
