"""Callback mode of the flows: a step submits with the receiver's URL as ``callback``
and the flow run suspends (`suspend_flow_run`), so no worker process is held while
Legnext works. The receiver (or the sweeper) resumes the run with the task object; the
run then executes again from the top, and every step finds its job in the ledger and
its task object delivered on the run (`deliveries`): none submits again, finished
steps reuse their persisted outputs (the S3 sidecar), and the next step submits.

How a step waits is `settle` (one step) and `run_until_waiting` (the flow): a step
whose job still runs raises `AwaitingCallbacks`; the flow, once every chain is done or
waiting, suspends keyed on the earliest of those jobs (`pause_key_for`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar
from uuid import UUID

from prefect.context import FlowRunContext

from prefect_legnext.core.endpoints import endpoint as endpoint_named
from prefect_legnext.core.errors import JobFailedError
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.deliveries import WaitNote, read_deliveries, save_wait_note
from prefect_legnext.orchestration.receiver.actions import LegnextTaskInput, pause_key_for

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from prefect_legnext.orchestration.blocks import LegnextCredentials

T = TypeVar("T")
WaitMode = Literal["poll", "callback"]
# How a run's steps wait: "listen" is callback mode in a run that cannot be suspended.
WaitStyle = Literal["poll", "callback", "listen"]
logger = logging.getLogger("prefect_legnext.orchestration.callback_mode")

# Our decisions: a job's callback is overdue (the sweeper GETs it) after its longest
# typical duration times DUE_FACTOR plus DUE_EXTRA_SECONDS, both scaled like the job.
DUE_FACTOR = 1.5
DUE_EXTRA_SECONDS = 60.0


def due_after(task_type: str, scale: float = 1.0) -> timedelta:
    """How long after its submit a job of `task_type` is overdue."""
    try:
        high = endpoint_named(task_type).typical_seconds[1]
    except (KeyError, ValueError):
        high = 360.0
    return timedelta(seconds=(DUE_FACTOR * high + DUE_EXTRA_SECONDS) * scale)


def why_not_suspendable() -> str | None:
    """Why this flow run cannot be suspended (Prefect's server refuses runs outside a
    deployment, and subflows), or None when it can."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return "a direct call of the flow's function"
    if context.flow_run.deployment_id is None:
        return "a flow run outside a deployment (Python or the CLI)"
    if context.flow_run.parent_task_run_id is not None:
        return "a subflow run"
    return None


def _has_a_server() -> bool:
    """Whether this process talks to a Prefect server the receiver can reach too (a
    process-local ephemeral server hears from no receiver)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def choose_wait_mode(
    asked: WaitMode | None,
    credentials: LegnextCredentials,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> WaitStyle:
    """How the run's steps wait: as `asked`, by default callback mode when the
    credentials name a receiver. Callback mode suspends the run; a run that cannot be
    suspended listens for the receiver's notice in its process (`notices`) when it
    has a run and a server the receiver reaches, else polls (each said once, here).

    Raises:
        ValueError: callback mode asked without a receiver URL (before any paid call).
    """
    if asked == "poll":
        return "poll"
    if credentials.callback_url is None:
        if asked == "callback":
            raise ValueError(
                "wait_mode='callback' needs callback_url (the receiver's public URL) on "
                "the Legnext credentials block; nothing was submitted"
            )
        return "poll"
    reason = why_not_suspendable()
    if reason is None:
        return "callback"
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and _has_a_server():
        log.info(
            "callback mode: %s cannot be suspended; its steps wait in this process for "
            "the receiver's notice (polling once a callback is overdue)", reason,
        )  # fmt: skip
        return "listen"
    log.info(
        "callback mode needs a flow run on a Prefect server the receiver reaches; "
        "%s: polling instead", reason if context is None else "an ephemeral server",
    )  # fmt: skip
    return "poll"


@dataclass(frozen=True)
class Awaited:
    """A job a step waits for: its id and when it was submitted (the earliest is the
    one the run suspends for)."""

    job_id: str
    since: datetime


class AwaitingCallbacks(Exception):
    """Steps whose jobs still run: the flow suspends until a callback."""

    def __init__(self, awaited: list[Awaited]) -> None:
        super().__init__(", ".join(a.job_id for a in awaited))
        self.awaited = awaited


class _Delivered:
    """Finished task objects delivered to flow runs of this process, by run and job
    id: read from the server once per execution and again when a step misses one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[UUID, dict[str, Job]] = {}

    def refresh(self, flow_run_id: UUID) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            found = read_deliveries(client, flow_run_id)
        with self._lock:
            self._jobs.setdefault(flow_run_id, {}).update(found)

    def add(self, flow_run_id: UUID, job: Job) -> None:
        with self._lock:
            self._jobs.setdefault(flow_run_id, {})[job.job_id.lower()] = job

    def get(self, flow_run_id: UUID, job_id: str, *, refresh: bool = True) -> Job | None:
        with self._lock:
            job = self._jobs.get(flow_run_id, {}).get(job_id.lower())
        if job is None and refresh:
            self.refresh(flow_run_id)
            return self.get(flow_run_id, job_id, refresh=False)
        return job


