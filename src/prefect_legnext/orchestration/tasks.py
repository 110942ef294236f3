"""Prefect tasks over the Legnext client, each in a sync and an async form.

- ``submit_<endpoint>`` / ``asubmit_<endpoint>`` for each of the create endpoints,
  taking the request's fields as typed keyword arguments (e.g. `submit_diffusion`,
  `asubmit_inpaint`): generated from `endpoints.CREATE_ENDPOINTS` into
  `_generated_tasks` (``make generate``) and re-exported here. And the generic
  `submit_request`, taking a request model.
  Every submit goes through the idempotency ledger (`prefect_legnext.orchestration.ledger`):
  a task retry, a flow retry or a re-run of the same flow run reuses the job
  instead of paying again.
- `wait_for_job` / `await_for_job`: one task run per job wait; polls happen inside.
- `get_job` / `aget_job`, `get_balance` / `aget_balance`: free reads.
- `persist_outputs` / `apersist_outputs`: stream a job's outputs into S3.

Retries go through Prefect (exponential backoff with jitter) and only for
transient errors (`prefect_legnext.orchestration.task_options`): never for bad input,
authentication, insufficient points or content rejection. The sync form is chosen
in sync contexts, the async form in async ones (`async_dispatch`); call ``.aio`` or
the ``a``-prefixed task to force async.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.utilities.asyncutils import run_sync_in_worker_thread

from prefect_legnext.core.client import AsyncLegnextClient, LegnextClient
from prefect_legnext.core.endpoints import endpoint as endpoint_named
from prefect_legnext.core.endpoints import endpoint_for
from prefect_legnext.core.errors import (
    JobFailedError,
    JobTimeoutError,
    RateLimitedError,
    TransportError,
)
from prefect_legnext.core.fetch import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_FILE_BYTES
from prefect_legnext.core.models import LegnextRequest
from prefect_legnext.core.responses import Balance, Job
from prefect_legnext.orchestration import _generated_tasks
from prefect_legnext.orchestration._generated_tasks import *  # noqa: F403  (submit_<endpoint>, asubmit_<endpoint>)
from prefect_legnext.orchestration._generated_tasks import ENDPOINT_TASKS
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.clients import LEGNEXT_CLIENTS, legnext_client
from prefect_legnext.orchestration.ledger import (
    JobLedger,
    OnUnknown,
    check_key,
    derive_key,
    resolve_ledger,
    submit_once,
)
from prefect_legnext.orchestration.storage import (
    DEFAULT_PREFIX,
    PersistedJob,
    persist_job,
)
from prefect_legnext.orchestration.task_options import (
    STORAGE_TRANSIENT_ERRORS,
    SUBMIT_OPTIONS,
    TRANSIENT_ERRORS,
    task_options,
)

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

    LedgerArg = JobLedger | S3Bucket | str | None

DEFAULT_MAX_WAIT_SECONDS = 900.0
JobHook = Callable[[Job], None]
# The longest Retry-After a task sits out before Prefect's retry; a longer one still
# fails the attempt, and Prefect's backoff takes over.
MAX_ASKED_WAIT_SECONDS = 900.0


def _asked_wait(error: RateLimitedError, deadline: float | None = None) -> float:
    """How long to sit out a Retry-After: never past a wait's `deadline` (epoch seconds)."""
    asked = min(max(error.retry_after or 0.0, 0.0), MAX_ASKED_WAIT_SECONDS)
    return asked if deadline is None else min(asked, max(deadline - time.time(), 0.0))


@contextmanager
def _client(
    credentials: LegnextCredentials, deadline: float | None = None
) -> Iterator[LegnextClient]:
    """The process's shared client of `credentials` (`clients.legnext_client`), whose
    429 with a Retry-After longer than its own backoff holds the task that long (at most
    until `deadline`) before failing, so that Prefect's retry does not come before
    Legnext asked. After a transport failure the shared client is dropped: Prefect's
    retry gets a fresh one."""
    client = legnext_client(credentials)
    try:
        yield client
    except RateLimitedError as exc:
        time.sleep(_asked_wait(exc, deadline))
        raise
    except TransportError:
        LEGNEXT_CLIENTS.discard(client)
        raise


@asynccontextmanager
async def _async_client(
    credentials: LegnextCredentials, deadline: float | None = None
) -> AsyncIterator[AsyncLegnextClient]:
    """`_client`, awaited."""
    try:
        async with credentials.get_async_client() as client:
            yield client
    except RateLimitedError as exc:
        await asyncio.sleep(_asked_wait(exc, deadline))
        raise


