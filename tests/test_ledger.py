"""The idempotency ledger on its own (no Prefect): concurrent submits of one key,
reconciliation that will not guess, failed jobs, and both storages."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect_aws import S3Bucket

from prefect_legnext import Job, OutcomeUnknownError
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.orchestration.ledger import (
    JobLedger,
    LedgerRecord,
    LocalLedger,
    S3Ledger,
    reconcile,
    submit_once,
)
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import legnext_client_for


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
