"""Serving an ASGI app with uvicorn on our terms, for the simulator and the callback
receiver alike: in a background thread (`BackgroundServer`) or in the foreground
(`serve`). uvicorn is imported only when a server is made (a dependency of Prefect and
of the ``simulator`` and ``receiver`` extras, not of the core)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

START_TIMEOUT = 20.0
LOOPBACK = "127.0.0.1"


def make_server(app: Any, host: str, port: int) -> uvicorn.Server:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            # uvicorn's access log prints each request line, query included: off.
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )


def bound_url(server: uvicorn.Server, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{host}:{port}"


class BackgroundServer:
    """`app` served on `host` (loopback by default) in a daemon thread named `name`."""

    def __init__(self, app: Any, name: str, host: str = LOOPBACK, port: int = 0) -> None:
        self.app = app
        self.name = name
        self.host = host
        self.port = port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start and wait until it listens; returns its base URL."""
        server = make_server(self.app, self.host, self.port)
        self._server = server
        self._thread = threading.Thread(target=server.run, name=self.name, daemon=True)
        self._thread.start()
        deadline = START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the {self.name} could not start on {self.host}:{self.port}")
            self._thread.join(0.01)
            deadline -= 0.01
            if deadline <= 0:
                self.stop()
                raise RuntimeError(f"the {self.name} did not start in time")
        self.url = bound_url(server, self.host)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None


def serve(app: Any, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `app` in the foreground until interrupted; `on_ready` gets the base URL
    once it listens."""
    server = make_server(app, host, port)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        if on_ready is not None:
            on_ready(bound_url(server, host))
        await task

    asyncio.run(main())