DELIVERED = _Delivered()


def current_flow_run_id() -> UUID:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("callback mode runs inside a flow run")
    return context.flow_run.id


def finished(job: Job) -> Job:
    """A delivered job as the step's outcome: a failed one fails the step, as a poll
    would (`wait_for_job`)."""
    if job.is_failed:
        raise JobFailedError(job)
    return job


def note_wait(
    client: SyncPrefectClient,
    job: Job,
    lease_id: UUID | None,
    lease_seconds: float,
    scale: float,
    credentials_block: str | None,
) -> Awaited:
    """Keep the wait on the run for the sweeper (`WaitNote`), once per job."""
    now = datetime.now(UTC)
    note = WaitNote(
        job_id=job.job_id, task_type=job.task_type, submitted_at=now,
        due_at=now + due_after(job.task_type, scale),
        lease_id=str(lease_id) if lease_id is not None else None, lease_seconds=lease_seconds,
        scale=scale, credentials_block=credentials_block,
    )  # fmt: skip
    save_wait_note(client, current_flow_run_id(), note)
    return Awaited(job.job_id, now)


def run_until_waiting(run: Callable[[], T], max_wait_seconds: float) -> T:
    """Run the flow's chains; while some wait for callbacks, suspend the run for the
    earliest job (the process exits; the run executes again from the top when
    resumed). A pause that already fired (its job was delivered in an earlier
    execution) hands back the task object instead: the chains run again here."""
    from prefect.flow_runs import suspend_flow_run

    flow_run_id = current_flow_run_id()
    DELIVERED.refresh(flow_run_id)
    while True:
        try:
            return run()
        except AwaitingCallbacks as waiting:
            first = min(waiting.awaited, key=lambda a: a.since)
            # A delivery between the step's look and now (a fast job): no suspend.
            if DELIVERED.get(flow_run_id, first.job_id) is not None:
                continue
            logger.info("waiting for the callback of job %s: suspending the run", first.job_id)
            got = suspend_flow_run(
                wait_for_input=LegnextTaskInput,
                key=pause_key_for(first.job_id),
                timeout=max(1, int(max_wait_seconds)),
            )
            DELIVERED.add(flow_run_id, got.job())


def gather(outcomes: list[T | AwaitingCallbacks]) -> list[T]:
    """The results of side-by-side chains, or one `AwaitingCallbacks` for all the jobs
    they wait for."""
    awaited = [a for o in outcomes if isinstance(o, AwaitingCallbacks) for a in o.awaited]
    if awaited:
        raise AwaitingCallbacks(awaited)
    return [o for o in outcomes if not isinstance(o, AwaitingCallbacks)]
