"""wait_for_job and PollPolicy: status-aware polling that never mistakes an unknown status
for success and never waits past its deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from prefect_legnext import (
    CREATE_ENDPOINTS,
    AsyncLegnextClient,
    Job,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    PollPolicy,
)
from prefect_legnext.core.polling import DEFAULT_TYPICAL_SECONDS

JOB = "7a1c3e5f-2b4d-4c6e-8f0a-1b2c3d4e5f60"
JOB_PATH = f"/api/v1/job/{JOB}"
FAST_POLL = PollPolicy(scale=0.001)  # Legnext's timings at 1/1000: ~0.004 to 0.015 s
EXACT = PollPolicy(jitter=0.0)


def answers(task_object: Any, *statuses: str) -> list[httpx.Response]:
    return [httpx.Response(200, json=task_object(job_id=JOB, status=s)) for s in statuses]


def job_of(task_object: Any, status: str = "pending", task_type: str = "diffusion") -> Job:
    return Job.model_validate(task_object(job_id=JOB, status=status, task_type=task_type))


# --- wait_for_job, on real (scaled) time ----------------------------------------------------------


def test_wait_returns_the_completed_job_and_reports_every_poll(
    legnext: Any, api: Any, task_object: Any
) -> None:
    route = api.get(JOB_PATH).mock(
        side_effect=answers(task_object, "pending", "staged", "processing", "completed")
    )
    updates: list[Job] = []

    job = legnext("wait_for_job", JOB, poll=FAST_POLL, on_update=updates.append)

    assert job.is_completed and job.job_id == JOB
    assert job.output_urls  # the completed task's files
    assert route.call_count == 4
    assert [u.status for u in updates] == ["pending", "staged", "processing", "completed"]


def test_a_failed_job_raises_with_legnexts_code_and_message(
    legnext: Any, api: Any, task_object: Any
) -> None:
    failed = task_object(
        job_id=JOB,
        status="failed",
        error={"code": 10003, "raw_message": "Banned prompt", "message": "sensitive content"},
    )
    route = api.get(JOB_PATH).mock(
        side_effect=[*answers(task_object, "processing"), httpx.Response(200, json=failed)]
    )
    updates: list[Job] = []

    with pytest.raises(JobFailedError) as info:
        legnext("wait_for_job", JOB, poll=FAST_POLL, on_update=updates.append)

    error = info.value
    assert (error.code, error.message, error.job_id) == (10003, "sensitive content", JOB)
    assert error.job is not None and error.job.is_failed
    assert "10003" in str(error) and "sensitive content" in str(error)
    assert route.call_count == 2
    assert len(updates) == 2


def test_a_failure_without_a_message_uses_the_raw_message(
    legnext: Any, api: Any, task_object: Any
) -> None:
    failed = task_object(job_id=JOB, status="failed", error={"code": 7, "raw_message": "GPU lost"})
    api.get(JOB_PATH).respond(200, json=failed)
    with pytest.raises(JobFailedError) as info:
        legnext("wait_for_job", JOB, poll=FAST_POLL)
    assert (info.value.code, info.value.message) == (7, "GPU lost")


def test_a_job_that_never_finishes_times_out(legnext: Any, api: Any, task_object: Any) -> None:
    route = api.get(JOB_PATH).mock(side_effect=lambda request: answers(task_object, "pending")[0])

    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as info:
        legnext("wait_for_job", JOB, poll=FAST_POLL, max_wait_seconds=0.05)
    elapsed = time.monotonic() - started

    error = info.value
    assert error.job_id == JOB
    assert error.job is not None and error.job.status is JobStatus.PENDING
    assert error.waited_seconds >= 0.05
    assert "pending" in str(error)
    assert route.call_count >= 2
    assert elapsed < 5.0  # generous bound; the deadline is 0.05 s


def test_polling_survives_a_transient_read_error(legnext: Any, api: Any, task_object: Any) -> None:
    route = api.get(JOB_PATH).mock(
        side_effect=[
            *answers(task_object, "processing"),
            httpx.Response(502, json={"code": 502, "message": "bad gateway"}),
            httpx.ReadTimeout,
            *answers(task_object, "completed"),
        ]
    )
    assert legnext("wait_for_job", JOB, poll=FAST_POLL).is_completed
    assert route.call_count == 4


def test_an_unknown_status_is_never_treated_as_completed(
    legnext: Any, api: Any, task_object: Any
) -> None:
    route = api.get(JOB_PATH).mock(
        side_effect=answers(task_object, "succeeded", "done", "COMPLETED", "completed")
    )
    updates: list[Job] = []

    job = legnext("wait_for_job", JOB, poll=FAST_POLL, on_update=updates.append)

    assert job.status is JobStatus.COMPLETED
    assert route.call_count == 4  # kept polling through the three unknown statuses
    assert [u.is_completed for u in updates] == [False, False, False, True]


def test_an_unknown_status_forever_times_out(legnext: Any, api: Any, task_object: Any) -> None:
    api.get(JOB_PATH).mock(side_effect=lambda request: answers(task_object, "succeeded")[0])
    with pytest.raises(JobTimeoutError) as info:
        legnext("wait_for_job", JOB, poll=FAST_POLL, max_wait_seconds=0.05)
    assert info.value.job is not None and info.value.job.status == "succeeded"


# --- wait_for_job, on a fake clock ----------------------------------------------------------------


def poll_times(api: Any, clock: Any, task_object: Any, *statuses: str) -> list[float]:
    """Route the job's GETs through `statuses` and record the clock at each one."""
    seen: list[float] = []
    bodies = iter(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(clock.now)
        return httpx.Response(200, json=task_object(job_id=JOB, status=next(bodies)))

    api.get(JOB_PATH).mock(side_effect=answer)
    return seen


@pytest.mark.parametrize(
    ("task_type", "first"),
    [("diffusion", 30.0), ("remove_background", 15.0), ("video_diffusion", 180.0)],
)
def test_a_job_from_create_waits_first_wait_before_the_first_get(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any, task_type: str, first: float
) -> None:
    start = fake_clock.now
    seen = poll_times(api, fake_clock, task_object, "completed")
    created = job_of(task_object, "pending", task_type)

    legnext("wait_for_job", created, poll=EXACT)

    assert fake_clock.sleeps[0] == first
    assert seen == [start + first]


def test_a_job_id_is_polled_at_once(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    start = fake_clock.now
    seen = poll_times(api, fake_clock, task_object, "completed")
    legnext("wait_for_job", JOB, poll=EXACT)
    assert seen == [start]


def test_waits_follow_the_status(legnext: Any, api: Any, task_object: Any, fake_clock: Any) -> None:
    start = fake_clock.now
    statuses = ("pending", "staged", "processing", "processing", "mystery", "completed")
    seen = poll_times(api, fake_clock, task_object, *statuses)

    legnext("wait_for_job", JOB, poll=EXACT)

    gaps = [b - a for a, b in zip([start, *seen], seen, strict=False)]
    # at once; then 10 s after pending and staged, 4 s after processing, 15 s after unknown
    assert gaps == [0.0, 10.0, 10.0, 4.0, 4.0, 15.0]


def test_the_deadline_is_never_overshot(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    api.get(JOB_PATH).mock(side_effect=lambda request: answers(task_object, "pending")[0])
    created = job_of(task_object, "pending", "video_diffusion")  # first wait 180 s > deadline

    with pytest.raises(JobTimeoutError) as info:
        legnext("wait_for_job", created, max_wait_seconds=100.0)

    assert sum(fake_clock.sleeps) == pytest.approx(100.0)
    assert info.value.waited_seconds == pytest.approx(100.0)


def test_the_clients_poll_policy_is_the_default(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    start = fake_clock.now
    seen = poll_times(api, fake_clock, task_object, "completed")
    client_policy = PollPolicy(first_check=7.0, jitter=0.0)
    legnext.with_options({"poll": client_policy}, "wait_for_job", job_of(task_object))
    assert seen == [start + 7.0]


# --- the async client's poll gate -----------------------------------------------------------------


def _held_polls(
    task_object: Any, hold: dict[str, float]
) -> tuple[httpx.MockTransport, list[int], asyncio.Event]:
    """A transport answering each job GET "completed" after `hold[job_id]` seconds (0.05 by
    default), the list of how many polls were in flight as each one arrived, and an event
    set at the first arrival."""
    in_flight: list[int] = []
    now = [0]
    arrived = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[-1]
        now[0] += 1
        in_flight.append(now[0])
        arrived.set()
        try:
            await asyncio.sleep(hold.get(job_id, 0.05))
        finally:
            now[0] -= 1
        return httpx.Response(200, json=task_object(job_id=job_id, status="completed"))

    return httpx.MockTransport(handle), in_flight, arrived


def test_an_async_client_has_at_most_polls_in_flight_job_polls_at_once(task_object: Any) -> None:
    ids = [str(uuid.UUID(int=n + 1)) for n in range(12)]
    transport, in_flight, _ = _held_polls(task_object, {})
    policy = PollPolicy(first_check=0.0, active_tasks_period=0.0, polls_in_flight=3)

    async def run() -> list[Job]:
        async with AsyncLegnextClient("k", transport=transport, poll=policy) as client:
            return await asyncio.gather(*(client.wait_for_job(job_id) for job_id in ids))

    done = asyncio.run(run())

    assert [job.job_id for job in done] == ids and all(job.is_completed for job in done)
    assert len(in_flight) == len(ids)  # one poll each
    assert max(in_flight) == 3  # gated, and the gate's width is used


def test_a_poll_waiting_for_the_gate_ends_at_its_deadline_and_cancelled_ones_free_it(
    task_object: Any,
) -> None:
    slow, quick, queued, later = (str(uuid.UUID(int=n)) for n in (1, 2, 3, 4))
    transport, in_flight, arrived = _held_polls(task_object, {slow: 600.0})
    policy = PollPolicy(first_check=0.0, active_tasks_period=0.0, polls_in_flight=1)

    async def run() -> tuple[BaseException, bool, Job]:
        async with AsyncLegnextClient("k", transport=transport, poll=policy) as client:
            holder = asyncio.create_task(client.wait_for_job(slow))
            await arrived.wait()  # the slow poll holds the only place
            with pytest.raises(JobTimeoutError) as info:
                await client.wait_for_job(quick, max_wait_seconds=0.5)
            still_held = not holder.done()
            waiting = asyncio.create_task(client.wait_for_job(queued))
            await asyncio.sleep(0.1)  # it waits at the gate
            waiting.cancel()
            holder.cancel()
            await asyncio.gather(holder, waiting, return_exceptions=True)
            return info.value, still_held, await client.wait_for_job(later, max_wait_seconds=5)

    timed_out, still_held, after = asyncio.run(run())

    assert isinstance(timed_out, JobTimeoutError) and timed_out.job_id == quick
    assert still_held  # the deadline ended the wait for the gate, not the holder's end
    assert after.is_completed  # neither the cancelled holder nor the waiter kept a place
    assert len(in_flight) == 2  # the slow poll and the last one: the others never got in


def test_a_poll_backing_off_after_a_503_leaves_its_place_to_others(task_object: Any) -> None:
    busy, other = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    refused = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[-1]
        if job_id == busy:
            refused.set()
            return httpx.Response(503, headers={"retry-after": "30"}, json={"message": "busy"})
        return httpx.Response(200, json=task_object(job_id=job_id, status="completed"))

    policy = PollPolicy(first_check=0.0, active_tasks_period=0.0, polls_in_flight=1)

    async def run() -> Job:
        transport = httpx.MockTransport(handle)
        async with AsyncLegnextClient("k", transport=transport, poll=policy) as client:
            backing_off = asyncio.create_task(client.wait_for_job(busy, max_wait_seconds=600))
            await refused.wait()
            try:
                return await client.wait_for_job(other, max_wait_seconds=5)
            finally:
                backing_off.cancel()
                await asyncio.gather(backing_off, return_exceptions=True)

    assert asyncio.run(run()).is_completed  # not kept out for the other's 30 s backoff


def test_polls_in_flight_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="polls_in_flight must be at least 1"):
        PollPolicy(polls_in_flight=0)


# --- PollPolicy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=lambda e: e.name)
def test_first_wait_is_the_low_end_of_the_typical_duration(endpoint: Any) -> None:
    assert EXACT.first_wait(endpoint.task_type) == endpoint.typical_seconds[0]


def test_first_wait_of_an_unknown_task_type_uses_the_default() -> None:
    assert EXACT.first_wait("teleport") == DEFAULT_TYPICAL_SECONDS[0]


def test_first_check_overrides_the_task_type() -> None:
    assert PollPolicy(first_check=2.5, jitter=0.0).first_wait("video_diffusion") == 2.5


def test_processing_polls_more_often_than_queued(task_object: Any) -> None:
    policy = PollPolicy()  # with its default jitter
    for _ in range(200):
        processing = policy.next_wait(job_of(task_object, "processing"))
        for queued in ("pending", "staged"):
            assert processing < policy.next_wait(job_of(task_object, queued))
    assert EXACT.next_wait(job_of(task_object, "processing")) == EXACT.processing_interval
    assert EXACT.next_wait(job_of(task_object, "pending")) == EXACT.queued_interval
    assert EXACT.next_wait(job_of(task_object, "staged")) == EXACT.queued_interval
    assert EXACT.next_wait(job_of(task_object, "what?")) == EXACT.unknown_interval


def test_scale_applies_to_every_wait(task_object: Any) -> None:
    scaled = PollPolicy(jitter=0.0, scale=0.01)
    assert scaled.first_wait("diffusion") == pytest.approx(0.30)
    assert scaled.next_wait(job_of(task_object, "processing")) == pytest.approx(0.04)
    assert scaled.next_wait(job_of(task_object, "pending")) == pytest.approx(0.10)
    assert scaled.next_wait(job_of(task_object, "??")) == pytest.approx(0.15)


def test_scaled_waits_never_drop_below_min_interval(task_object: Any) -> None:
    tiny = PollPolicy(scale=0.0)
    assert tiny.first_wait("diffusion") == tiny.min_interval
    assert tiny.next_wait(job_of(task_object, "processing")) == tiny.min_interval


def test_jitter_stays_within_its_fraction() -> None:
    policy = PollPolicy(first_check=10.0, jitter=0.2)
    waits = [policy.first_wait("diffusion") for _ in range(300)]
    assert all(8.0 <= w <= 12.0 for w in waits)
    assert max(waits) - min(waits) > 1.0  # spread, not constant
