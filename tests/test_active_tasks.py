"""The shared active-task list (issue 12): every waiter of a process and account reads
one ``GET /api/account/active_tasks`` per period instead of GETting its own job, and
falls back to per-job GETs when the list fails, answers junk or leaves jobs out. Against
the simulator over real HTTP; a small forwarding proxy stands in for a Legnext whose list
answers 404 or junk (the simulator's list always works)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from benchmarks.simulators import serving

from prefect_legnext import AsyncLegnextClient, Job, LegnextClient, PollPolicy
from prefect_legnext.core.active_tasks import FAILURES_TO_SWITCH_OFF, watch_for
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.simulator import LegnextSimulator

SCALE = 0.01  # diffusion runs 0.3-0.9 s
PERIOD = 10.0  # unscaled: a list read every 0.1 s, against 0.04 s per-job waits
WAITERS = 8
LIST = "GET active_tasks"


def policy() -> PollPolicy:
    return PollPolicy(scale=SCALE, active_tasks_period=PERIOD)


def wait_all(client_mode: str, base_url: str, api_key: str, jobs: list[Job]) -> list[Job]:
    """Every job waited on at once: async on one loop, or sync from one thread each
    with its own client (the list is shared per process and account, not per client)."""
    if client_mode == "sync":

        def one(job: Job) -> Job:
            with LegnextClient(api_key, base_url=base_url, poll=policy()) as client:
                return client.wait_for_job(job, max_wait_seconds=60)

        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(one, jobs))

    async def run() -> list[Job]:
        async with AsyncLegnextClient(api_key, base_url=base_url, poll=policy()) as client:
            return await asyncio.gather(
                *(client.wait_for_job(job, max_wait_seconds=60) for job in jobs)
            )

    return asyncio.run(run())


def create(sim: LegnextSimulator, count: int) -> list[Job]:
    with LegnextClient(sim.api_key, base_url=sim.base_url) as client:
        return [client.create(DiffusionRequest(text=f"a heron {i}")) for i in range(count)]


def counts(sim: LegnextSimulator) -> tuple[int, int]:
    requests = sim.stats()["requests"]
    return requests.get(LIST, 0), requests.get("GET job", 0)


@pytest.fixture
def sim(legnext_simulator_factory: Callable[..., LegnextSimulator]) -> LegnextSimulator:
    return legnext_simulator_factory(time_scale=SCALE, concurrency=WAITERS)


def test_waiters_share_one_list_read_per_period(client_mode: str, sim: LegnextSimulator) -> None:
    jobs = create(sim, WAITERS)
    started = time.monotonic()
    done = wait_all(client_mode, sim.base_url, sim.api_key, jobs)
    elapsed = time.monotonic() - started

    assert all(job.is_completed for job in done)
    list_reads, job_gets = counts(sim)
    assert job_gets == WAITERS  # one confirming GET per job, none while it ran
    # One read per period for all of them (each waiter alone would read every period).
    assert 1 <= list_reads <= elapsed / (PERIOD * SCALE) + 2


def test_a_failing_list_falls_back_to_job_gets_and_switches_off(
    client_mode: str, sim: LegnextSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.set_faults({"active_tasks": {"server_error_rate": 1.0}})
    jobs = create(sim, 4)
    with caplog.at_level(logging.INFO, logger="prefect_legnext"):
        done = wait_all(client_mode, sim.base_url, sim.api_key, jobs)

    assert all(job.is_completed for job in done)
    list_reads, job_gets = counts(sim)
    assert list_reads == FAILURES_TO_SWITCH_OFF  # then switched off for every waiter
    assert job_gets >= len(jobs)  # each job read on its own
    assert "active_tasks read failed" in caplog.text
    assert sim.api_key not in caplog.text
    assert sim.api_key not in repr(watch_for(sim.base_url, sim.api_key))


class ListProxy:
    """Forwards to the simulator, answering the active-task list itself."""

    def __init__(self, target: str, status: int, body: bytes) -> None:
        self.list_reads = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/api/account/active_tasks":
                    proxy.list_reads += 1
                    self._answer(status, body)
                    return
                response = httpx.get(target + self.path, headers=dict(self.headers))
                self._answer(response.status_code, response.content)

            def log_message(self, *_args: Any) -> None:
                pass

        self.handler = Handler

    @classmethod
    def running(cls, target: str, status: int, body: bytes) -> Iterator[ListProxy]:
        proxy = cls(target, status, body)
        with serving(proxy.handler) as url:
            proxy.url = url
            yield proxy


JUNK = {
    "404": (404, json.dumps({"code": 404, "message": "Not found"}).encode()),
    "html": (200, b"<html>maintenance</html>"),
    "tasks-not-a-list": (200, json.dumps({"data": {"tasks": "none"}}).encode()),
    "task-without-job-id": (200, json.dumps({"data": {"tasks": [{"id": 1}]}}).encode()),
}


@pytest.mark.parametrize("answer", JUNK.values(), ids=JUNK.keys())
def test_a_list_answering_404_or_junk_falls_back(
    client_mode: str, sim: LegnextSimulator, answer: tuple[int, bytes]
) -> None:
    jobs = create(sim, 3)
    for proxy in ListProxy.running(sim.base_url, *answer):
        done = wait_all(client_mode, proxy.url, sim.api_key, jobs)
        assert all(job.is_completed for job in done)
        # Tried, and never again once switched off (on a loaded machine the jobs may
        # all finish before the last of those tries is due).
        assert 1 <= proxy.list_reads <= FAILURES_TO_SWITCH_OFF
    assert counts(sim)[1] >= len(jobs)


def test_a_list_that_leaves_jobs_out_is_not_trusted_for_them(
    client_mode: str, sim: LegnextSimulator
) -> None:
    """A list that is paged, truncated or late: a job missing from it that the
    confirming GET finds still running is then polled on its own."""
    jobs = create(sim, 3)
    empty = json.dumps({"code": 200, "data": {"total_active": 3, "tasks": []}}).encode()
    for proxy in ListProxy.running(sim.base_url, 200, empty):
        done = wait_all(client_mode, proxy.url, sim.api_key, jobs)
        assert all(job.is_completed for job in done)
        assert proxy.list_reads <= len(jobs)  # each waiter gave up on it after one look
