"""Simulators as their own processes on loopback, for the bench scenarios: each poller
gets its own instance with the same seed, so the same creates get the same durations."""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

API_KEY = "bench-key"


def _launch(time_scale: float, concurrency: int, seed: int) -> subprocess.Popen[str]:
    cli = str(Path(sys.executable).with_name("prefect-legnext"))
    return subprocess.Popen(  # noqa: S603 - our own console script
        [cli, "simulator", "--port", "0", "--time-scale", str(time_scale),
         "--concurrency", str(concurrency), "--seed", str(seed),
         "--points", "1000000000", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _base_url(process: subprocess.Popen[str]) -> str:
    """The URL the simulator prints once it listens."""
    assert process.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
    if match is None:
        process.kill()
        raise RuntimeError("simulator did not start")
    return match.group(0)


def start_simulator(
    time_scale: float, *, concurrency: int = 6, seed: int = 0
) -> tuple[subprocess.Popen[str], str]:
    process = _launch(time_scale, concurrency, seed)
    return process, _base_url(process)


def stop_simulator(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def simulators(
    count: int, time_scale: float, *, concurrency: int = 6, seed: int = 0, quick: bool = False
) -> Iterator[list[str]]:
    """`count` simulators started together (base URLs), stopped on exit: each its own
    process, or (``quick``: seconds to start, the figures do not count) threads here."""
    if quick:
        from prefect_legnext.simulator import LegnextSimulator

        with contextlib.ExitStack() as stack:
            sims = [
                stack.enter_context(
                    LegnextSimulator(
                        api_key=API_KEY,
                        time_scale=time_scale,
                        seed=seed,
                        concurrency=concurrency,
                        points=1_000_000_000,
                    )
                )
                for _ in range(count)
            ]
            yield [sim.base_url for sim in sims]
        return
    started = [_launch(time_scale, concurrency, seed) for _ in range(count)]
    try:
        yield [_base_url(process) for process in started]
    finally:
        for process in started:
            stop_simulator(process)


def sim_get(base_url: str, path: str) -> Any:
    response = httpx.get(f"{base_url}{path}", timeout=60)
    response.raise_for_status()
    return response.json()


def timestamp(value: str) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port in a thread (its base URL), until exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def image_server() -> contextlib.AbstractContextManager[str]:
    """A loopback HTTP server answering every path with one small PNG: the input image
    of the parentless jobs (blend, retexture, remove-background, video from an image)."""
    body = _png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    return serving(Handler)


def rss_mib(pid: int | str = "self") -> tuple[float, float]:
    """(current, peak) resident memory of a process, MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]
