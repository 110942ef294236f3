"""Prefect tasks against the simulator, moto's S3 server and a Prefect test server:
generated per-endpoint tasks, retry policy, and "never pay twice"."""

from __future__ import annotations

import inspect
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect_aws import S3Bucket

from prefect_legnext import (
    AuthenticationError,
    BadRequestError,
    ContentRejectedError,
    InsufficientPointsError,
    InvalidRequestError,
    Job,
    LegnextClient,
    OutcomeUnknownError,
    OutputExpiredError,
    TransportError,
)
from prefect_legnext.core.endpoints import CREATE_ENDPOINTS
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.core.retry import NO_RETRY
from prefect_legnext.orchestration import tasks as legnext_tasks
from prefect_legnext.orchestration.ledger import (
    IN_PROGRESS_GRACE_SECONDS,
    LedgerRecord,
    LocalLedger,
    S3Ledger,
    body_sha256,
)
from prefect_legnext.orchestration.storage import PersistedJob
from prefect_legnext.orchestration.tasks import (
    ENDPOINT_TASKS,
    get_balance,
    persist_outputs,
    submit_request,
    submit_task_for,
    wait_for_job,
)
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import legnext_client_for
from prefect_support import credentials_for

pytestmark = pytest.mark.usefixtures("prefect_server")


