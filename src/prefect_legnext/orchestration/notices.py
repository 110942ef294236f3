"""Callback mode in a flow run that cannot be suspended (run from Python or the CLI, a
subflow): the step's wait task stays in its process but listens for the receiver's
notice instead of polling Legnext.

The receiver, on a terminal delivery naming the run, keeps the task object on the run
(`deliveries`) and then emits ``legnext.job.completed`` / ``legnext.job.failed``
(`receiver.actions`). The wait subscribes to those events of its job on the Prefect
server's event stream (a websocket; the server backfills what it stored since just
before the subscription), looks once for a delivery that came before it subscribed,
and on the event reads the task object from the run: no GET of Legnext at all.

Polling is the safety net: a job whose notice has not come when its callback is
overdue (`callback_mode.due_after`, as the sweeper judges) is read and then polled
as usual; a run whose server offers no event stream polls from the start. Whichever
learns first ends the wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING
from uuid import UUID

from prefect import task
from prefect.client.orchestration import get_client
from prefect.logging import get_run_logger

from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.callback_mode import due_after, finished
from prefect_legnext.orchestration.deliveries import delivered_key
from prefect_legnext.orchestration.task_options import TRANSIENT_ERRORS, task_options
from prefect_legnext.orchestration.tasks import (
    JobHook,
    _async_client,
    _job_outcome_events,
    _WaitProgress,
    wait_deadline,
)

if TYPE_CHECKING:
    from prefect.events.clients import PrefectEventSubscriber

    from prefect_legnext.orchestration.blocks import LegnextCredentials

logger = logging.getLogger("prefect_legnext.orchestration.notices")

NOTICE_EVENTS = ("legnext.job.completed", "legnext.job.failed")
# Our decision: an event stream that cannot be opened after this many tries (a server
# without websockets, a proxy in the way) is given up for polling at once.
SUBSCRIBE_ATTEMPTS = 2


def _resource_ids(job_id: str) -> list[str]:
    """The job's event resource ids (`tasks.emit_job_event`): Legnext's job id as the
    receiver read it; lenient about its case."""
    return sorted({f"legnext.job.{job_id}", f"legnext.job.{job_id.lower()}"})


async def subscribe(job_id: str) -> PrefectEventSubscriber | None:
    """An open subscription to the job's terminal events, or None (said in the log)
    when the server's event stream cannot be had."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=list(NOTICE_EVENTS)),
        resource=EventResourceFilter(id=_resource_ids(job_id)),
    )
    try:
        subscriber = get_events_subscriber(
            filter=event_filter, reconnection_attempts=SUBSCRIBE_ATTEMPTS - 1
        )
        return await subscriber.__aenter__()
    except Exception as exc:  # any failure to listen leaves polling, never the wait
        logger.info("no event stream for job %s (%s): polling", job_id, type(exc).__name__)
        return None


async def read_delivered(flow_run_id: UUID, job_id: str) -> Job | None:
    """The task object the receiver kept on the run for `job_id`, if any."""
    async with get_client() as client:
        items = await client.filter_flow_run_input(flow_run_id, delivered_key(job_id), 1, set())
    return Job.model_validate(json.loads(items[0].value)) if items else None


class Told:
    """The receiver's notice: the delivered job, or None when its event came but no
    delivery on this run (the job is finished all the same)."""

    def __init__(self, job: Job | None) -> None:
        self.job = job


async def _notice(subscriber: PrefectEventSubscriber, flow_run_id: UUID, job_id: str) -> Told:
    """Once the receiver has told; raises `EOFError` when the stream ends first."""
    found = await read_delivered(flow_run_id, job_id)  # delivered before we listened
    if found is not None:
        return Told(found)
    async for event in subscriber:
        if event.event in NOTICE_EVENTS:
            # The receiver emits after it delivers: no delivery means the event came
            # for another run (or from elsewhere).
            return Told(await read_delivered(flow_run_id, job_id))
    raise EOFError("the event stream closed")


async def _poll(
    credentials: LegnextCredentials,
    job: Job | str,
    start_at: float,
    end: float,
    max_wait_seconds: float,
    progress: _WaitProgress,
) -> Job:
    """From `start_at` (or the deadline), poll the job as usual: a Job's first read
    follows its type's schedule, a bare id is read at once (an overdue job)."""
    await asyncio.sleep(max(0.0, min(start_at, end) - time.time()))
    async with _async_client(credentials, end) as client:
        return await client.wait_for_job(
            job, max_wait_seconds=max_wait_seconds, deadline=end, on_update=progress
        )


_NOTICE_OPTIONS = task_options("legnext-wait", TRANSIENT_ERRORS)


@task(**{**_NOTICE_OPTIONS, "name": "legnext-wait-for-notice"})
async def wait_for_notice(
    credentials: LegnextCredentials,
    job: Job,
    flow_run_id: UUID,
    max_wait_seconds: float,
    on_update: JobHook | None = None,
    deadline: float | None = None,
) -> Job:
    """Wait for `job` (submitted with the receiver's URL, tagged with `flow_run_id`):
    the receiver's notice, or polling once the callback is overdue.

    Raises:
        JobFailedError: the job failed.
        JobTimeoutError: not finished by the deadline.
    """
    end = wait_deadline(max_wait_seconds, deadline)
    progress = _WaitProgress(job, max_wait_seconds, end, on_update)
    overdue = time.time() + due_after(job.task_type, credentials.poll_scale).total_seconds()
    subscriber = await subscribe(job.job_id)
    log = get_run_logger()
    with progress.no_retry_past_deadline(), _job_outcome_events(dedupe=True) as emitted:
        if subscriber is None:
            return emitted(await _poll(credentials, job, 0.0, end, max_wait_seconds, progress))
        polling = asyncio.ensure_future(
            _poll(credentials, job.job_id, overdue, end, max_wait_seconds, progress)
        )
        listening = asyncio.ensure_future(_notice(subscriber, flow_run_id, job.job_id))
        try:
            await asyncio.wait((polling, listening), return_when=asyncio.FIRST_COMPLETED)
            if not listening.done() or listening.exception() is not None:
                if listening.done():  # the stream failed: polling goes on from its due time
                    log.info("job %s: event stream lost (%r); polling", job.job_id,
                             listening.exception())  # fmt: skip
                polled = await polling
                log.info("job %s: read by polling (no notice from the receiver)", job.job_id)
                return emitted(polled)
            told = listening.result()
        finally:
            for running in (polling, listening):
                running.cancel()
            await asyncio.gather(polling, listening, return_exceptions=True)
            await subscriber.__aexit__(None, None, None)
        if told.job is None:  # its event, but nothing delivered on this run: read it once
            async with _async_client(credentials, end) as client:
                read = await client.get_job(job.job_id)
            progress(read)
            return emitted(finished(read))
    progress(told.job)
    log.info("job %s: the receiver's notice came (%s)", job.job_id, told.job.status)
    return finished(told.job)  # the receiver has emitted its event
