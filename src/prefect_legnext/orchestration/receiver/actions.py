"""What the receiver does with a job that reached a terminal status: a list of actions,
each idempotent (a repeated or re-ordered delivery, or one re-sent after a restart,
changes nothing), run in order (`default_actions`): record in the ledger, deliver the
task object to the flow run, emit the job's event, resume the run, release the job's
``legnext-account`` slot.

An action returns a short outcome for the log, and raises for a failure worth a retry
by the sender (the receiver then answers 503 and forgets the delivery).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import aresume_flow_run
from prefect.input import RunInput
from pydantic import ConfigDict

from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration import job_leases
from prefect_legnext.orchestration.deliveries import asave_delivery, kept
from prefect_legnext.orchestration.ledger import JobLedger, record_from_callback
from prefect_legnext.orchestration.receiver.gate import Arrival
from prefect_legnext.orchestration.tasks import emit_job_event, job_event_id

logger = logging.getLogger("prefect_legnext.orchestration.receiver")

# Our decisions: how long a delivery waits for its run to suspend (a fast job may call
# back between the submit and the suspend: the lost wake-up), and how often it looks.
# Past it the sweeper settles the run.
SUSPEND_GRACE_SECONDS = 20.0
SUSPEND_LOOK_SECONDS = 0.25


class TerminalAction(Protocol):
    """One effect of a terminal delivery."""

    name: str

    async def __call__(self, arrival: Arrival) -> str: ...


def pause_key_for(job_id: str) -> str:
    """The pause key of a flow run waiting for `job_id`: the receiver resumes a paused
    run only when its pause key is this one, so a late delivery for an earlier job never
    resumes a run that now waits for another. Our decision; flows in callback mode
    pause (or suspend) with ``key=pause_key_for(job.job_id)``. Prefect keys take only
    lowercase letters, digits and dashes (Legnext's job ids are UUIDs)."""
    return f"legnext-job-{job_id.lower()}"


class LegnextTaskInput(RunInput):
    """The run input a resumed flow run receives: the task object as Legnext sent it
    (every key kept). ``wait_for_input=LegnextTaskInput``, then `.job()`."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    status: str

    def job(self) -> Job:
        return Job.model_validate(self.model_dump())


class RecordInLedger:
    """Record the job under the key its callback URL echoes, when the key's record has
    no job yet (`ledger.record_from_callback`; never over another job id)."""

    name = "ledger"

    def __init__(self, ledger: JobLedger) -> None:
        self.ledger = ledger

    async def __call__(self, arrival: Arrival) -> str:
        if arrival.key is None:
            return "no idempotency key in the callback URL"
        try:
            return await asyncio.to_thread(
                record_from_callback, self.ledger, arrival.key, arrival.delivery.job
            )
        except ValueError as exc:  # a malformed key or job id: no retry will mend it
            logger.warning("callback for job %s: not recorded: %s",
                           arrival.delivery.job.job_id, exc)  # fmt: skip
            return "malformed key or job id"


class EmitJobEvent:
    """``legnext.job.completed`` / ``legnext.job.failed``, with one event id per job and
    status (`tasks.job_event_id`): Prefect's server keeps an id once."""

    name = "event"

    async def __call__(self, arrival: Arrival) -> str:
        job = arrival.delivery.job
        what = "completed" if job.is_completed else "failed"
        extra: dict[str, Any] = {"source": "callback"}
        if job.is_failed:
            extra.update(code=job.error.code, message=job.error.message)
        emit_job_event(what, job, event_id=job_event_id(what, job.job_id), **extra)
        return f"legnext.job.{what}"


def _flow_run_id(arrival: Arrival) -> uuid.UUID | None:
    try:
        return uuid.UUID(arrival.flow_run_id) if arrival.flow_run_id is not None else None
    except ValueError:
        return None


class DeliverToFlowRun:
    """Keep the task object on the flow run the callback URL names (flow run input
    ``legnext-delivered-<job id>``, `deliveries`), whether or not the run waits for it
    now: a re-executed run (or a batch's other chains) reads it instead of GETting the
    job. Create-only: a repeat changes nothing."""

    name = "deliver"

    async def __call__(self, arrival: Arrival) -> str:
        flow_run_id = _flow_run_id(arrival)
        if flow_run_id is None:
            return "no flow run in the callback URL"
        try:
            async with get_client() as client:
                await asave_delivery(client, flow_run_id, arrival.delivery.data)
        except ObjectNotFound:
            return f"flow run {flow_run_id} not found"
        except Exception as exc:
            # A deleted run answers 404 through the create: nothing to deliver to.
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                return f"flow run {flow_run_id} not found"
            raise
        return "delivered"


class ReleaseJobSlot:
    """Release the ``legnext-account`` slot the job held (callback mode): its lease id
    is tagged on the echoed callback URL (`LEASE_TAG`). Releasing a lease the server no
    longer knows does nothing, so a repeat, or the sweeper releasing it too, is
    harmless."""

    name = "slot"

    async def __call__(self, arrival: Arrival) -> str:
        if arrival.lease_id is None:
            return "no slot lease in the callback URL"
        try:
            lease = uuid.UUID(arrival.lease_id)
        except ValueError:
            return "malformed lease id"
        async with get_client() as client:
            await job_leases.arelease(client, lease)
        return "released"


class ResumeFlowRun:
    """Resume the flow run the callback URL names (`FLOW_RUN_TAG`) with the task object
    as run input, when it is paused waiting for this job (`pause_key_for`). A run still
    running is looked at again for `grace` seconds: a fast job may call back before its
    run has suspended (the lost wake-up). A run that is not paused after that (already
    resumed, finished), or waits for something else, is left alone: logged, not retried
    (the sweeper settles a run that suspended later)."""

    name = "resume"

    def __init__(
        self, grace: float = SUSPEND_GRACE_SECONDS, look_every: float = SUSPEND_LOOK_SECONDS
    ) -> None:
        self.grace = grace
        self.look_every = look_every

    async def __call__(self, arrival: Arrival) -> str:
        if arrival.flow_run_id is None:
            return "no flow run in the callback URL"
        if arrival.listening:
            return "the run listens for the notice (nothing to resume)"
        job_id = arrival.delivery.job.job_id
        flow_run_id = _flow_run_id(arrival)
        if flow_run_id is None:
            return "malformed flow run id"
        deadline = asyncio.get_running_loop().time() + self.grace
        try:
            async with get_client() as client:
                while True:
                    flow_run = await client.read_flow_run(flow_run_id)
                    # Running, and this pause never fired: it may be about to suspend.
                    fired = pause_key_for(job_id) in (flow_run.empirical_policy.pause_keys or ())
                    about_to = (
                        flow_run.state is not None and flow_run.state.is_running() and not fired
                    )
                    if not about_to or asyncio.get_running_loop().time() >= deadline:
                        break
                    await asyncio.sleep(self.look_every)
        except ObjectNotFound:
            return f"flow run {flow_run_id} not found"
        waiting = _waiting_for(flow_run)
        if waiting != pause_key_for(job_id):
            logger.info("callback for job %s: flow run %s is %s; not resumed",
                        job_id, flow_run_id, _what(flow_run, waiting))  # fmt: skip
            return "not waiting for this job"
        while True:
            try:
                await aresume_flow_run(flow_run_id, run_input=kept(arrival.delivery.data))
                break
            except NotPausedError:  # another delivery (or a person) resumed it meanwhile
                return "already resumed"
            except FlowPauseTimeout:
                logger.warning("callback for job %s: flow run %s timed out waiting; "
                               "not resumed", job_id, flow_run_id)  # fmt: skip
                return "pause timed out"
            except RuntimeError:
                # Refused: e.g. the run's input schema is saved just after it suspends.
                # Asked again within the grace; past it the receiver answers 503 and
                # the sender tries again.
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(self.look_every)
        logger.info("callback for job %s: resumed flow run %s", job_id, flow_run_id)
        return "resumed"


def _waiting_for(flow_run: FlowRun) -> str | None:
    state = flow_run.state
    if state is None or not state.is_paused():
        return None
    return state.state_details.pause_key


def _what(flow_run: FlowRun, pause_key: str | None) -> str:
    if pause_key is None:
        return f"not paused ({flow_run.state.type.value if flow_run.state else 'no state'})"
    return "paused for something else"


def default_actions(ledger: JobLedger | None) -> list[TerminalAction]:
    """Record (when there is a ledger), deliver, emit, resume, release the slot: in that
    order, so that a resumed flow, or one that listens for the event (`notices`), finds
    its job recorded and delivered, and the slot is freed once the run has been told
    (our decision: a failed resume is retried by the sender before the slot goes to
    another job)."""
    actions: list[TerminalAction] = [
        DeliverToFlowRun(), EmitJobEvent(), ResumeFlowRun(), ReleaseJobSlot(),
    ]  # fmt: skip
    if ledger is not None:
        actions.insert(0, RecordInLedger(ledger))
    return actions