def idempotency_scope() -> list[str]:
    """What a derived key is scoped to: the flow run (so flow retries and re-runs of
    the same run reuse jobs), else the task run (so task retries do)."""
    context = TaskRunContext.get()
    if context is None:
        raise ValueError(
            "no Prefect run: pass idempotency_key=... to submit outside a flow or task run"
        )
    run = context.task_run
    if run.flow_run_id is None:
        return [f"task-run:{run.id}"]
    flow_context = FlowRunContext.get()
    flow_run = flow_context.flow_run if flow_context else None
    if flow_run is None or flow_run.id != run.flow_run_id:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(run.flow_run_id)
    return [flow_run_scope(flow_run)]


def flow_run_scope(flow_run: FlowRun) -> str:
    """A flow run's idempotency scope. A subflow gets a new flow run each time its
    parent retries, so it is scoped to its root flow run, its flow and its parameters
    (identical subflow calls in one root run share their jobs)."""
    if flow_run.parent_task_run_id is None:
        return f"flow-run:{flow_run.id}"
    root = flow_run
    with get_client(sync_client=True) as client:
        while root.parent_task_run_id is not None:
            parent_task = client.read_task_run(root.parent_task_run_id)
            if parent_task.flow_run_id is None:
                break
            root = client.read_flow_run(parent_task.flow_run_id)
    parameters = json.dumps(flow_run.parameters, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{flow_run.flow_id}:{parameters}".encode()).hexdigest()[:16]
    return f"flow-run:{root.id}/subflow:{digest}"


def _submit(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None,
    ledger: LedgerArg,
    on_unknown: OnUnknown,
    fingerprint: str | None = None,
) -> Job:
    return _submit_once(credentials, request, idempotency_key, ledger, on_unknown, fingerprint)[0]


def _submit_once(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None,
    ledger: LedgerArg,
    on_unknown: OnUnknown,
    fingerprint: str | None = None,
    lease_id: str | None = None,
) -> tuple[Job, bool]:
    endpoint = endpoint_for(request)
    key = (
        check_key(idempotency_key)
        if idempotency_key
        else derive_key(endpoint, request, idempotency_scope())
    )
    logger = get_run_logger()
    context = TaskRunContext.get()
    flow_run_id = context.task_run.flow_run_id if context is not None else None
    with _client(credentials) as client:
        job, reused = submit_once(
            client,
            resolve_ledger(ledger),
            request,
            key,
            on_unknown=on_unknown,
            fingerprint=fingerprint,
            flow_run_id=str(flow_run_id) if flow_run_id is not None else None,
            lease_id=lease_id,
        )
    if reused:
        logger.info(
            "%s: reusing job %s (idempotency key %s), nothing charged",
            endpoint.name, job.job_id, key,
        )  # fmt: skip
    else:
        logger.info(
            "%s: submitted job %s, %d points held (idempotency key %s)",
            endpoint.name, job.job_id, job.points, key,
        )  # fmt: skip
        emit_job_event("submitted", job)
    return job, reused


def job_event_id(what: str, job_id: str) -> uuid.UUID:
    """The one id of ``legnext.job.<what>`` for a job: Prefect's server stores an event
    id once, so emitters that may repeat themselves (the callback receiver after a
    re-delivery or a restart) emit each event once. Our decision."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"legnext.job.{what}:{job_id}")


_EVENT_NAMESPACE = uuid.UUID("5f0c2a4e-8d1b-4c7a-9e3f-6b2d1a0c9e84")


def emit_job_event(
    what: str, job: Job, *, event_id: uuid.UUID | None = None, **payload: Any
) -> None:
    """``legnext.job.<what>`` with the job as resource, for automations to react to;
    `event_id` (e.g. `job_event_id`) makes repeats of it one event."""
    emit_event(
        event=f"legnext.job.{what}",
        id=event_id,
        resource={
            "prefect.resource.id": f"legnext.job.{job.job_id}",
            "prefect.resource.name": f"{job.task_type} {job.job_id}",
            "legnext.task-type": job.task_type,
        },
        payload={
            "job_id": job.job_id,
            "task_type": job.task_type,
            "status": str(job.status),
            "points": job.points,
            "output_urls": job.output_urls,
            **payload,
        },
    )


@contextmanager
def _job_outcome_events(dedupe: bool = False) -> Iterator[Callable[[Job], Job]]:
    """Emit ``completed`` for the job handed back, ``failed`` for a JobFailedError;
    with `dedupe`, under the one id per job and outcome (`job_event_id`) that the
    callback receiver uses too, so that both telling makes one event."""

    def event_id(what: str, job: Job) -> uuid.UUID | None:
        return job_event_id(what, job.job_id) if dedupe else None

    def completed(job: Job) -> Job:
        emit_job_event("completed", job, event_id=event_id("completed", job))
        return job

    try:
        yield completed
    except JobFailedError as exc:
        if exc.job is not None:
            emit_job_event("failed", exc.job, event_id=event_id("failed", exc.job),
                           code=exc.code, message=exc.message)  # fmt: skip
        raise


@task(**SUBMIT_OPTIONS)
async def asubmit_request(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
    fingerprint: str | None = None,
) -> Job:
    """Submit any validated request once (a paid call). See `submit_request`."""
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown, fingerprint
    )


@async_dispatch(asubmit_request)
@task(**SUBMIT_OPTIONS)
def submit_request(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
    fingerprint: str | None = None,
) -> Job:
    """Submit any validated request, at most once per idempotency key (a paid call).

    Args:
        credentials: the Legnext credentials block.
        request: a request model, e.g. `DiffusionRequest(text=...)`.
        idempotency_key: reuse the job submitted under this key before; derived from
            the flow run and the request when omitted, so identical requests in one
            flow run share one job unless given distinct keys.
        ledger: where keys are recorded: an `S3Bucket` (shared by every worker), a
            directory path, or None for ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (default) stops when an earlier submit's outcome cannot
            be reconciled; "resubmit" accepts the risk of paying twice.
        fingerprint: what makes two submits under one key the same request (default:
            the body); a key reused for a different fingerprint is refused.

    Returns:
        The job as Legnext answered it (status pending), or the reused job.

    Example:
        ```python
        from prefect import flow
        from prefect_legnext import LegnextCredentials
        from prefect_legnext.core.models import DiffusionRequest
        from prefect_legnext.orchestration.tasks import submit_request, wait_for_job

        @flow
        def generate(prompt: str):
            credentials = LegnextCredentials.load("legnext")
            job = submit_request(credentials, DiffusionRequest(text=prompt))
            return wait_for_job(credentials, job)
        ```
    """
    return _submit(credentials, request, idempotency_key, ledger, on_unknown, fingerprint)


@task(**SUBMIT_OPTIONS)
def submit_step(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str,
    ledger: LedgerArg,
    fingerprint: str | None = None,
    lease_id: str | None = None,
) -> tuple[Job, bool]:
    """`submit_request` for the flows' chain steps: also says whether the job was
    reused (an earlier attempt paid for it), which the step learns here instead of
    reading the ledger itself (an S3 call per step saved). `lease_id`: the account
    slot's lease the job holds in callback mode (tagged on the callback URL)."""
    return _submit_once(
        credentials, request, idempotency_key, ledger, "raise", fingerprint, lease_id
    )


class _WaitProgress:
    """Logs each status change to the run log (polls themselves stay silent), hands every
    poll's job to `hook`, and keeps the last job seen (for a timeout raised here)."""

    def __init__(
        self, job: Job | str, max_wait_seconds: float, deadline: float, hook: JobHook | None
    ) -> None:
        self.job_id = job.job_id if isinstance(job, Job) else job
        self.last = job if isinstance(job, Job) else None
        self.max_wait_seconds = max_wait_seconds
        self.deadline = deadline
        self._hook = hook
        self._logger = get_run_logger()
        self._status: str | None = None
        self._logger.info(
            "waiting up to %.0fs more for job %s (max_wait_seconds=%g)",
            max(deadline - time.time(), 0.0), self.job_id, max_wait_seconds,
        )  # fmt: skip

    def __call__(self, job: Job) -> None:
        self.last = job
        if job.status != self._status:
            self._status = job.status
            self._logger.info("job %s (%s): %s", job.job_id, job.task_type, job.status)
        if self._hook is not None:
            self._hook(job)

    @contextmanager
    def no_retry_past_deadline(self) -> Iterator[None]:
        """A transient failure whose Prefect retry would start at or after the deadline
        ends the wait as a timeout: the retry could only time out, later."""
        try:
            yield
        except TRANSIENT_ERRORS as exc:
            delay = _next_retry_delay()
            if delay is not None and time.time() + delay >= self.deadline:
                raise JobTimeoutError(
                    job_id=self.job_id, job=self.last, waited_seconds=self._waited(),
                    max_wait_seconds=self.max_wait_seconds,
                ) from exc  # fmt: skip
            raise

    def _waited(self) -> float:
        return time.time() - (self.deadline - self.max_wait_seconds)


def _next_retry_delay() -> float | None:
    """Seconds before Prefect retries the current task run (the delay before jitter), or
    None when it has no retry left."""
    context = TaskRunContext.get()
    if context is None or context.task_run.run_count > context.task.retries:
        return None
    delays = context.task.retry_delay_seconds or 0
    if isinstance(delays, Sequence):
        return float(delays[min(context.task_run.run_count - 1, len(delays) - 1)])
    return float(delays)


def wait_deadline(max_wait_seconds: float, deadline: float | None = None) -> float:
    """When a wait task must end (epoch seconds): `deadline` when given (the flow sets it
    when the step starts waiting), else ``max_wait_seconds`` after this task run first
    started, so that its Prefect retries keep one deadline."""
    if deadline is not None:
        return deadline
    context = TaskRunContext.get()
    start = context.task_run.start_time if context is not None else None
    return (start.timestamp() if start is not None else time.time()) + max_wait_seconds


_WAIT_OPTIONS = task_options("legnext-wait", TRANSIENT_ERRORS)


@task(**_WAIT_OPTIONS)
async def await_for_job(
    credentials: LegnextCredentials,
    job: Job | str,
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    on_update: JobHook | None = None,
    deadline: float | None = None,
) -> Job:
    """Wait for a job to complete, polling inside this one task run. See `wait_for_job`."""
    end = wait_deadline(max_wait_seconds, deadline)
    progress = _WaitProgress(job, max_wait_seconds, end, on_update)
    with _job_outcome_events() as completed, progress.no_retry_past_deadline():
        async with _async_client(credentials, end) as client:
            return completed(
                await client.wait_for_job(
                    job, max_wait_seconds=max_wait_seconds, deadline=end, on_update=progress
                )
            )


@async_dispatch(await_for_job)
@task(**_WAIT_OPTIONS)
def wait_for_job(
    credentials: LegnextCredentials,
    job: Job | str,
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
    on_update: JobHook | None = None,
    deadline: float | None = None,
) -> Job:
    """Wait for a job to complete; the polls happen inside this one task run.

    Args:
        credentials: the Legnext credentials block.
        job: the Job returned by a submit (its task type times the first poll), or an id.
        max_wait_seconds: give up after this long (the job may still finish later),
            counted from this task run's first start, across its Prefect retries: slow
            or failing reads count too.
        on_update: called with the job after each poll, in the process that waits.
        deadline: give up at this wall-clock time instead (epoch seconds, as
            `time.time()`; the flows set it when a step starts waiting, so that the
            time the task spends queued counts too). The earlier of the two wins.

    Returns:
        The completed job.

    Raises:
        JobFailedError: the job failed (Legnext's code and message).
        JobTimeoutError: it did not finish in time (also when reads were failing or too
            slow at the deadline, or a retry of this task could not start before it).
    """
    end = wait_deadline(max_wait_seconds, deadline)
    progress = _WaitProgress(job, max_wait_seconds, end, on_update)
    with (
        _job_outcome_events() as completed,
        progress.no_retry_past_deadline(),
        _client(credentials, end) as client,
    ):
        return completed(
            client.wait_for_job(
                job, max_wait_seconds=max_wait_seconds, deadline=end, on_update=progress
            )
        )


_READ_OPTIONS = task_options("legnext-read", TRANSIENT_ERRORS)


@task(**{**_READ_OPTIONS, "name": "legnext-get-job"})
async def aget_job(credentials: LegnextCredentials, job_id: str) -> Job:
    """Read a job. See `get_job`."""
    async with _async_client(credentials) as client:
        return await client.get_job(job_id)


@async_dispatch(aget_job)
@task(**{**_READ_OPTIONS, "name": "legnext-get-job"})
def get_job(credentials: LegnextCredentials, job_id: str) -> Job:
    """Read a job's status and outputs (free)."""
    with _client(credentials) as client:
        return client.get_job(job_id)


@task(**{**_READ_OPTIONS, "name": "legnext-balance"})
async def aget_balance(credentials: LegnextCredentials) -> Balance:
    """Read the account's balance. See `get_balance`."""
    async with _async_client(credentials) as client:
        return await client.balance()


@async_dispatch(aget_balance)
@task(**{**_READ_OPTIONS, "name": "legnext-balance"})
def get_balance(credentials: LegnextCredentials) -> Balance:
    """Read the account's points and USD balance (free)."""
    with _client(credentials) as client:
        return client.balance()


_PERSIST_OPTIONS = task_options("legnext-persist", STORAGE_TRANSIENT_ERRORS)


def _job_reader(credentials: LegnextCredentials | None) -> Callable[[str], Job] | None:
    """Reads a job by id (free), for fresh output URLs; None without credentials."""
    if credentials is None:
        return None

    def read(job_id: str) -> Job:
        with _client(credentials) as client:
            return client.get_job(job_id)

    return read


def _persist(
    job: Job,
    bucket: S3Bucket,
    prefix: str,
    metadata: dict[str, Any] | None,
    include_grid: bool,
    credentials: LegnextCredentials | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    file_timeout: float = DEFAULT_FILE_TIMEOUT,
    check_existing: bool = True,
) -> PersistedJob:
    result = persist_job(
        job, bucket, prefix, metadata=metadata, include_grid=include_grid,
        refresh=_job_reader(credentials), max_file_bytes=max_file_bytes,
        file_timeout=file_timeout, check_existing=check_existing,
    )  # fmt: skip
    reused = sum(f.reused for f in result.files)
    get_run_logger().info(
        "job %s: %d files in s3://%s (%d already there), sidecar %s",
        job.job_id, len(result.files), bucket.bucket_name, reused, result.sidecar_uri,
    )  # fmt: skip
    return result


@task(**_PERSIST_OPTIONS)
async def apersist_outputs(
    job: Job,
    bucket: S3Bucket,
    prefix: str = DEFAULT_PREFIX,
    metadata: dict[str, Any] | None = None,
    include_grid: bool = True,
    credentials: LegnextCredentials | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    file_timeout: float = DEFAULT_FILE_TIMEOUT,
    check_existing: bool = True,
) -> PersistedJob:
    """Stream a completed job's outputs into S3. See `persist_outputs`."""
    return await run_sync_in_worker_thread(
        _persist, job, bucket, prefix, metadata, include_grid, credentials, max_file_bytes,
        file_timeout, check_existing,
    )  # fmt: skip


@async_dispatch(apersist_outputs)
@task(**_PERSIST_OPTIONS)
def persist_outputs(
    job: Job,
    bucket: S3Bucket,
    prefix: str = DEFAULT_PREFIX,
    metadata: dict[str, Any] | None = None,
    include_grid: bool = True,
    credentials: LegnextCredentials | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    file_timeout: float = DEFAULT_FILE_TIMEOUT,
    check_existing: bool = True,
) -> PersistedJob:
    """Stream a completed job's outputs into S3 with a JSON sidecar, idempotently.

    Keys: ``{prefix}/{job_id}/{n}.png`` (or ``.mp4``), ``{prefix}/{job_id}/grid.png``
    and ``{prefix}/{job_id}/job.json``, under the bucket's folder.

    Args:
        credentials: when given, an expired output URL (403, 404, 410) makes the task
            read the job once more (a free call) for fresh URLs; without them it fails
            with `OutputExpiredError` naming the job and the file.
        max_file_bytes: the largest file stored (default 512 MiB); a larger one is a
            `DownloadRefusedError`, not retried.
        file_timeout: seconds one file may take (default 600), a `DownloadError`
            (retried) when passed.
        check_existing: look for outputs stored before and keep them (default); False
            skips those reads when none can exist (a job submitted by this step).

    Returns:
        Small typed records (S3 URI, sha256, size, content type), never bytes.
    """
    return _persist(
        job, bucket, prefix, metadata, include_grid, credentials, max_file_bytes, file_timeout,
        check_existing,
    )  # fmt: skip


def submit_task_for(endpoint_name: str, *, is_async: bool = False) -> Any:
    """The submit task of an endpoint (``"inpaint"``, ``"remove-background"``)."""
    sync_task, async_task = ENDPOINT_TASKS[endpoint_named(endpoint_name).name]
    return async_task if is_async else sync_task


__all__ = [
    "ENDPOINT_TASKS",
    "aget_balance",
    "aget_job",
    "apersist_outputs",
    "asubmit_request",
    "await_for_job",
    "get_balance",
    "get_job",
    "persist_outputs",
    "submit_request",
    "submit_task_for",
    "wait_for_job",
]
__all__ += _generated_tasks.__all__  # the submit task pair of each endpoint
