"""A misbehaving file server on 127.0.0.1 for the download-limit tests: endless bodies,
huge or false Content-Lengths, a byte now and then, redirect chains and other schemes.

Use it as a context manager: it stops (and ends every endless answer) on exit, also
when the test fails.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from PIL import Image

BLOCK = b"\0" * (1024 * 1024)  # allocated once, at import: no test's tracemalloc sees it
HUGE = 10**13  # a Content-Length of 10 TB


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class SourceServer:
    """Paths: ``/ok.png``, ``/endless``, ``/huge``, ``/short``, ``/drip``, ``/gone.png``
    (404), ``/hops/{n}`` (n redirects, then the PNG), ``/to/{scheme}`` (a redirect to
    ``{scheme}://`` this server's PNG). `requests` counts the requests per path."""

    def __init__(self) -> None:
        self.png = small_png()
        self.requests: Counter[str] = Counter()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> SourceServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()  # ends endless answers still being written
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                source.requests[path] = source.requests[path] + 1
                with contextlib.suppress(OSError):  # the client hung up: that is the point
                    source._answer(self, path)

        return Handler

    def _answer(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if path == "/ok.png":
            self._send(handler, 200, {"Content-Length": str(len(self.png))}, self.png)
        elif path == "/endless":
            self._send(handler, 200, {"Content-Type": "image/png"})
            self._forever(handler, BLOCK, pause=0.0)
        elif path == "/huge":
            self._send(handler, 200, {"Content-Length": str(HUGE)})
            self._forever(handler, BLOCK, pause=0.0)
        elif path == "/short":  # announces more than it sends, then closes
            self._send(handler, 200, {"Content-Length": str(2 * len(self.png))}, self.png)
        elif path == "/drip":  # never trips a per-read timeout
            self._send(handler, 200, {"Content-Type": "image/png"})
            self._forever(handler, b"\0", pause=0.05)
        elif path.startswith("/hops/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                self._send(handler, 200, {"Content-Length": str(len(self.png))}, self.png)
            else:
                self._redirect(handler, f"/hops/{left - 1}")
        elif path.startswith("/to/"):
            scheme = path.rsplit("/", 1)[1]
            self._redirect(handler, f"{scheme}://{self.base_url.split('://')[1]}/ok.png")
        else:
            self._send(handler, 404, {"Content-Length": "0"})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes = b""
    ) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _redirect(self, handler: BaseHTTPRequestHandler, location: str) -> None:
        self._send(handler, 302, {"Location": location, "Content-Length": "0"})

    def _forever(self, handler: BaseHTTPRequestHandler, block: bytes, pause: float) -> None:
        while not self.stopping.is_set():
            handler.wfile.write(block)
            if pause:
                time.sleep(pause)
