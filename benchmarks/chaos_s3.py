"""An HTTP proxy in front of moto's S3 server that breaks S3 the way the chaos suite
needs, with a seeded RNG:

- ``error_rate``: answer ``503 SlowDown`` with ``Retry-After`` (S3's throttle) or
  ``500 InternalError`` without forwarding: the request never reached S3;
- ``ledger_lose_rate``: forward a ledger write (a key under ``/_ledger/``), let S3
  store it, then reset the client's connection without any answer;
- `stop` / `start`: close the listening socket and every open connection (clients
  see "connection refused"), then listen again on the same port: S3 down, then up,
  with nothing it stored lost.

Every request is forwarded whole (boto3 sends one request at a time per connection)
and its answer read whole, so a fault never corrupts an answer: it replaces it.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "content-length"}


class S3ChaosProxy:
    """Listens on 127.0.0.1 (a free port, kept across `stop`/`start`)."""

    def __init__(self, target_url: str, seed: int = 0) -> None:
        host, port = target_url.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.error_rate = 0.0
        self.ledger_lose_rate = 0.0
        self.counts = {"requests": 0, "errors": 0, "lost_answers": 0, "refused_while_down": 0}
        # Requests forwarded, by HTTP method (the benchmarks' S3 calls per step), and,
        # apart, fetches of presigned URLs (signed in the query): Legnext reading an
        # input image we handed it, not a call our process makes.
        self.calls: Counter[str] = Counter()
        self.presigned: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._down = threading.Event()
        self.port = 0
        self.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> S3ChaosProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def draw(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def start(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._down.clear()
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """S3 goes away: no new connection, and open ones are reset on their next request."""
        server, self._server = self._server, None
        if server is None:
            return
        self._down.set()
        server.shutdown()
        server.server_close()

    @property
    def down(self) -> bool:
        return self._down.is_set()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client reset mid-request is what killing its worker looks like: expected
        here, not worth a traceback in the run's details."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: S3ChaosProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        proxy = self.owner
        if proxy.down:
            proxy.count("refused_while_down")
            _reset(self.connection)
            self.close_connection = True
            return
        body = self._body()
        proxy.count("requests")
        with proxy._lock:
            # SigV4 (X-Amz-Signature) or SigV2 (Signature, boto3's default presign here)
            presigned = "Signature=" in self.path.partition("?")[2]
            (proxy.presigned if presigned else proxy.calls)[self.command] += 1
        if proxy.draw(proxy.error_rate):
            proxy.count("errors")
            self._throttle()
            return
        status, reason, headers, answer = self._forward(body)
        is_ledger_write = self.command == "PUT" and "/_ledger/" in self.path
        if is_ledger_write and proxy.draw(proxy.ledger_lose_rate):
            proxy.count("lost_answers")  # stored by S3; its answer never arrives
            _reset(self.connection)
            self.close_connection = True
            return
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP:
                self.send_header(name, value)
        # A HEAD answer has no body but says the object's length: keep S3's.
        length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

    def _body(self) -> bytes:
        """The whole request body; an HTTP-chunked one (boto3's streamed uploads) is
        de-chunked and forwarded with a Content-Length (its aws-chunked payload as is)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(*self.owner.target, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            upstream.close()

    def _throttle(self) -> None:
        if self.owner.draw(0.5):
            code, status, extra = "SlowDown", 503, [("Retry-After", "1")]
        else:
            code, status, extra = "InternalError", 500, []
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the chaos proxy</Message></Error>"
        ).encode()
        if self.command == "HEAD":
            body = b""
        self.send_response_only(status)
        for name, value in [("Content-Type", "application/xml"), *extra]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST: the client sees "Connection reset by peer", no answer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
