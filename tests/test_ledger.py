"""The idempotency ledger on its own (no Prefect): concurrent submits of one key,
reconciliation that will not guess, failed jobs, and both storages."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect_aws import S3Bucket

from prefect_legnext import Job, OutcomeUnknownError
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.orchestration import ledger as ledger_module
from prefect_legnext.orchestration.errors import BucketNotFoundError, StorageUnavailableError
from prefect_legnext.orchestration.ledger import (
    JobLedger,
    LedgerRecord,
    LocalLedger,
    S3Ledger,
    reconcile,
    submit_once,
)
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from prefect_legnext.testing import legnext_client_for
from s3_faults import Fault, FaultPlan, S3FaultProxy, bucket_through


@pytest.fixture(params=["local", "s3"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> JobLedger:
    if request.param == "local":
        return LocalLedger(tmp_path)
    bucket: S3Bucket = request.getfixturevalue("legnext_s3_bucket")
    return S3Ledger(bucket)


def _record(key: str, **changes: Any) -> LedgerRecord:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "key": key, "endpoint": "diffusion", "task_type": "diffusion", "body_sha256": "x",
        "state": "submitting", "submitted_at": now, "updated_at": now,
    }  # fmt: skip
    return LedgerRecord(**{**fields, **changes})


def test_create_is_exclusive(ledger: JobLedger) -> None:
    assert ledger.create(_record("k1")) is True
    assert ledger.create(_record("k1", job_id="00000000-0000-4000-8000-000000000001")) is False
    kept = ledger.get("k1")
    assert kept is not None and kept.job_id is None  # the first record stands
    ledger.delete("k1")
    assert ledger.get("k1") is None


def test_concurrent_submits_of_one_key_pay_once(
    ledger: JobLedger, legnext_simulator_factory: Any
) -> None:
    # Slow enough that the answer to the first POST takes a while.
    sim = legnext_simulator_factory()
    sim.set_faults({"diffusion": {"latency": 0.5}})
    request = DiffusionRequest(text="two workers, one key")
    results: list[tuple[Job, bool]] = []

    def submit() -> None:
        with legnext_client_for(sim) as client:
            results.append(submit_once(client, ledger, request, "shared-key"))

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 3
    assert len({job.job_id for job, _ in results}) == 1
    assert sorted(reused for _, reused in results) == [False, True, True]
    stats = sim.stats()
    assert stats["requests"]["POST diffusion"] == 1 and stats["duplicate_creates"] == 0


def test_reconcile_waits_while_another_submit_is_unresolved(
    ledger: JobLedger, legnext_simulator_factory: Any
) -> None:
    sim = legnext_simulator_factory(time_scale=0.05)
    with legnext_client_for(sim) as client:
        theirs = client.create(DiffusionRequest(text="another worker's job"))
        # Another worker POSTed (its job is `theirs`) but has not recorded the id yet;
        # our own lost submit created nothing. The one candidate may be theirs.
        ledger.put(_record("theirs"))
        ours = _record("ours", state="unknown")
        ledger.put(ours)
        assert reconcile(client, ledger, ours) is None
        # Once theirs is recorded, it is claimed: still nothing to adopt.
        ledger.put(_record("theirs", state="submitted", job_id=theirs.job_id))
        assert reconcile(client, ledger, ours) is None
    assert sim.stats()["jobs_total"] == 1


def test_a_failed_job_is_submitted_again(
    ledger: JobLedger, legnext_simulator: LegnextSimulator
) -> None:
    sim = legnext_simulator
    request = DiffusionRequest(text="fails the first time")
    sim.set_faults({"diffusion": {"job_failure_rate": 1.0}})
    with legnext_client_for(sim) as client:
        first, _ = submit_once(client, ledger, request, "retry-after-failure")
        failed = client.get_job(first.job_id)
        while not failed.is_finished:
            failed = client.get_job(first.job_id)
        assert failed.is_failed  # its points were released
        sim.set_faults({})
        second, reused = submit_once(client, ledger, request, "retry-after-failure")
        third, reused_again = submit_once(client, ledger, request, "retry-after-failure")
    assert second.job_id != first.job_id and reused is False
    assert third.job_id == second.job_id and reused_again is True
    assert sim.stats()["jobs_total"] == 2


def test_a_stale_submitting_record_is_reconciled_not_waited_for(
    ledger: JobLedger, legnext_simulator_factory: Any
) -> None:
    sim = legnext_simulator_factory(time_scale=0.05)
    request = DiffusionRequest(text="the worker died")
    with legnext_client_for(sim) as client:
        from prefect_legnext.core.endpoints import endpoint
        from prefect_legnext.orchestration.ledger import body_sha256

        long_ago = datetime.now(UTC) - timedelta(minutes=1, seconds=5)
        ledger.put(
            _record("dead", body_sha256=body_sha256(endpoint("diffusion"), request),
                    submitted_at=long_ago, updated_at=long_ago)
        )  # fmt: skip
        # Nothing was created by the dead worker, and nothing else runs: no guess.
        with pytest.raises(OutcomeUnknownError, match="could not be reconciled"):
            submit_once(client, ledger, request, "dead")
        assert sim.stats()["jobs_total"] == 0
        job, reused = submit_once(client, ledger, request, "dead", on_unknown="resubmit")
    assert reused is False and sim.stats()["jobs_total"] == 1
    assert ledger.get("dead").job_id == job.job_id  # type: ignore[union-attr]


def test_a_lost_answer_to_the_first_write_is_taken_as_ours(
    legnext_simulator: LegnextSimulator,
    local_s3_server: LocalS3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # S3 stores the write-ahead record but its answer is lost; botocore sends the PUT
    # again and gets 412 (If-None-Match: *) for the record it wrote itself.
    bucket = local_s3_server.create_bucket()
    plan = FaultPlan("lose", times=1, method="PUT", path="/_ledger/")

    def no_wait(seconds: float) -> None:
        raise AssertionError(f"the submit waited {seconds} s on its own record")

    monkeypatch.setattr(ledger_module, "time", SimpleNamespace(sleep=no_wait))
    with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
        ledger = S3Ledger(bucket_through(proxy, bucket))
        with legnext_client_for(legnext_simulator) as client:
            job, reused = submit_once(client, ledger, DiffusionRequest(text="lost"), "lost-answer")
    assert plan.broken == 1, plan.seen
    assert [line.split()[0] for line in plan.seen].count("PUT") >= 3  # create, retry, job id
    assert reused is False
    stats = legnext_simulator.stats()
    assert stats["requests"]["POST diffusion"] == 1 and stats["jobs_total"] == 1
    stored = S3Ledger(bucket).get("lost-answer")
    assert stored is not None and stored.state == "submitted" and stored.job_id == job.job_id


def test_another_writers_record_is_not_taken_for_ours(legnext_s3_bucket: S3Bucket) -> None:
    ledger = S3Ledger(legnext_s3_bucket)
    assert ledger.create(_record("mine", writer="a" * 32)) is True
    assert ledger.create(_record("mine", writer="b" * 32)) is False
    assert ledger.create(_record("mine", writer=None)) is False
    # Records written before writer tokens read, and are nobody's.
    s3 = legnext_s3_bucket.credentials.get_s3_client()
    old = _record("old").model_dump(mode="json", exclude={"writer"})
    s3.put_object(Bucket=legnext_s3_bucket.bucket_name, Key=f"{ledger.prefix}/old.json",
                  Body=json.dumps(old).encode())  # fmt: skip
    assert (record := ledger.get("old")) is not None and record.writer is None
    assert ledger.create(_record("old", writer="a" * 32)) is False


@pytest.mark.parametrize("fault", ["reset", "cut"])
def test_every_ledger_call_treats_a_broken_connection_as_transient(
    fault: Fault, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.create_bucket()
    S3Ledger(bucket).put(_record("there"))
    calls: dict[str, Callable[[S3Ledger], object]] = {
        "create": lambda ledger: ledger.create(_record("new", writer="c" * 32)),
        "put": lambda ledger: ledger.put(_record("there")),
        "get": lambda ledger: ledger.get("there"),
        "delete": lambda ledger: ledger.delete("there"),
        "records_since": lambda ledger: ledger.records_since(datetime.now(UTC) - timedelta(1)),
    }
    if fault == "cut":  # a truncated body: the calls whose answer has one
        calls = {name: calls[name] for name in ("get", "records_since")}
    for name, call in calls.items():
        # Every connection broken, more times than botocore retries.
        plan = FaultPlan(fault, times=1000)
        with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
            ledger = S3Ledger(bucket_through(proxy, bucket, total_attempts=2))
            with pytest.raises(StorageUnavailableError):
                call(ledger)
        assert plan.broken >= 1, name


def test_a_missing_ledger_bucket_stays_permanent(local_s3_server: LocalS3Server) -> None:
    ledger = S3Ledger(local_s3_server.bucket_block("no-such-ledger-bucket"))
    with pytest.raises(BucketNotFoundError):
        ledger.create(_record("k"))
