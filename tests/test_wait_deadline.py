"""`max_wait_seconds` bounds the whole wait (issue 11, defect 6): slow job reads, the
client's read retries and the wait task's Prefect retries all count, and the wait ends
in `JobTimeoutError`, not a transport error. Against the simulator's latency fault (a
real HTTP server). Before the fix this took ~500 s for a 5 s limit and ended in a
`TransportError`. The bounds below are correctness bounds with a large margin for a
loaded machine, not speed assertions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prefect import flow

from prefect_legnext import JobTimeoutError, LegnextClient, RetryPolicy
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.orchestration.tasks import wait_for_job
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import async_legnext_client_for, legnext_client_for
from prefect_support import credentials_for

MAX_WAIT = 5.0
RETRIED_MAX_WAIT = 20.0  # the first attempt's 2 s read timeout must fit, however busy
MARGIN = 30.0  # far below the ~500 s the unbounded wait took
SLOW_READS = {"get_job": {"latency": 60.0}}  # every job read outlasts the 30 s read timeout


def _pending_job(sim: LegnextSimulator) -> str:
    """A job submitted before reads turn slow (creates stay fast)."""
    with legnext_client_for(sim) as client:
        job_id = client.create(DiffusionRequest(text="a slow heron")).job_id
    sim.set_faults(SLOW_READS)
    return job_id


def _wait(client_mode: str, sim: LegnextSimulator, job_id: str, **options: Any) -> Any:
    """`wait_for_job` on a client with the default timeout and retry policy."""
    if client_mode == "sync":
        with legnext_client_for(sim) as client:
            return client.wait_for_job(job_id, **options)

    async def wait() -> Any:
        async with async_legnext_client_for(sim) as client:
            return await client.wait_for_job(job_id, **options)

    return asyncio.run(wait())


def test_slow_reads_end_in_a_timeout_at_max_wait(
    client_mode: str, legnext_simulator: LegnextSimulator
) -> None:
    """The default read timeout (30 s) and retry policy (5 tries within 120 s), which
    alone would run the wait to ~130 s, are cut to the time left."""
    sim = legnext_simulator
    job_id = _pending_job(sim)

    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as info:
        _wait(client_mode, sim, job_id, max_wait_seconds=MAX_WAIT)
    elapsed = time.monotonic() - started

    assert elapsed < MAX_WAIT + MARGIN
    assert job_id in str(info.value) and f"max_wait_seconds={MAX_WAIT:g}" in str(info.value)
    assert info.value.max_wait_seconds == MAX_WAIT


def test_a_deadline_already_past_times_out_without_a_read(
    legnext_simulator: LegnextSimulator,
) -> None:
    sim = legnext_simulator
    with legnext_client_for(sim) as client:
        job = client.create(DiffusionRequest(text="a late heron"))
        reads = sim.stats()["requests"].get("GET job", 0)
        with pytest.raises(JobTimeoutError):
            client.wait_for_job(job.job_id, max_wait_seconds=60, deadline=time.time() - 1)
    assert sim.stats()["requests"].get("GET job", 0) == reads


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("given_deadline", [True, False], ids=["flow-deadline", "task-run-start"])
def test_the_wait_tasks_retries_keep_one_deadline(
    legnext_simulator: LegnextSimulator, given_deadline: bool
) -> None:
    """The first attempt's read times out (a client with a 2 s timeout and no retries: a
    transient `TransportError`), Prefect retries the task, and the retry waits only for
    what is left of the same deadline, not a fresh `max_wait_seconds`."""
    sim = legnext_simulator
    job_id = _pending_job(sim)
    credentials = credentials_for(sim)
    seen: list[float | None] = []
    original_get_client = type(credentials).get_client
    original_wait = LegnextClient.wait_for_job

    def get_client(self: Any) -> LegnextClient:
        if not seen:  # the first attempt: a short read timeout, no retries
            return LegnextClient(
                sim.api_key, base_url=sim.base_url, timeout=2.0, retry=RetryPolicy(max_attempts=1)
            )
        client: LegnextClient = original_get_client(self)
        return client

    def recording_wait(self: LegnextClient, job: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("deadline"))
        return original_wait(self, job, **kwargs)

    waiter = wait_for_job.__wrapped__.with_options(retry_delay_seconds=0, retry_jitter_factor=None)
    given: list[float] = []

    @flow
    def wait() -> Any:
        # Set in the flow, as run_step does; room for a slow task start on a busy machine.
        deadline = time.time() + RETRIED_MAX_WAIT if given_deadline else None
        given.extend([deadline] if deadline is not None else [])
        return waiter(credentials, job_id, max_wait_seconds=RETRIED_MAX_WAIT, deadline=deadline)

    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(credentials), "get_client", get_client)
        patch.setattr(LegnextClient, "wait_for_job", recording_wait)
        with pytest.raises(JobTimeoutError) as info:
            wait()
    elapsed = time.monotonic() - started

    assert len(seen) == 2  # the first attempt failed transiently; Prefect retried once
    assert seen[0] is not None and seen[0] == seen[1]  # one deadline for both attempts
    assert given == ([seen[0]] if given_deadline else [])
    assert elapsed < RETRIED_MAX_WAIT + MARGIN
    assert f"max_wait_seconds={RETRIED_MAX_WAIT:g}" in str(info.value)
