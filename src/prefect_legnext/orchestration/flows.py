"""The flows: `legnext_chain` (generate -> enhance -> inpaint -> retexture),
`legnext_pipeline` (any valid chain of steps) and `legnext_batch` (many chains).

Each step submits (at most once per run and position, through the ledger),
waits, and persists its outputs to S3 before the next step starts. A step holds
one slot of the ``legnext-account`` global concurrency limit from submit to
completion, so every run on every worker together stays inside the account's cap.
Everything that can be checked is checked before the first paid call.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast
from uuid import uuid4

from prefect import Task, flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_aws import S3Bucket
from pydantic import BaseModel, Field

from prefect_legnext.core.callbacks import listening_url
from prefect_legnext.core.fetch import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_FILE_BYTES
from prefect_legnext.core.masks import MaskForm, MaskFormModel, as_mask
from prefect_legnext.core.models import LegnextRequest, Mask
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration import job_leases, slots
from prefect_legnext.orchestration.background import background_writes, write_later
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.callback_mode import (
    DELIVERED,
    Awaited,
    AwaitingCallbacks,
    WaitMode,
    WaitStyle,
    choose_wait_mode,
    current_flow_run_id,
    finished,
    gather,
    note_wait,
    run_until_waiting,
)
from prefect_legnext.orchestration.clients import legnext_client
from prefect_legnext.orchestration.errors import BudgetExceededError
from prefect_legnext.orchestration.ledger import JobLedger, S3Ledger
from prefect_legnext.orchestration.notices import wait_for_notice
from prefect_legnext.orchestration.plans import (
    Action,
    ChainPlan,
    ChainStep,
    ImageSource,
    PlannedStep,
    build_request,
    check_parent,
    default_mask,
    image_choices,
    plan_chain,
    takes_prompt,
)
from prefect_legnext.orchestration.provisioning import (
    ACCOUNT_LEASE_SECONDS,
    ACCOUNT_LIMIT,
    ensure_account_limit,
)
from prefect_legnext.orchestration.resolve import (
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_STORAGE_BLOCK,
    resolve_bucket,
    resolve_credentials,
)
from prefect_legnext.orchestration.review import (
    AwaitingReview,
    Review,
    ReviewChoice,
    ReviewDefault,
    ReviewSettings,
    decide,
    review_key,
    until_reviewed,
)
from prefect_legnext.orchestration.storage import (
    PersistedFile,
    PersistedJob,
    annotate_sidecar,
    presigned_url,
)
from prefect_legnext.orchestration.tasks import (
    flow_run_scope,
    get_balance,
    persist_outputs,
    submit_step,
    wait_for_job,
)

T = TypeVar("T")
logger = logging.getLogger("prefect_legnext.orchestration.flows")
# Callbacks (chains done, chains in all) of batches run in this process: the CLI's bar.
BATCH_LISTENERS: list[Callable[[int, int], None]] = []
SHORT_ID = 8  # characters of a job id in task run names and terminal lines
# Chains of a batch running at once; each waits on one task at a time, so the batch's
# default thread pool of the same size never makes them queue.
CHAIN_THREADS = 16


@dataclass(frozen=True)
class StepProgress:
    """What a chain step is doing, for listeners in the process running the flow (the
    CLI prints one line each).

    Attributes:
        flow_run_id: the flow run the step belongs to.
        chain: the chain's label (its prompt, shortened).
        index: the step's number, from 1.
        action: the endpoint, e.g. ``"enhance"``.
        phase: ``"submitted"``, ``"reused"``, ``"status"`` or ``"persisted"``.
        job_id: the Legnext job.
        detail: the status, the points held, or the S3 prefix of the outputs.
    """

    flow_run_id: str
    chain: str
    index: int
    action: str
    phase: Literal["submitted", "reused", "status", "persisted"]
    job_id: str
    detail: str


# Called with each StepProgress of the chains this process runs.
STEP_LISTENERS: list[Callable[[StepProgress], None]] = []
PRESIGN_SECONDS = 7 * 24 * 3600
ClassicStep = Literal["diffusion", "enhance", "inpaint", "retexture"]
CLASSIC_STEPS: tuple[ClassicStep, ...] = ("diffusion", "enhance", "inpaint", "retexture")


def _sync(value: T | Coroutine[Any, Any, T]) -> T:
    """The result of a dispatched task called from these (sync) flows."""
    if inspect.iscoroutine(value):
        value.close()
        raise RuntimeError("a Legnext task dispatched to its async form inside a sync flow")
    return cast(T, value)


def _about(title: str, description: str) -> Any:
    """The title and description the UI form shows for a flow parameter, for its
    annotation (``Annotated[type, _about(...)] = default``): a `Field` as the default
    would be what ``flow.fn(...)`` gets for an omitted argument. Prefect replaces a
    field's own title and description (with the name and the docstring), and keeps
    ``json_schema_extra``: so both go there too."""
    return Field(
        description=description, json_schema_extra={"title": title, "description": description}
    )


class StepResult(BaseModel):
    """What one step did: its job, cost, time and where its outputs are."""

    index: int
    action: str
    job_id: str
    task_type: str
    parent_job_id: str | None
    image_no: int | None
    seed: str | None
    points: int
    duration_seconds: float
    s3_uris: list[str]
    prompts: list[str] | None = None
    grid_uri: str | None
    sidecar_uri: str
    files: list[PersistedFile]
    review: ReviewChoice | None = None


class ChainResult(BaseModel):
    label: str = ""
    steps: list[StepResult]
    total_points: int

    @property
    def last(self) -> StepResult:
        return self.steps[-1]


class BatchResult(BaseModel):
    chains: list[ChainResult]
    total_points: int


class RunSettings(BaseModel):
    """What every chain of one flow run shares."""

    credentials: LegnextCredentials
    bucket: S3Bucket
    key_prefix: str
    max_wait_seconds: float
    image_source: ImageSource
    scope: str
    # Download limits of every persist (see storage.persist_job); not flow parameters.
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    file_timeout: float = DEFAULT_FILE_TIMEOUT
    # "callback": steps submit with the receiver's URL and the run suspends while jobs
    # run (callback_mode); "listen": they submit so and their wait tasks listen for the
    # receiver's notice (notices); "poll": each step's wait task polls.
    wait_mode: WaitStyle = "poll"
    credentials_block: str | None = None
    review: ReviewSettings = ReviewSettings()

    def ledger(self) -> S3Ledger:
        """Submits of flows are recorded beside their outputs, shared by every worker."""
        return S3Ledger(self.bucket)


class PointBudget:
    """Points this run may still spend: min(max_points, the account's available points).
    Thread-safe, since a batch runs chains in parallel; it never leaves the flow's
    process (a copy would check only its own submits)."""

    def __init__(self, max_points: int | None, available: int) -> None:
        self.max_points = max_points
        self.available = available
        self.reserved = 0
        self.paid_before = 0
        self._lock = threading.Lock()

    def check_plan(self, points: int, *, first_attempt: bool = True) -> None:
        """Refuse a run whose planned cost is above max_points or, on its first attempt,
        above the account's balance (a retry reuses jobs it already paid for)."""
        if self.max_points is not None and points > self.max_points:
            raise BudgetExceededError(
                f"the run costs {points} points, above max_points={self.max_points}; "
                "nothing was submitted"
            )
        if first_attempt and points > self.available:
            raise BudgetExceededError(
                f"the run costs {points} points but the account has {self.available} "
                "available; nothing was submitted"
            )

    def reserve(self, points: int, what: str, *, already_paid: bool = False) -> None:
        """Count `points` against the budget. A job an earlier attempt of this run paid
        for counts against max_points but not against what the account has left."""
        with self._lock:
            spent = self.reserved + points
            if self.max_points is not None and spent > self.max_points:
                raise BudgetExceededError(
                    f"{what} would cost {points} points, {self.reserved} already spent of "
                    f"max_points={self.max_points}; not submitted"
                )
            if not already_paid and self.reserved - self.paid_before + points > self.available:
                raise BudgetExceededError(
                    f"{what} would cost {points} points; the account has "
                    f"{self.available - (self.reserved - self.paid_before)} left; not submitted"
                )
            self.reserved = spent
            if already_paid:
                self.paid_before += points

    def restart(self) -> None:
        """A new execution of the run's chains (after a review): every step reserves
        again, the ones paid for already as such."""
        with self._lock:
            self.reserved = 0
            self.paid_before = 0

    def paid_before_by_now(self, points: int) -> None:
        """A step reserved as new turned out to reuse a job an earlier attempt paid for:
        its points no longer count against what the account has left."""
        with self._lock:
            self.paid_before += points


def classic_chain(
    prompt: str,
    steps: list[ClassicStep],
    image_no: int,
    inpaint_prompt: str | None,
    inpaint_mask: Mask | MaskFormModel,
    retexture_prompt: str,
) -> list[ChainStep]:
    """The generate -> enhance -> inpaint -> retexture chain (or the chosen subset)."""
    wanted = [s for s in CLASSIC_STEPS if s in steps]
    chain: list[ChainStep] = []
    for name in wanted:
        carried = image_no if chain else 0
        if name == "diffusion":
            chain.append(ChainStep(action="diffusion", prompt=prompt))
        elif name == "enhance":
            chain.append(ChainStep(action="enhance", image_no=carried))
        elif name == "inpaint":
            chain.append(
                ChainStep(action="inpaint", image_no=carried, mask=as_mask(inpaint_mask),
                          prompt=inpaint_prompt)
            )  # fmt: skip
        else:
            chain.append(ChainStep(action="retexture", image_no=carried, prompt=retexture_prompt))
    return chain


def _current_flow_run() -> FlowRun | None:
    """The flow run the chain runs in; None for a direct ``flow.fn(...)`` call."""
    context = FlowRunContext.get()
    return context.flow_run if context is not None else None


def _in_a_run() -> bool:
    """Whether a flow or task run is current: artifacts belong to one (Prefect deprecates
    them outside), so a direct ``flow.fn(...)`` call makes none."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger, or this module's for a direct ``flow.fn(...)`` call (Prefect's
    run logger refuses to work outside a run)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def _step_identity(scope: str, planned: PlannedStep, parent: Job | None) -> tuple[str, str]:
    """The idempotency key and fingerprint of a step: its run scope, position, definition
    and parent job, never the literal request (a presigned URL differs on each try)."""
    definition = [planned.step.model_dump(mode="json"), parent.job_id if parent else None]
    fingerprint = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    basis = json.dumps([scope, f"step-{planned.index}", fingerprint])
    return hashlib.sha256(basis.encode()).hexdigest()[:40], fingerprint


def _image_url(settings: RunSettings, job: Job, stored: PersistedJob, image_no: int) -> str:
    """The previous step's image for a step that takes a URL: our S3 copy by default
    (Legnext's URLs expire), or Legnext's own URL when asked or when the presigned URL
    is too long for Legnext's 1024-character limit."""
    if settings.image_source == ImageSource.S3:
        url = presigned_url(settings.bucket, stored.files[image_no].key, 24 * 3600)
        if len(url) <= 1024:
            return url
        _run_logger().warning(
            "presigned URL of %s is %d characters, above Legnext's 1024: using Legnext's URL",
            stored.files[image_no].key, len(url),
        )  # fmt: skip
    return job.output_urls[image_no]


def _named(dispatched: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The task (the sync one behind an `async_dispatch`ed one: these flows are sync),
    named for what it does so the UI's graph reads like the chain.

    A shallow copy with its run name set, not ``with_options``: that builds the task
    anew, reading its function's source and hashing its code (about 0.5 ms a task run,
    three per step); the copy differs in nothing but the name."""
    sync_task: Task[..., Any] = (
        dispatched if isinstance(dispatched, Task) else cast(Any, dispatched).__wrapped__
    )
    named = copy.copy(sync_task)
    named.task_run_name = name
    return named


def chain_label(prompt: str | None, fallback: str) -> str:
    """A chain's name in task runs, artifacts and terminal lines: its prompt, shortened."""
    text = " ".join((prompt or fallback).split())
    return text if len(text) <= 40 else text[:39] + "…"


class _Progress:
    """Hands `StepProgress` to `STEP_LISTENERS`; costs nothing when nobody listens."""

    def __init__(self, chain: str, planned: PlannedStep) -> None:
        self.chain = chain
        self.planned = planned
        flow_run = _current_flow_run()
        self.flow_run_id = str(flow_run.id) if flow_run is not None else ""
        self._last_status = ""

    def __call__(self, phase: Any, job_id: str, detail: str) -> None:
        event = StepProgress(
            self.flow_run_id, self.chain, self.planned.index, self.planned.step.action,
            phase, job_id, detail,
        )  # fmt: skip
        for listener in list(STEP_LISTENERS):
            listener(event)

    def status(self, job: Job) -> None:
        if str(job.status) != self._last_status:
            self._last_status = str(job.status)
            self("status", job.job_id, self._last_status)


@dataclass(frozen=True)
class StepOutcome:
    """What `run_step` did.

    Attributes:
        job: the completed job.
        reused: the job an earlier attempt of the run paid for (no submit this time).
        cost: the points counted against the run's budget for it.
        stored: the outputs and sidecar in S3.
        duration_seconds: from submit (or reuse) to completion.
    """

    job: Job
    reused: bool
    cost: int
    stored: PersistedJob
    duration_seconds: float


def _dispatch(dispatched: Callable[..., Any], name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Run a task on the flow's task runner (threads, processes or Dask) and wait for it:
    only the task goes there, the step's bookkeeping stays in the flow's process."""
    named = cast(Any, _named(dispatched, name))
    if FlowRunContext.get() is None:  # a direct ``flow.fn(...)`` call: no task runner
        return named(*args, **kwargs)
    return named.submit(*args, **kwargs).result()


def _recorded_job(settings: RunSettings, ledger: JobLedger, key: str) -> Job | None:
    """The job an earlier attempt recorded under `key`, when it can be reused: a failed
    job released its points, so its step submits again (as `submit_once` would)."""
    record = ledger.get(key)
    if record is None or record.job_id is None:
        return None
    job = legnext_client(settings.credentials).get_job(record.job_id)  # a free read
    return None if job.is_failed else job


def _reserve(
    budget: PointBudget, cost: int, where: str, settings: RunSettings, ledger: JobLedger, key: str
) -> Job | None:
    """Count the step against the budget as a new submit. Only when that is refused is
    the ledger read here: a resumed step whose job is paid for already still fits (the
    submit finds such a job itself, so a step reads nothing in the usual case)."""
    try:
        budget.reserve(cost, where)
        return None
    except BudgetExceededError:
        recorded = _recorded_job(settings, ledger, key)
        if recorded is None:
            raise
    budget.reserve(cost, where, already_paid=True)
    return recorded


@contextmanager
def account_slot(limit: str = ACCOUNT_LIMIT, *, keep_for_next: bool = False) -> Iterator[None]:
    """Hold one slot of `limit` (``legnext-account``) on a short lease renewed in the
    background while it is held: a live step keeps its slot however long it waits, a
    killed one frees it about a minute later (`ACCOUNT_LEASE_SECONDS`). Two server
    round trips per chain; a slot freed in this process goes straight to a step of this
    process waiting for one, and a step with a next step in its chain parks it for
    that one (`keep_for_next`, `slots`)."""
    with slots.held(limit, ACCOUNT_LEASE_SECONDS, keep_for_next=keep_for_next):
        yield


def run_step(
    planned: PlannedStep,
    request: LegnextRequest,
    *,
    parent: Job | None,
    settings: RunSettings,
    budget: PointBudget,
    ledger: JobLedger,
    label: str,
    metadata: dict[str, Any],
    name_prefix: str = "",
    has_next: bool = False,
) -> StepOutcome:
    """One step, one way: reserve the budget and submit once (the submit reuses the job
    an earlier attempt paid for); wait; persist. Runs in the flow's process
    (so that one `PointBudget` sees every submit of the run); the submit, wait and
    persist tasks go to the flow's task runner, named for what they do after
    `name_prefix` (a batch's chain). Never tagged: Prefect asks its server for a
    concurrency slot of every tag of every task run (a round trip each, queued per
    process), so tags cost a batch seconds per step. Our decision."""
    target = planned.step.endpoint
    where = f"step {planned.index} ({target.name})"
    name = f"{name_prefix}{planned.index} {target.name}"
    cost = target.cost(request, parent.points if parent is not None else None)
    key, fingerprint = _step_identity(settings.scope, planned, parent)
    progress = _Progress(label, planned)
    started = time.monotonic()
    if settings.wait_mode == "callback":
        settled, was_reused = _settle_by_callback(
            planned, request, key, fingerprint, settings, budget, cost, where, ledger, name,
            progress,
        )  # fmt: skip
        return _persisted(
            planned, settled, was_reused, cost, started, settings, metadata, name, progress
        )
    recorded = _reserve(budget, cost, where, settings, ledger, key)
    with account_slot(keep_for_next=has_next):
        if recorded is not None:
            _run_logger().info(
                "%s: reusing job %s (idempotency key %s), nothing charged",
                target.name, recorded.job_id, key,
            )  # fmt: skip
            job, reused = recorded, True
        else:
            listening = settings.wait_mode == "listen"
            job, reused = _dispatch(
                submit_step, f"{name}: submit", settings.credentials,
                _with_receiver(request, settings, listening=True) if listening else request,
                idempotency_key=key, ledger=ledger, fingerprint=fingerprint,
            )  # fmt: skip
            if reused:
                budget.paid_before_by_now(cost)
        short = job.job_id[:SHORT_ID]
        progress("reused" if reused else "submitted", job.job_id, f"{job.points} points")
        # Set here, once: the wait task's queueing, slow reads and retries all count.
        deadline = time.time() + settings.max_wait_seconds
        if settings.wait_mode == "listen" and not job.is_finished:
            done: Job = _dispatch(
                wait_for_notice, f"{name}: wait {short}", settings.credentials, job,
                current_flow_run_id(), settings.max_wait_seconds,
                on_update=progress.status, deadline=deadline,
            )  # fmt: skip
        else:
            done = _dispatch(
                wait_for_job, f"{name}: wait {short}", settings.credentials, job,
                settings.max_wait_seconds, on_update=progress.status, deadline=deadline,
            )  # fmt: skip
    # A process or Dask worker calls its own copy of `progress`: say the end here.
    progress.status(done)
    return _persisted(planned, done, reused, cost, started, settings, metadata, name, progress)


def _persisted(
    planned: PlannedStep,
    done: Job,
    reused: bool,
    cost: int,
    started: float,
    settings: RunSettings,
    metadata: dict[str, Any],
    name: str,
    progress: _Progress,
) -> StepOutcome:
    """Persist a finished step's outputs (found in S3 already when `reused`)."""
    short = done.job_id[:SHORT_ID]
    duration = time.monotonic() - started
    stored: PersistedJob = _dispatch(
        persist_outputs, f"{name}: persist {short}", done, settings.bucket,
        settings.key_prefix, metadata=metadata, credentials=settings.credentials,
        max_file_bytes=settings.max_file_bytes, file_timeout=settings.file_timeout,
        # A job this step submitted has nothing stored yet: skip looking (our decision).
        check_existing=reused,
    )  # fmt: skip
    progress("persisted", done.job_id, stored.sidecar_uri.rsplit("/", 1)[0] + "/")
    return StepOutcome(
        job=done, reused=reused, cost=cost, stored=stored,
        duration_seconds=duration,
    )  # fmt: skip


def _with_receiver(
    request: LegnextRequest, settings: RunSettings, *, listening: bool = False
) -> LegnextRequest:
    """The request calling back to the receiver (the submit tags the URL with the
    step's key and run); `listening`: tagged so that the receiver knows the run waits
    in its process (no pause to resume)."""
    url = settings.credentials.callback_url
    if listening and url is not None:
        url = listening_url(url)
    return request.model_copy(update={"callback": url})


def _settle_by_callback(
    planned: PlannedStep,
    request: LegnextRequest,
    key: str,
    fingerprint: str,
    settings: RunSettings,
    budget: PointBudget,
    cost: int,
    where: str,
    ledger: JobLedger,
    name: str,
    progress: _Progress,
) -> tuple[Job, bool]:
    """A step in callback mode: its finished job and whether an earlier execution of
    the run submitted it; or `AwaitingCallbacks` while it runs.

    A job recorded under the step's key is never submitted again: delivered (the
    receiver or the sweeper put its task object on the run), it is the outcome;
    else the run waits for it again. Otherwise the step takes an account slot on a
    lease long enough for the job, submits with the receiver's URL tagged with the
    key, the run and the lease, and notes the wait for the sweeper. The lease goes
    with the job: the receiver or the sweeper releases it, never this process."""
    from prefect.client.orchestration import get_client

    flow_run_id = current_flow_run_id()
    record = ledger.get(key)
    if record is not None and record.job_id is not None:
        budget.reserve(cost, where, already_paid=True)
        delivered = DELIVERED.get(flow_run_id, record.job_id)
        if delivered is not None:
            progress("reused", delivered.job_id, f"{delivered.points} points")
            progress.status(delivered)
            return finished(delivered), True
        # Its wait note was kept when it was submitted.
        raise AwaitingCallbacks([Awaited(record.job_id, record.updated_at)])
    budget.reserve(cost, where)
    target = planned.step.endpoint
    scale = settings.credentials.poll_scale
    lease_seconds = job_leases.job_lease_seconds(target.task_type, scale)
    lease = job_leases.take(ACCOUNT_LIMIT, lease_seconds)
    try:
        job, reused = _dispatch(
            submit_step, f"{name}: submit", settings.credentials,
            _with_receiver(request, settings),
            idempotency_key=key, ledger=ledger, fingerprint=fingerprint,
            lease_id=str(lease) if lease is not None else None,
        )  # fmt: skip
    except BaseException:
        job_leases.release(lease)  # nothing was submitted under it
        raise
    if reused:
        # An earlier attempt's job (found by reconciliation): it holds its own slot.
        budget.paid_before_by_now(cost)
        job_leases.release(lease)
        lease = None
    progress("reused" if reused else "submitted", job.job_id, f"{job.points} points")
    if job.is_finished:
        return finished(job), reused
    with get_client(sync_client=True) as client:
        awaited = note_wait(client, job, lease, lease_seconds, scale, settings.credentials_block)
    raise AwaitingCallbacks([awaited])


def run_chain(
    plan: ChainPlan,
    settings: RunSettings,
    budget: PointBudget,
    label: str = "",
    ledger: JobLedger | None = None,
    name_prefix: str = "",
) -> ChainResult:
    """Run a checked chain in the flow's process: each step submits, waits and persists
    before the next."""
    logger = _run_logger()
    label = label or chain_label(plan.steps[0].step.prompt, plan.steps[0].step.action)
    ledger = ledger if ledger is not None else settings.ledger()
    results: list[StepResult] = []
    parent: Job | None = None
    previous: PlannedStep | None = None
    stored: PersistedJob | None = None
    steps = list(plan.steps)
    for position, planned in enumerate(steps):
        step = planned.step
        target = step.endpoint
        if parent is not None and previous is not None:
            # Draft-ness comes from our own request, never from an `enhance` key that
            # no vendor text shows in available_actions.
            check_parent(planned, parent, parent_draft=previous.draft)
        image_url = (
            _image_url(settings, parent, stored, step.image_no)
            if parent is not None
            and stored is not None
            and "img_url" in target.request.model_fields
            else None
        )
        request = build_request(
            step,
            parent_job_id=parent.job_id if parent is not None else None,
            parent_image_url=image_url,
        )
        key = _step_identity(settings.scope, planned, parent)[0]
        outcome = run_step(
            planned,
            request,
            parent=parent,
            settings=settings,
            budget=budget,
            ledger=ledger,
            label=label,
            name_prefix=name_prefix,
            has_next=planned is not plan.steps[-1],
            metadata={
                "step": planned.index,
                "action": target.name,
                "chain": label,
                "request": request.to_wire() | {"callback": None},
                "parent_job_id": parent.job_id if parent is not None else None,
                "image_no": step.image_no if parent is not None else None,
                "draft": planned.draft,
            },
        )
        done, stored = outcome.job, outcome.stored
        result = StepResult(
            index=planned.index,
            action=target.name,
            job_id=done.job_id,
            task_type=done.task_type,
            parent_job_id=parent.job_id if parent is not None else None,
            image_no=step.image_no if parent is not None else None,
            seed=done.output.seed if done.output else None,
            points=done.points,
            duration_seconds=round(outcome.duration_seconds, 3),
            s3_uris=stored.uris,
            prompts=done.output.prompts if done.output else None,
            grid_uri=stored.grid.uri if stored.grid else None,
            sidecar_uri=stored.sidecar_uri,
            files=stored.files,
        )
        following = steps[position + 1] if position + 1 < len(steps) else None
        if following is not None and settings.review.wants(target.name):
            choice = _reviewed(settings, label, planned, following, done, stored, key)
            if choice is not None:
                result.review = choice
                steps[position + 1] = _with_choice(following, choice)
        results.append(result)
        write_later(_step_artifact, settings, label, result, stored)
        logger.info(
            "step %d (%s) done: job %s, %d points, %.1fs",
            planned.index, target.name, done.job_id, done.points, outcome.duration_seconds,
        )  # fmt: skip
        parent, previous = done, planned
        if result.review is not None and result.review.stop:
            logger.info("stopping after step %d: %s", planned.index, result.review.describe())
            break
    return ChainResult(label=label, steps=results, total_points=sum(r.points for r in results))


def _reviewed(
    settings: RunSettings,
    label: str,
    planned: PlannedStep,
    following: PlannedStep,
    done: Job,
    stored: PersistedJob,
    key: str,
) -> ReviewChoice | None:
    """A person's choice of the image `following` works on (recorded in the step's
    sidecar), or None when there is nothing to choose (the next step takes no image
    number, or the parent allows one image only)."""
    stored_images = _presigned(settings, stored)
    images = [url for item, url in stored_images if item.content_type.startswith("image/")]
    allowed = image_choices(following, done, len(images), parent_draft=planned.draft)
    if len(allowed) < 2:
        _run_logger().info(
            "step %d (%s): no choice to review for %s (images %s)",
            planned.index, planned.step.action, following.step.action, allowed,
        )  # fmt: skip
        return None
    planned_image = following.step.image_no
    review = Review(
        key=review_key(key), label=label, index=planned.index, action=str(planned.step.action),
        job_id=done.job_id, next_action=str(following.step.action), thumbnails=images,
        allowed=allowed,
        default_image=planned_image if planned_image in allowed else allowed[0],
        default_stop=settings.review.default == "stop",
        takes_prompt=takes_prompt(following.step),
        timeout_seconds=settings.review.timeout_seconds,
    )  # fmt: skip
    choice = decide(review)
    annotate_sidecar(settings.bucket, stored.sidecar_uri, "review", choice.model_dump(mode="json"))
    _run_logger().info("step %d (%s) reviewed: %s", planned.index, review.action, choice.describe())
    return choice


def _with_choice(following: PlannedStep, choice: ReviewChoice) -> PlannedStep:
    """The next step, working on the chosen image (with the new prompt, if given)."""
    update: dict[str, Any] = {"image_no": choice.image_no}
    if choice.prompt:
        update["prompt"] = choice.prompt
    return following.model_copy(update={"step": following.step.model_copy(update=update)})


def _presigned(settings: RunSettings, stored: PersistedJob) -> list[tuple[PersistedFile, str]]:
    """Each stored output with a presigned URL of our copy (Legnext's URLs expire)."""
    return [
        (item, presigned_url(settings.bucket, item.key, PRESIGN_SECONDS)) for item in stored.files
    ]


def _step_artifact(
    settings: RunSettings, label: str, result: StepResult, stored: PersistedJob
) -> None:
    """A gallery of the step's outputs, linked through presigned URLs of our copies."""
    if not _in_a_run():
        return
    lines = [
        f"### {label}: step {result.index}, {result.action}",
        f"Job `{result.job_id}`, {result.points} points, {result.duration_seconds:.1f}s.",
        "",
    ]
    for item, url in _presigned(settings, stored):
        if item.content_type.startswith("image/"):
            lines.append(f"![output {item.index}]({url})")
        else:
            lines.append(f"- [output {item.index}]({url}) ({item.content_type}, {item.size} bytes)")
    lines.extend(f"- {prompt}" for prompt in result.prompts or [])
    if result.review is not None:
        lines.extend(["", f"Reviewed: {result.review.describe()}."])
    lines.append("")
    lines.append(f"Stored with its sidecar `{result.sidecar_uri}`.")
    create_markdown_artifact(
        markdown="\n".join(lines),
        description=f"{label}: {result.action} outputs (links valid 7 days)",
    )


def _summary_artifact(settings: RunSettings, chains: list[ChainResult], key: str) -> None:
    """One row per step: the chain's prompt, the job, its points and where its outputs are
    (the S3 prefix, and a presigned link to the grid or first output)."""
    if not _in_a_run():
        return
    rows = []
    for chain in chains:
        for step in chain.steps:
            first = step.files[0].key if step.files else None
            link_key = step.grid_uri.split("/", 3)[3] if step.grid_uri else first
            rows.append(
                {
                    "prompt": chain.label,
                    "step": step.index,
                    "action": step.action,
                    "job_id": step.job_id,
                    "points": step.points,
                    "seconds": step.duration_seconds,
                    "outputs": step.sidecar_uri.rsplit("/", 1)[0] + "/",
                    "link": presigned_url(settings.bucket, link_key, PRESIGN_SECONDS)
                    if link_key
                    else "",
                    "review": step.review.describe() if step.review is not None else "",
                }
            )
    labels = ", ".join(chain.label for chain in chains)
    create_table_artifact(
        key=key,
        table=rows,
        description=f"Legnext jobs of {labels}: points and S3 outputs (links valid 7 days)",
    )


def _prepare_run(
    chains: list[list[ChainStep]],
    credentials_block: str,
    storage_block: str,
    key_prefix: str,
    max_wait_seconds: float,
    max_points: int | None,
    image_source: ImageSource,
    idempotency_scope: str | None,
    wait_mode: WaitMode | None = None,
    review: ReviewSettings | None = None,
) -> tuple[list[ChainPlan], RunSettings, PointBudget]:
    """Check everything that can be checked before the first paid call."""
    plans = [plan_chain(chain) for chain in chains]
    credentials, credentials_source = resolve_credentials(credentials_block)
    mode = choose_wait_mode(wait_mode, credentials, _run_logger())
    bucket, bucket_source = resolve_bucket(storage_block)
    _run_logger().info(
        "Legnext credentials from %s; outputs to s3://%s from %s",
        credentials_source, bucket.bucket_name, bucket_source,
    )  # fmt: skip
    balance = _sync(get_balance(credentials))
    budget = PointBudget(max_points, balance.available_points)
    flow_run = _current_flow_run()
    # A run resumed after a suspend (callback mode) has paid for its earlier steps.
    resumed = flow_run is not None and bool(flow_run.empirical_policy.pause_keys)
    first_attempt = (
        idempotency_scope is None and (flow_run is None or flow_run.run_count <= 1) and not resumed
    )
    budget.check_plan(sum(p.points for p in plans), first_attempt=first_attempt)
    ensure_account_limit(credentials.concurrent_jobs)
    settings = RunSettings(
        credentials=credentials,
        bucket=bucket,
        key_prefix=key_prefix,
        max_wait_seconds=max_wait_seconds,
        image_source=image_source,
        # A direct call has no run to scope to: it is a run of its own.
        scope=idempotency_scope
        or (flow_run_scope(flow_run) if flow_run is not None else f"direct-call:{uuid4()}"),
        wait_mode=mode,
        credentials_block=credentials_block,
        review=review or ReviewSettings(),
    )
    return plans, settings, budget


# -- the flows ------------------------------------------------------------------------

PromptParam = Annotated[str, Field(min_length=1, max_length=8192)]
ImageNoParam = Annotated[int, Field(ge=0, le=3)]
WaitParam = Annotated[float, Field(gt=0, le=24 * 3600)]
PointsParam = Annotated[int, Field(ge=0)] | None
# At least one step: an empty chain is refused anyway, now when the run is created.
ClassicSteps = Annotated[list[ClassicStep], Field(min_length=1)]

# Parameters the flows share, with the title and description the UI form shows.
ImageNoArg = Annotated[
    ImageNoParam,
    _about("Image carried forward", "Which image (0-3) of each grid the next step works on."),
]
InpaintPromptArg = Annotated[
    PromptParam | None, _about("Inpaint prompt", "What to paint inside the mask.")
]
InpaintMaskArg = Annotated[
    MaskForm,
    _about(
        "Inpaint mask",
        "Where to repaint: polygons (areas), a black-and-white mask URL, a rectangle "
        "(kind rectangle: fractions of the image; kind pixel_rectangle: pixels) or a named "
        "region (kind region: center, left_half, right_half, top_half, bottom_half).",
    ),
]
RetexturePromptArg = Annotated[
    PromptParam, _about("Retexture prompt", "The new texture or material.")
]
RetextureSourceArg = Annotated[
    ImageSource,
    _about(
        "Retexture source",
        "Feed retexture a presigned URL of our S3 copy (s3) or Legnext's temporary URL.",
    ),
]
CredentialsBlockArg = Annotated[
    str,
    _about(
        "Credentials block",
        "Name of a saved LegnextCredentials block; only the default, when not saved, "
        "falls back to LEGNEXT_API_KEY.",
    ),
]
StorageBlockArg = Annotated[
    str,
    _about(
        "Storage block",
        "Name of a saved S3Bucket block; only the default, when not saved, "
        "falls back to LEGNEXT_S3_BUCKET.",
    ),
]
KeyPrefixArg = Annotated[str, _about("Key prefix", "Prefix of the S3 keys of the outputs.")]
MaxWaitArg = Annotated[
    WaitParam,
    _about("Max wait (s)", "Give up on a job that has not finished after this long."),
]
MaxPointsArg = Annotated[
    PointsParam,
    _about("Max points", "Stop before a submit that would spend more than this in total."),
]
IdempotencyScopeArg = Annotated[
    str | None,
    _about(
        "Idempotency scope",
        "Runs with the same scope reuse each other's jobs; default: this flow run.",
    ),
]
WaitModeArg = Annotated[
    WaitMode | None,
    _about(
        "Wait mode",
        "callback: suspend the run while Legnext works (needs the receiver's URL on the "
        "credentials block; a run outside a deployment waits in its process for the "
        "receiver's notice); poll: a task polls each job; default: callback when the "
        "credentials block names a receiver.",
    ),
]
ReviewStepsArg = Annotated[
    list[ClassicStep],
    _about(
        "Review after",
        "Steps after which a person picks the image the next step works on (a form "
        "with the images as thumbnails; the run waits, suspended from a deployment).",
    ),
]
ReviewTimeoutArg = Annotated[
    Annotated[float, Field(gt=0, le=7 * 24 * 3600)],
    _about(
        "Review timeout (s)",
        "How long a reviewed step waits for a person; then the review default applies.",
    ),
]
ReviewDefaultArg = Annotated[
    ReviewDefault,
    _about(
        "Review default",
        "When nobody reviews in time: carry the planned image (carry) or stop the chain.",
    ),
]
DEFAULT_INPAINT_PROMPT = "a small red sailboat"
DEFAULT_RETEXTURE_PROMPT = "as a watercolour painting"
DEFAULT_MASK = default_mask()


@flow(name="legnext-chain", log_prints=False)
def legnext_chain(
    prompt: Annotated[PromptParam, _about("Prompt", "What to generate (Midjourney prompt).")],
    steps: Annotated[
        ClassicSteps,
        _about("Steps", "Which of diffusion, enhance, inpaint, retexture to run, in that order."),
    ] = list(CLASSIC_STEPS),  # noqa: B006  (never mutated; the UI form shows it)
    image_no: ImageNoArg = 0,
    inpaint_prompt: InpaintPromptArg = DEFAULT_INPAINT_PROMPT,
    inpaint_mask: InpaintMaskArg = DEFAULT_MASK,
    retexture_prompt: RetexturePromptArg = DEFAULT_RETEXTURE_PROMPT,
    retexture_source: RetextureSourceArg = ImageSource.S3,
    credentials_block: CredentialsBlockArg = DEFAULT_CREDENTIALS_BLOCK,
    storage_block: StorageBlockArg = DEFAULT_STORAGE_BLOCK,
    key_prefix: KeyPrefixArg = "legnext",
    max_wait_seconds: MaxWaitArg = 900.0,
    max_points: MaxPointsArg = None,
    idempotency_scope: IdempotencyScopeArg = None,
    wait_mode: WaitModeArg = None,
    review: ReviewStepsArg = [],  # noqa: B006  (never mutated; the UI form shows it)
    review_timeout_seconds: ReviewTimeoutArg = 3600.0,
    review_default: ReviewDefaultArg = "carry",
) -> ChainResult:
    """Generate, enhance, inpaint and retexture, persisting every step to S3."""
    chain = classic_chain(prompt, steps, image_no, inpaint_prompt, inpaint_mask, retexture_prompt)
    return legnext_pipeline.fn(
        chain,
        image_source=retexture_source,
        credentials_block=credentials_block,
        storage_block=storage_block,
        key_prefix=key_prefix,
        max_wait_seconds=max_wait_seconds,
        max_points=max_points,
        idempotency_scope=idempotency_scope,
        wait_mode=wait_mode,
        review=[Action(a) for a in review],
        review_timeout_seconds=review_timeout_seconds,
        review_default=review_default,
    )


@flow(name="legnext-pipeline", log_prints=False)
def legnext_pipeline(
    steps: Annotated[
        Annotated[list[ChainStep], Field(min_length=1)],
        _about("Steps", "The chain: each step works on the previous step's output."),
    ],
    image_source: Annotated[
        ImageSource,
        _about(
            "Image source",
            "For steps that take an image URL: our S3 copy (s3) or Legnext's temporary URL.",
        ),
    ] = ImageSource.S3,
    credentials_block: CredentialsBlockArg = DEFAULT_CREDENTIALS_BLOCK,
    storage_block: StorageBlockArg = DEFAULT_STORAGE_BLOCK,
    key_prefix: KeyPrefixArg = "legnext",
    max_wait_seconds: MaxWaitArg = 900.0,
    max_points: MaxPointsArg = None,
    idempotency_scope: IdempotencyScopeArg = None,
    wait_mode: WaitModeArg = None,
    review: Annotated[
        list[Action],
        _about(
            "Review after",
            "Actions after which a person picks the image the next step works on.",
        ),
    ] = [],  # noqa: B006  (never mutated; the UI form shows it)
    review_timeout_seconds: ReviewTimeoutArg = 3600.0,
    review_default: ReviewDefaultArg = "carry",
) -> ChainResult:
    """Run any valid chain of Legnext steps, e.g. diffusion -> upscale -> pan ->
    remove_background, checked against each parent before any point is spent."""
    reviewing = ReviewSettings(
        actions=[str(a) for a in review], timeout_seconds=review_timeout_seconds,
        default=review_default,
    )  # fmt: skip
    plans, settings, budget = _prepare_run(
        [steps], credentials_block, storage_block, key_prefix, max_wait_seconds, max_points,
        image_source, idempotency_scope, wait_mode, reviewing,
    )  # fmt: skip
    first = steps[0]  # plan_chain refused an empty chain
    label = chain_label(first.prompt, first.action)
    with background_writes(), _slots_released():
        result = _until_done(lambda: run_chain(plans[0], settings, budget, label), settings, budget)
        write_later(_summary_artifact, settings, [result], "legnext-chain-summary")
    return result


@contextmanager
def _slots_released() -> Iterator[None]:
    """A run's end gives back any account slot a step kept for a next step that never
    came (a chain that stopped early)."""
    try:
        yield
    finally:
        slots.release_parked()


def _until_done(run: Callable[[], T], settings: RunSettings, budget: PointBudget) -> T:
    """The chains' result; in callback mode, the run suspends while they wait; a
    review pauses (or suspends) the run until a person chooses, and the chains run
    again with the choice."""

    def chains() -> T:
        budget.restart()  # every execution of the chains reserves its steps afresh
        return run()

    def attempt() -> T:
        if settings.wait_mode == "callback":
            # Runs the chains again after a delivery that came before the suspend.
            return run_until_waiting(chains, settings.max_wait_seconds)
        return chains()

    return until_reviewed(attempt)


def _run_chains(
    plans: list[ChainPlan],
    labels: list[str],
    settings: RunSettings,
    budget: PointBudget,
    on_done: Callable[[int], None],
) -> list[ChainResult]:
    """Chains side by side in threads of the flow's process, whatever the task runner:
    their submits all pass the one `budget` (a copy per chain, as a process or Dask
    task would get, would let each chain spend the whole budget)."""
    ledger = settings.ledger()  # one for the run; boto3 clients are thread-safe
    with ThreadPoolExecutor(
        max_workers=min(len(plans), CHAIN_THREADS), thread_name_prefix="legnext-chain"
    ) as pool:
        futures = []
        for i, (plan, label) in enumerate(zip(plans, labels, strict=True)):
            scoped = settings.model_copy(update={"scope": f"{settings.scope}/chain-{i}"})
            prefix = f"chain {i + 1} · "
            # Each thread gets its own copy of the flow run's context (task submission
            # and logging need it; one context cannot be entered by two threads).
            run = copy_context().run
            futures.append(pool.submit(run, run_chain, plan, scoped, budget, label, ledger, prefix))
        try:
            outcomes: list[ChainResult | AwaitingCallbacks] = []
            reviews: list[AwaitingReview] = []
            done = 0
            for future in futures:
                try:
                    outcomes.append(future.result())
                except AwaitingCallbacks as waiting:  # callback mode: the chain waits
                    outcomes.append(waiting)
                    continue
                except AwaitingReview as waiting:  # a person picks its next image
                    reviews.append(waiting)
                    continue
                done += 1
                on_done(done)
        except BaseException:
            # Chains not started yet have paid nothing: drop them, let the others finish.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    # Jobs first: a run suspended for a review renews no job's slot (the sweeper does
    # that only for runs waiting for a job). Our decision.
    results = gather(outcomes)
    if reviews:
        raise reviews[0]
    return results


@flow(
    name="legnext-batch",
    log_prints=False,
    # Threads wait on the account limit, so more threads than slots is fine.
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=CHAIN_THREADS)),
)
def legnext_batch(
    prompts: Annotated[list[PromptParam], _about("Prompts", "One chain per prompt.")],
    steps: Annotated[
        ClassicSteps,
        _about("Steps", "Which of diffusion, enhance, inpaint, retexture each chain runs."),
    ] = list(CLASSIC_STEPS),  # noqa: B006  (never mutated; the UI form shows it)
    image_no: ImageNoArg = 0,
    inpaint_prompt: InpaintPromptArg = DEFAULT_INPAINT_PROMPT,
    inpaint_mask: InpaintMaskArg = DEFAULT_MASK,
    retexture_prompt: RetexturePromptArg = DEFAULT_RETEXTURE_PROMPT,
    retexture_source: RetextureSourceArg = ImageSource.S3,
    credentials_block: CredentialsBlockArg = DEFAULT_CREDENTIALS_BLOCK,
    storage_block: StorageBlockArg = DEFAULT_STORAGE_BLOCK,
    key_prefix: KeyPrefixArg = "legnext",
    max_wait_seconds: MaxWaitArg = 900.0,
    max_points: MaxPointsArg = None,
    idempotency_scope: IdempotencyScopeArg = None,
    wait_mode: WaitModeArg = None,
    review: ReviewStepsArg = [],  # noqa: B006  (never mutated; the UI form shows it)
    review_timeout_seconds: ReviewTimeoutArg = 3600.0,
    review_default: ReviewDefaultArg = "carry",
) -> BatchResult:
    """Many chains side by side; the ``legnext-account`` limit keeps the account busy
    but never over-queued, whatever the number of prompts, runs and workers."""
    chains = [
        classic_chain(p, steps, image_no, inpaint_prompt, inpaint_mask, retexture_prompt)
        for p in prompts
    ]
    reviewing = ReviewSettings(
        actions=list(review), timeout_seconds=review_timeout_seconds, default=review_default
    )
    plans, settings, budget = _prepare_run(
        chains, credentials_block, storage_block, key_prefix, max_wait_seconds, max_points,
        retexture_source, idempotency_scope, wait_mode, reviewing,
    )  # fmt: skip
    progress = (
        _sync(create_progress_artifact(progress=0.0, description="Legnext batch: chains done"))
        if _in_a_run()
        else None
    )
    labels = [chain_label(p, f"chain {i + 1}") for i, p in enumerate(prompts)]

    def chain_done(done: int) -> None:
        if progress is not None:
            update_progress_artifact(progress, progress=100.0 * done / len(plans))
        for listener in list(BATCH_LISTENERS):
            listener(done, len(plans))

    with background_writes(), _slots_released():
        results = _until_done(
            lambda: _run_chains(plans, labels, settings, budget, chain_done), settings, budget
        )
        write_later(_summary_artifact, settings, results, "legnext-batch-summary")
    return BatchResult(chains=results, total_points=sum(c.total_points for c in results))