def task_run(task_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_task_run(task_run_id)


NO_DELAY = {"retry_delay_seconds": 0, "retry_jitter_factor": None}


def no_delay(task_obj: Any) -> Any:
    """The same task without backoff delays, so retry tests run fast."""
    return task_obj.with_options(**NO_DELAY)


def test_a_task_pair_for_every_endpoint() -> None:
    assert set(ENDPOINT_TASKS) == {e.name for e in CREATE_ENDPOINTS}
    for endpoint in CREATE_ENDPOINTS:
        sync_task = getattr(legnext_tasks, f"submit_{endpoint.name}")
        async_task = getattr(legnext_tasks, f"asubmit_{endpoint.name}")
        assert sync_task.aio is async_task
        assert async_task.name == f"legnext-{endpoint.slug}"
        params = inspect.signature(async_task.fn).parameters
        for field in endpoint.request.model_fields:
            assert params[field].kind is inspect.Parameter.KEYWORD_ONLY
        assert {"credentials", "idempotency_key", "ledger", "on_unknown"} <= set(params)
        assert submit_task_for(endpoint.slug) is sync_task


def test_chain_of_tasks_in_a_flow(
    legnext_simulator: LegnextSimulator, legnext_s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    credentials = credentials_for(legnext_simulator)
    submit_diffusion = legnext_tasks.submit_diffusion
    submit_upscale = legnext_tasks.submit_upscale

    @flow
    def generate_and_upscale() -> tuple[Job, PersistedJob]:
        grid = wait_for_job(
            credentials, submit_diffusion(credentials, text="a fox", ledger=tmp_path)
        )
        single = wait_for_job(
            credentials,
            submit_upscale(credentials, job_id=grid.job_id, image_no=3, type=1, ledger=tmp_path),
        )
        return single, persist_outputs(single, legnext_s3_bucket, "flows")

    single, stored = generate_and_upscale()
    assert single.is_completed and single.points == 160
    assert len(stored.files) == 1 and stored.files[0].key.startswith(f"flows/{single.job_id}/")
    stats = legnext_simulator.stats()
    assert stats["jobs_total"] == 2 and stats["duplicate_creates"] == 0
    assert stats["points"]["charged"] == 240


async def test_async_tasks_in_an_async_flow(
    legnext_simulator: LegnextSimulator, tmp_path: Path
) -> None:
    credentials = credentials_for(legnext_simulator)

    @flow
    async def shorten_it() -> Job:
        job = await legnext_tasks.asubmit_shorten(
            credentials, prompt="a long prompt to shorten --ar 3:2", ledger=tmp_path
        )
        return await legnext_tasks.wait_for_job(credentials, job)  # dispatches to async

    done = await shorten_it()
    assert done.is_completed and done.output.prompts
    balance = await legnext_tasks.aget_balance(credentials)
    assert balance.available_points == legnext_simulator.config.points - 20


@pytest.mark.parametrize(
    ("setup", "call", "error"),
    [
        ("none", {"text": ""}, InvalidRequestError),
        ("none", {"text": "a forbidden prompt"}, ContentRejectedError),
        ("wrong-key", {"text": "ok"}, AuthenticationError),
        ("poor", {"text": "too expensive"}, InsufficientPointsError),
        ("none", {"text": "ok", "callback": "ftp://not-http"}, InvalidRequestError),
    ],
)
def test_refusals_are_not_retried(
    legnext_simulator_factory: Any, tmp_path: Path, setup: str, call: dict[str, Any],
    error: type[Exception],
) -> None:  # fmt: skip
    sim = legnext_simulator_factory(points=10 if setup == "poor" else 100_000)
    credentials = credentials_for(sim)
    if setup == "wrong-key":
        credentials = credentials.model_copy(update={"api_key": "not-the-key"})
    submit = no_delay(legnext_tasks.submit_diffusion.__wrapped__)

    @flow
    def refused() -> tuple[Any, Any]:
        state = submit(credentials, ledger=tmp_path, return_state=True, **call)
        return state.state_details.task_run_id, state.result(raise_on_failure=False)

    task_run_id, outcome = refused()
    assert isinstance(outcome, error)
    assert task_run(task_run_id).run_count == 1  # Prefect did not retry it
    posts = sim.stats()["requests"].get("POST diffusion", 0)
    assert posts == (0 if error is InvalidRequestError else 1)  # no retry, no second POST
    assert list(tmp_path.glob("*.json")) == []  # refused: nothing recorded as owed


def test_transient_read_errors_are_retried_by_prefect(
    legnext_simulator: LegnextSimulator, tmp_path: Path
) -> None:
    sim = legnext_simulator
    credentials = credentials_for(sim)
    calls = {"n": 0}
    original = type(credentials).get_client

    def flaky_client(self: Any) -> Any:
        # The first task attempt meets an unreachable address: a TransportError.
        calls["n"] += 1
        if calls["n"] == 1:
            return LegnextClient("x", base_url="http://127.0.0.1:9", retry=NO_RETRY)
        return original(self)

    balance_task = no_delay(get_balance.__wrapped__)

    @flow
    def read_balance() -> Any:
        return balance_task(credentials)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(credentials), "get_client", flaky_client)
        result = read_balance()
    assert result.available_points == sim.config.points
    assert calls["n"] == 2


# -- never pay twice ---------------------------------------------------------------------


class FlakyLedger(LocalLedger):
    """A ledger whose first reconciliation read fails with a network error: the task
    fails after its POST was accepted, and Prefect retries it."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.failures_left = 1

    def records_since(self, since: datetime) -> list[LedgerRecord]:
        if self.failures_left:
            self.failures_left -= 1
            raise TransportError("ledger briefly unreachable")
        return super().records_since(since)


def test_retried_submit_task_creates_no_new_job(
    legnext_simulator_factory: Any, tmp_path: Path
) -> None:
    # Slow enough that the job is still active when reconciled.
    sim = legnext_simulator_factory(time_scale=0.02)
    sim.set_faults({"diffusion": {"drop_after_accept_rate": 1.0}})
    credentials = credentials_for(sim)
    ledger = FlakyLedger(tmp_path)
    submit = no_delay(submit_request.__wrapped__)

    @flow
    def lost_answer() -> Job:
        return submit(credentials, DiffusionRequest(text="only once"), ledger=ledger)

    job = lost_answer()
    stats = sim.stats()
    assert stats["requests"]["POST diffusion"] == 1
    assert stats["jobs_total"] == 1 and stats["duplicate_creates"] == 0
    (created,) = sim.jobs()
    assert job.job_id == created["job_id"]
    assert ledger.failures_left == 0  # the first attempt failed, the retry reconciled


def test_flow_retry_reuses_the_submitted_job(
    legnext_simulator: LegnextSimulator, legnext_s3_bucket: S3Bucket
) -> None:
    sim = legnext_simulator
    credentials = credentials_for(sim)
    attempts = {"n": 0}

    @flow(retries=2, retry_delay_seconds=0)
    def generate_then_fail_once() -> Job:
        job = submit_request(credentials, DiffusionRequest(text="paid once"),
                             ledger=legnext_s3_bucket)  # fmt: skip
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("the worker died after submitting")
        return wait_for_job(credentials, job)

    job = generate_then_fail_once()
    assert attempts["n"] == 2 and job.is_completed
    stats = sim.stats()
    assert stats["jobs_total"] == 1 and stats["duplicate_creates"] == 0
    # The ledger lives in the bucket, beside the outputs.
    records = S3Ledger(legnext_s3_bucket).records_since(datetime(2000, 1, 1, tzinfo=UTC))
    assert [r.job_id for r in records] == [job.job_id]


def test_same_idempotency_key_reuses_across_flow_runs(
    legnext_simulator: LegnextSimulator, tmp_path: Path
) -> None:
    credentials = credentials_for(legnext_simulator)

    @flow
    def nightly(key: str) -> Job:
        return legnext_tasks.submit_diffusion(
            credentials, text="the nightly render", idempotency_key=key, ledger=tmp_path
        )

    first, second = nightly("render-2026-11-22"), nightly("render-2026-11-22")
    third = nightly("render-2026-11-23")
    assert first.job_id == second.job_id != third.job_id
    assert legnext_simulator.stats()["jobs_total"] == 2


def test_key_reused_for_another_request_is_refused(
    legnext_simulator: LegnextSimulator, tmp_path: Path
) -> None:
    credentials = credentials_for(legnext_simulator)

    @flow
    def two_prompts() -> None:
        legnext_tasks.submit_diffusion(credentials, text="one", idempotency_key="k1",
                                       ledger=tmp_path)  # fmt: skip
        legnext_tasks.submit_diffusion(credentials, text="two", idempotency_key="k1",
                                       ledger=tmp_path)  # fmt: skip

    with pytest.raises(ValueError, match="k1 was used for a different diffusion request"):
        two_prompts()
    assert legnext_simulator.stats()["jobs_total"] == 1


def test_worker_death_between_post_and_record_is_reconciled(
    legnext_simulator_factory: Any, tmp_path: Path
) -> None:
    sim = legnext_simulator_factory(time_scale=0.02)
    request = DiffusionRequest(text="crashed mid-submit")
    ledger = LocalLedger(tmp_path)
    # What a worker leaves when it dies after its POST went out: the write-ahead record,
    # older than the grace given to a submit that may still be in progress elsewhere.
    now = datetime.now(UTC) - timedelta(seconds=IN_PROGRESS_GRACE_SECONDS + 1)
    from prefect_legnext.core.endpoints import endpoint

    ledger.put(
        LedgerRecord(key="crash-1", endpoint="diffusion", task_type="diffusion",
                     body_sha256=body_sha256(endpoint("diffusion"), request),
                     state="submitting", submitted_at=now, updated_at=now)
    )  # fmt: skip
    with legnext_client_for(sim) as client:
        orphan = client.create(request)  # the POST that did reach Legnext (just now)

    @flow
    def resume() -> Job:
        return submit_request(credentials_for(sim), request, idempotency_key="crash-1",
                              ledger=ledger)  # fmt: skip

    assert resume().job_id == orphan.job_id
    assert sim.stats()["requests"]["POST diffusion"] == 1  # no new POST
    assert ledger.get("crash-1").job_id == orphan.job_id  # type: ignore[union-attr]


def test_ambiguous_lost_submit_fails_clearly_without_paying_again(
    legnext_simulator_factory: Any, tmp_path: Path
) -> None:
    # Another submit of the type died during its create 90 s ago (its record never got
    # an answer): the job our lost create made could be its, so it is not adopted.
    sim = legnext_simulator_factory(time_scale=0.05)
    credentials = credentials_for(sim)
    with legnext_client_for(sim) as client:
        client.diffusion(text="a job of the account, made before ours")
    died = datetime.now(UTC) - timedelta(seconds=90)
    other = dict(key="died-mid-create", endpoint="diffusion", task_type="diffusion",
                 body_sha256="0" * 64, state="submitting", submitted_at=died,
                 updated_at=died)  # fmt: skip
    LocalLedger(tmp_path).put(LedgerRecord.model_validate(other))
    sim.set_faults({"diffusion": {"drop_after_accept_rate": 1.0}})
    submit = no_delay(submit_request.__wrapped__).with_options(retries=1)

    @flow
    def lost() -> tuple[Any, Any]:
        state = submit(credentials, DiffusionRequest(text="mine"), ledger=tmp_path,
                       return_state=True)  # fmt: skip
        return state.state_details.task_run_id, state.result(raise_on_failure=False)

    task_run_id, outcome = lost()
    assert isinstance(outcome, OutcomeUnknownError)
    assert "outcome is unknown" in str(outcome)
    assert task_run(task_run_id).run_count == 2  # retried once, and reconciled, not re-sent
    stats = sim.stats()
    assert stats["requests"]["POST diffusion"] == 2  # the other job, and ours once
    assert stats["jobs_total"] == 2 and stats["duplicate_creates"] == 0


def test_bad_request_from_legnext_deletes_the_record(
    legnext_simulator: LegnextSimulator, tmp_path: Path
) -> None:
    credentials = credentials_for(legnext_simulator)

    @flow
    def enhance_plain() -> None:
        with legnext_client_for(legnext_simulator) as client:
            plain = client.wait_for_job(client.diffusion(text="not a draft"))
        legnext_tasks.submit_enhance(credentials, job_id=plain.job_id, image_no=0,
                                     ledger=tmp_path)  # fmt: skip

    with pytest.raises(BadRequestError, match="draft"):
        enhance_plain()
    assert list(tmp_path.glob("*.json")) == []


def test_a_retry_after_beyond_the_clients_backoff_holds_the_task_as_long_as_asked(
    legnext_simulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from prefect_legnext.core.errors import RateLimitedError
    from prefect_legnext.simulator.config import Faults

    # Retry-After 45 s: above the client's longest backoff (30 s), so the client must not
    # retry early; the task sits it out before failing, and Prefect's retry comes after.
    sim = legnext_simulator_factory(
        faults={"balance": Faults(rate_limit_rate=1.0, retry_after=45.0)}
    )
    waits: list[float] = []
    monkeypatch.setattr(legnext_tasks, "time", SimpleNamespace(sleep=waits.append))
    balance_task = get_balance.__wrapped__.with_options(retries=0)

    @flow
    def read_balance() -> Any:
        return balance_task(credentials_for(sim))

    with pytest.raises(RateLimitedError) as caught:
        read_balance()
    assert caught.value.retry_after == 45.0
    assert waits == [45.0]
    assert sim.stats()["requests"]["GET balance"] == 1  # no early retry by the client


def test_a_failed_job_is_reported_with_no_points_spent(
    legnext_simulator_factory: Any, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    from prefect_legnext.core.errors import JobFailedError
    from prefect_legnext.simulator.config import Faults

    sim = legnext_simulator_factory(time_scale=0.002, faults={"*": Faults(job_failure_rate=1.0)})
    credentials = credentials_for(sim)
    wait_once = wait_for_job.__wrapped__.with_options(retries=0)

    @flow
    def doomed() -> Job:
        job = legnext_tasks.submit_diffusion(credentials, text="a fox", ledger=tmp_path)
        return wait_once(credentials, job)

    with pytest.raises(JobFailedError) as caught:
        doomed()
    failed = caught.value.job
    assert failed is not None and failed.meta.usage.frozen == 80
    assert failed.points == 0  # Legnext releases what it froze: nothing was spent
    EventsWorker.drain_all()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60  # the server stores events asynchronously
    with get_client(sync_client=True) as client:
        while not events and time.monotonic() < deadline:
            time.sleep(0.5)
            events = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"prefix": ["legnext.job.failed"]},
                        "resource": {"id_prefix": [f"legnext.job.{failed.job_id}"]},
                    },
                    "limit": 5,
                },
            ).json()["events"]
    assert [e["payload"]["points"] for e in events] == [0]
    assert sim.stats()["points"]["charged"] == 0


def test_an_expired_output_is_read_again_once_then_named_and_not_retried(
    legnext_simulator_factory: Any, legnext_s3_bucket: S3Bucket
) -> None:
    sim = legnext_simulator_factory(output_ttl=0.2)
    credentials = credentials_for(sim)
    with legnext_client_for(sim) as client:
        job = client.wait_for_job(client.diffusion(text="gone by the time we persist"))
    time.sleep(0.3)  # the simulator's URLs expire; re-reading the job gives the same ones
    persist = no_delay(persist_outputs.__wrapped__)

    @flow
    def late(with_credentials: bool) -> tuple[Any, Any]:
        state = persist(
            job, legnext_s3_bucket, credentials=credentials if with_credentials else None,
            return_state=True,
        )  # fmt: skip
        return state.state_details.task_run_id, state.result(raise_on_failure=False)

    for with_credentials, reads in ((False, 0), (True, 1)):
        before = sim.stats()["requests"].get("GET job", 0)
        task_run_id, outcome = late(with_credentials)
        assert isinstance(outcome, OutputExpiredError)
        assert f"output 0 of job {job.job_id} ({job.output_urls[0].rsplit('/', 1)[1]})" in str(
            outcome
        )
        assert sim.stats()["requests"].get("GET job", 0) - before == reads
        assert task_run(task_run_id).run_count == 1  # Prefect did not retry it
