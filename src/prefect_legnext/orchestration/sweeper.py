"""The sweeper: the safety net of callback mode. A lost delivery delays a result,
never loses it, and never leaves an account slot taken.

Each sweep reads the flow runs suspended (or paused) with a ``legnext-job-`` pause key
and, for each, its wait note (`deliveries.WaitNote`):

- renews the lease of the slot its job holds, while the run may still be resumed
  (the job may still run: the account cap must hold for long jobs);
- once the job's callback is overdue (`WaitNote.due_at`: its longest typical
  duration and a margin after the submit), GETs the job once: finished, it delivers
  the task object to the run, resumes the run with it and releases the slot; still
  running, it looks again a margin later.

It also resumes runs suspended for a review (``legnext-review-`` pause keys,
`review`) whose timeout passed, with the review's default.

Run it on a schedule (the ``legnext-sweeper`` deployment, deployments/prefect.yaml),
once from Python (`sweep_once`, or the `legnext_sweeper` flow) or the command line
(``prefect-legnext sweep``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout, MissingContextError, NotPausedError
from pydantic import BaseModel

from prefect_legnext.core.callbacks import LEASE_TAG, callback_tags
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration import job_leases
from prefect_legnext.orchestration.callback_mode import DUE_EXTRA_SECONDS, due_after
from prefect_legnext.orchestration.clients import legnext_client
from prefect_legnext.orchestration.deliveries import (
    WaitNote,
    kept,
    read_wait_note,
    replace_wait_note,
    save_delivery,
)
from prefect_legnext.orchestration.receiver.actions import pause_key_for
from prefect_legnext.orchestration.resolve import DEFAULT_CREDENTIALS_BLOCK, resolve_credentials
from prefect_legnext.orchestration.review import REVIEW_PREFIX, sweep_review

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun

    from prefect_legnext.orchestration.blocks import LegnextCredentials

logger = logging.getLogger("prefect_legnext.orchestration.sweeper")
PAUSE_PREFIX = pause_key_for("")


class SweepReport(BaseModel):
    """What one sweep did, by job id."""

    waiting: list[str] = []
    renewed: list[str] = []
    checked: list[str] = []
    resumed: list[str] = []
    released: list[str] = []
    still_running: list[str] = []
    reviews_defaulted: list[str] = []  # flow run ids


def _log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def sweep_once(limit: int = 200, now: datetime | None = None) -> SweepReport:
    """One sweep over the runs waiting for Legnext callbacks (see the module)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    report = SweepReport()
    credentials: dict[str, LegnextCredentials] = {}
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=paused, limit=limit):
            state = run.state
            key = (state.state_details.pause_key if state is not None else None) or ""
            if key.startswith(REVIEW_PREFIX):
                if sweep_review(client, run.id, key, now or datetime.now(UTC)):
                    report.reviews_defaulted.append(str(run.id))
                continue
            if not key.startswith(PAUSE_PREFIX):
                continue
            try:
                _sweep_run(client, run, key[len(PAUSE_PREFIX) :], credentials, report, now)
            except Exception as exc:  # one run's trouble must not stop the others
                _log().warning("sweeping flow run %s: %s: %s", run.id, type(exc).__name__, exc)
    return report


def _sweep_run(
    client: SyncPrefectClient,
    run: FlowRun,
    job_id: str,
    credentials: dict[str, LegnextCredentials],
    report: SweepReport,
    now: datetime | None,
) -> None:
    assert run.state is not None
    now = now or datetime.now(UTC)
    report.waiting.append(job_id)
    note = read_wait_note(client, run.id, job_id)
    if note is None:  # not ours to time (paused by hand?): overdue after the longest
        since = run.state.timestamp or now
        note = WaitNote(job_id=job_id, task_type="", submitted_at=since,
                        due_at=since + due_after(""))  # fmt: skip
    timeout = run.state.state_details.pause_timeout
    resumable = timeout is None or now < timeout
    # Renewed only while the run may take the result: a run whose pause timed out
    # lets its slot go when the lease runs out (never held forever).
    renew = note.lease_id is not None and resumable
    if renew and job_leases.renew(str(note.lease_id), note.lease_seconds):
        report.renewed.append(job_id)
    if now < note.due_at:
        return
    block = note.credentials_block or str(
        (run.parameters or {}).get("credentials_block", DEFAULT_CREDENTIALS_BLOCK)
    )
    if block not in credentials:
        credentials[block] = resolve_credentials(block)[0]
    job = legnext_client(credentials[block]).get_job(note.job_id)
    report.checked.append(job_id)
    if not job.is_finished:
        report.still_running.append(job_id)
        later = now + timedelta(seconds=DUE_EXTRA_SECONDS * note.scale)
        replace_wait_note(client, run.id, note.model_copy(update={"due_at": later}))
        return
    _settle(client, run, job, note, report)


def _settle(
    client: SyncPrefectClient, run: FlowRun, job: Job, note: WaitNote, report: SweepReport
) -> None:
    """Deliver, resume, release: what the receiver would have done."""
    from prefect.flow_runs import resume_flow_run

    data: dict[str, Any] = job.model_dump(mode="json")
    save_delivery(client, run.id, data)
    try:
        resume_flow_run(run.id, run_input=kept(data))
        report.resumed.append(note.job_id)
        _log().info("sweeper: job %s finished (%s); resumed flow run %s",
                    job.job_id, job.status, run.id)  # fmt: skip
    except NotPausedError:  # the receiver (or a person) was quicker
        pass
    except FlowPauseTimeout:
        _log().warning("sweeper: flow run %s timed out waiting for job %s; not resumed",
                       run.id, job.job_id)  # fmt: skip
    hook = job.config.webhook_config if job.config else None
    lease = callback_tags((hook.endpoint if hook else None) or "").get(LEASE_TAG) or note.lease_id
    if lease is not None:
        job_leases.release(lease)
        report.released.append(note.job_id)


@flow(name="legnext-sweeper", log_prints=False)
def legnext_sweeper(limit: int = 200) -> SweepReport:
    """Settle flow runs whose Legnext callback is overdue: GET each such job once,
    resume its run when it finished, release its account slot; renew the slots of jobs
    still running."""
    report = sweep_once(limit=limit)
    _log().info(
        "sweeper: %d waiting, %d checked, %d resumed, %d still running, "
        "%d reviews took their default",
        len(report.waiting), len(report.checked), len(report.resumed),
        len(report.still_running), len(report.reviews_defaulted),
    )  # fmt: skip
    return report
