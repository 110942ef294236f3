"""Shared fixtures."""

from __future__ import annotations

# --- Legnext HTTP client tests: client runner, task objects, fake clock ---------------------------
import asyncio
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

from prefect_legnext.core import client as client_module
from prefect_legnext.core.active_tasks import forget_watches
from prefect_legnext.core.client import AsyncLegnextClient, LegnextClient
from prefect_legnext.core.durations import DURATIONS
from prefect_legnext.core.retry import RetryPolicy

# The clock gauges' shared estimates (core/clock.py) of this run, not the machine's:
# tests' simulators come and go on reused ports with clocks of their own.
os.environ.setdefault("PREFECT_LEGNEXT_CLOCK_DIR", tempfile.mkdtemp(prefix="legnext-clock-"))

CLIENT_BASE_URL = "https://api.legnext.test"
CLIENT_API_KEY = "lgx-test-9f8e7d6c5b4a39281706"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01, max_total=5.0)


@dataclass(frozen=True)
class ClientRunner:
    """Calls one method on a fresh `LegnextClient` or `AsyncLegnextClient`, so a test
    written once runs against both clients. With a respx ``router``, requests go to it
    through an in-memory transport (building a real one costs ~30 ms of TLS setup)."""

    is_async: bool
    base_url: str = CLIENT_BASE_URL
    api_key: str = CLIENT_API_KEY
    router: Any = None

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.with_options({}, method, *args, **kwargs)

    def with_options(self, options: dict[str, Any], method: str, *args: Any, **kwargs: Any) -> Any:
        """Like calling the runner, with client options (``retry``, ``poll``, ...)."""
        options = {"base_url": self.base_url, "retry": FAST_RETRY, **options}
        if self.router is not None:
            handler = self.router.async_handler if self.is_async else self.router.handler
            options.setdefault("transport", httpx.MockTransport(handler))
        if not self.is_async:
            with LegnextClient(self.api_key, **options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def run() -> Any:
            async with AsyncLegnextClient(self.api_key, **options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def client_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def fresh_poll_state() -> None:
    """Each test starts from the documented durations and no shared active-task list:
    what one test's waits learn must not move another's schedule."""
    DURATIONS.clear()
    forget_watches()


@pytest.fixture
def api() -> Any:
    """A respx router for the Legnext base URL; requests to unrouted paths fail the test."""
    with respx.mock(base_url=CLIENT_BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def legnext(client_mode: str, api: Any) -> ClientRunner:
    """A runner for the sync client, then for the async one, answered by ``api``."""
    return ClientRunner(is_async=client_mode == "async", router=api)


@pytest.fixture
def legnext_at(client_mode: str) -> Callable[..., ClientRunner]:
    """Runners against a real server: ``legnext_at("http://127.0.0.1:PORT", api_key=...)``."""

    def runner(base_url: str, **fields: Any) -> ClientRunner:
        return ClientRunner(is_async=client_mode == "async", base_url=base_url, **fields)

    return runner


def _task_object(
    job_id: str = "0c8e4d2a-6b1f-4c3e-9a57-2f1d8b6e4a90",
    status: str = "pending",
    task_type: str = "diffusion",
    **changes: Any,
) -> dict[str, Any]:
    """A Legnext task object as the API sends it (snake_case, "not set" timestamps)."""
    completed = status == "completed"
    body: dict[str, Any] = {
        "job_id": job_id,
        "model": "midjourney",
        "task_type": task_type,
        "status": status,
        "config": {"service_mode": "public", "webhook_config": {"endpoint": "", "secret": ""}},
        "input": None,
        "output": {
            "image_url": "https://cdn.legnext.test/grid.png" if completed else "",
            "image_urls": [f"https://cdn.legnext.test/{job_id}_{i}.png" for i in range(4)]
            if completed
            else None,
            "seed": "1573740627" if completed else "",
            "available_actions": {"upscale": [0, 1, 2, 3], "reroll": True} if completed else {},
        },
        "meta": {
            "created_at": "2025-10-14T04:14:22Z",
            "started_at": "2025-10-14T04:14:23Z" if status != "pending" else "0001-01-01T00:00:00Z",
            "ended_at": "2025-10-14T04:15:43Z" if completed else "0001-01-01T00:00:00Z",
            "usage": {"type": "point", "frozen": 80, "consume": 80 if completed else 0},
        },
        "detail": None,
        "logs": [],
        "error": {"code": 0, "raw_message": "", "message": "", "detail": None},
    }
    body.update(changes)
    return body


@pytest.fixture
def task_object() -> Callable[..., dict[str, Any]]:
    """Factory of task-object bodies: ``task_object(status="completed", task_type=...)``."""
    return _task_object


class FakeClock:
    """Stands in for the client module's ``time`` (and ``asyncio.sleep``): sleeping only
    advances the clock, and every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:  # wall-clock deadlines read the same clock
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Make the clients' waits (retry backoff, polling) instant and observable."""
    clock = FakeClock()
    monkeypatch.setattr(client_module, "time", clock)
    fake_asyncio = SimpleNamespace(
        sleep=clock.async_sleep, Semaphore=asyncio.Semaphore, timeout=asyncio.timeout
    )  # only the sleeps are faked: the poll gate is real
    monkeypatch.setattr(client_module, "asyncio", fake_asyncio)
    return clock


# --- end of Legnext HTTP client section -----------------------------------------------------------


# --- Prefect layer: a temporary Prefect server for the session -----------------------------


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server (SQLite) for the session; PREFECT_API_URL points at it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):  # a loaded 2-core machine
        yield
        _drain_prefect_workers(timeout=60)


def _drain_prefect_workers(timeout: float) -> None:
    """Drain Prefect's event and API-log workers with a bound, before the harness drains
    them without one: a CI run hung for good in the harness's exit, waiting on a worker
    whose loop never answered. A drain stops and forgets each instance, so the
    harness's own drain then has nothing left to wait for."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        worker.drain_all(timeout=timeout)


@pytest.fixture
def blocks(legnext_simulator_factory: Any, local_s3_server: Any) -> tuple[Any, Any, dict[str, str]]:
    """A simulator (fast) and a bucket, saved as blocks under names unique to the test:
    (simulator, bucket, the flows' block-name arguments)."""
    from prefect_support import save_blocks

    sim = legnext_simulator_factory(time_scale=0.002)
    bucket = local_s3_server.create_bucket()
    return sim, bucket, save_blocks(bucket, sim)
