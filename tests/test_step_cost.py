"""What a chain step costs (issue 12, target 2), counted from the outside where it can be:
HTTP clients built per process, S3 requests at a real S3 endpoint (moto behind a
counting proxy), account-slot round trips to a real Prefect server, and an upload
damaged on the way still refused. Simulator over HTTP, moto over HTTP, the session's
Prefect test server; no timing is asserted."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import Any

import pytest

from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration import slots
from prefect_legnext.orchestration.clients import DOWNLOAD_CLIENTS, LEGNEXT_CLIENTS
from prefect_legnext.orchestration.errors import StorageUnavailableError
from prefect_legnext.orchestration.flows import legnext_pipeline
from prefect_legnext.orchestration.plans import ChainStep
from prefect_legnext.orchestration.provisioning import ACCOUNT_LEASE_SECONDS
from prefect_legnext.orchestration.storage import persist_job
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from prefect_legnext.testing import legnext_client_for
from prefect_support import save_blocks
from s3_faults import FaultPlan, S3FaultProxy, bucket_through

pytestmark = pytest.mark.usefixtures("prefect_server")


def _methods(plan: FaultPlan) -> Counter[str]:
    return Counter(line.split(" ", 1)[0] for line in plan.seen)


def _completed(sim: LegnextSimulator) -> Job:
    with legnext_client_for(sim) as client:
        return client.wait_for_job(client.diffusion(text="a harbour at noon"))


def test_one_legnext_client_per_credentials_and_process(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    sim = legnext_simulator_factory(time_scale=0.002)
    names = save_blocks(local_s3_server.create_bucket(), sim)
    steps = [
        ChainStep(action="diffusion", prompt="one client"),
        ChainStep(action="upscale", options={"type": 1}),
    ]
    legnext_before, downloads_before = LEGNEXT_CLIENTS.built, DOWNLOAD_CLIENTS.built
    legnext_pipeline(steps, **names)
    # Balance, ledger read, submit, wait and persist of both steps: one client between them.
    assert LEGNEXT_CLIENTS.built - legnext_before == 1
    assert DOWNLOAD_CLIENTS.built - downloads_before <= 1  # the process's first persist
    legnext_pipeline(steps, **names)
    assert LEGNEXT_CLIENTS.built - legnext_before == 1  # the second run builds none
    other = legnext_simulator_factory(time_scale=0.002)
    legnext_pipeline(steps[:1], **save_blocks(local_s3_server.create_bucket(), other))
    assert LEGNEXT_CLIENTS.built - legnext_before == 2  # other credentials, their own


def test_a_new_step_costs_its_ledger_writes_and_one_put_per_file(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    counter = FaultPlan("reset", times=0)  # breaks nothing: it counts S3 requests
    proxy = S3FaultProxy(local_s3_server.endpoint_url, counter)
    try:
        result = legnext_pipeline(
            [ChainStep(action="diffusion", prompt="counted")],
            **save_blocks(
                bucket_through(proxy, local_s3_server.create_bucket()),
                legnext_simulator_factory(time_scale=0.002),
            ),
        )
    finally:
        proxy.listener.close()
    files = len(result.last.files) + (1 if result.last.grid_uri else 0)
    methods, plan = _methods(counter), counter
    # No ledger read (the conditional create is the existence check); two ledger
    # writes (write-ahead record, job record: no claim of a recorded job); one PUT per
    # file, proven by its answer (no HEAD); the sidecar.
    assert methods == Counter({"PUT": 2 + files + 1}), plan.seen
    assert not [line for line in plan.seen if "/_jobs/" in line]
    assert files == 5  # 4 images and the grid


def test_persisting_a_new_job_reads_nothing_and_verifies_each_upload_by_its_answer(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    job = _completed(legnext_simulator)
    plan = FaultPlan("reset", times=0)
    direct = local_s3_server.create_bucket()
    with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
        stored = persist_job(job, bucket_through(proxy, direct), "new", check_existing=False)
    assert _methods(plan) == Counter({"PUT": len(job.output_urls) + 2})  # files, grid, sidecar
    s3 = direct.credentials.get_s3_client()
    for item in stored.files:
        body = s3.get_object(Bucket=direct.bucket_name, Key=item.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == item.sha256


def test_an_upload_damaged_on_the_way_is_refused_and_removed(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    job = _completed(legnext_simulator)
    plan = FaultPlan("flip", times=1, method="PUT", path="/damaged/")
    with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
        bucket = bucket_through(proxy, local_s3_server.create_bucket())
        with pytest.raises(StorageUnavailableError, match="other bytes than were sent"):
            persist_job(job, bucket, "damaged", check_existing=False)
        assert plan.broken == 1
        s3 = bucket.credentials.get_s3_client()
        listed = s3.list_objects_v2(Bucket=bucket.bucket_name, Prefix="damaged/")
        assert listed.get("KeyCount", 0) == 0  # nothing left that claims our hash
        stored = persist_job(job, bucket, "damaged", check_existing=False)  # the retry
        for item in stored.files:
            body = s3.get_object(Bucket=bucket.bucket_name, Key=item.key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == item.sha256


def _active_slots(limit: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(limit).active_slots)


def test_a_slot_costs_two_round_trips_and_passes_to_a_waiter_in_the_process() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    limit = "step-cost-slot-test"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=1))
    before = dict(slots.ROUND_TRIPS.counts)
    with slots.held(limit, ACCOUNT_LEASE_SECONDS):
        assert _active_slots(limit) == 1
    trips = {k: v - before.get(k, 0) for k, v in slots.ROUND_TRIPS.counts.items()}
    assert trips == {"increment": 1, "decrement": 1, "renew": 0} or trips == {
        "increment": 1, "decrement": 1
    }  # fmt: skip
    assert _active_slots(limit) == 0

    # The first holder hands its slot to a step of the process that waits for it: the
    # waiter's refused request is the only extra round trip, and one release is sent.
    first_holds, waiter_holds = threading.Event(), threading.Event()
    release_first = threading.Event()

    def first() -> None:
        with slots.held(limit, ACCOUNT_LEASE_SECONDS):
            first_holds.set()
            release_first.wait(120)

    def waiter() -> None:
        first_holds.wait(120)
        with slots.held(limit, ACCOUNT_LEASE_SECONDS):
            waiter_holds.set()

    before = dict(slots.ROUND_TRIPS.counts)
    threads = [threading.Thread(target=first), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    first_holds.wait(120)
    while not any(limit == lim.name and lim.waiters for lim in list(slots._limits.values())):
        threading.Event().wait(0.05)  # until the waiter was refused and waits in line
    assert not waiter_holds.is_set()
    release_first.set()
    for thread in threads:
        thread.join(120)
    trips = {k: v - before.get(k, 0) for k, v in slots.ROUND_TRIPS.counts.items()}
    assert waiter_holds.is_set()
    assert trips.get("decrement") == 1  # the hand-over sent nothing
    assert trips.get("increment", 0) >= 2  # the first's, and at least one refused
    assert _active_slots(limit) == 0


def test_a_chain_keeps_its_slot_from_one_step_to_the_next(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    """Three steps, one slot: taken once, parked for the next step twice (no round
    trip), given back once; nothing left taken when the run ends."""
    from prefect_legnext.orchestration.provisioning import ACCOUNT_LIMIT

    sim = legnext_simulator_factory(time_scale=0.002)
    names = save_blocks(local_s3_server.create_bucket(), sim)
    steps = [
        ChainStep(action="diffusion", prompt="one slot for the chain"),
        ChainStep(action="upscale", options={"type": 1}),
        ChainStep(action="upscale", options={"type": 1}, image_no=0),
    ]
    legnext_pipeline(steps[:2], **names)  # creates the account limit
    before, parked = dict(slots.ROUND_TRIPS.counts), slots.HANDOVERS.counts.get("parked", 0)
    legnext_pipeline(steps, **names)
    trips = {k: v - before.get(k, 0) for k, v in slots.ROUND_TRIPS.counts.items()}
    assert trips.get("increment") == 1 and trips.get("decrement") == 1, trips
    assert slots.HANDOVERS.counts.get("parked", 0) - parked == 2
    assert _active_slots(ACCOUNT_LIMIT) == 0


def test_a_parked_slot_nobody_takes_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    limit = "step-cost-parked-test"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit, limit=2))
    monkeypatch.setattr(slots, "PARK_SECONDS", 0.5)
    with slots.held(limit, ACCOUNT_LEASE_SECONDS, keep_for_next=True):
        pass
    assert _active_slots(limit) == 1  # parked for a next step
    for _ in range(600):  # its timer gives it back (a loaded machine: up to a minute)
        if _active_slots(limit) == 0:
            break
        threading.Event().wait(0.1)
    assert _active_slots(limit) == 0
    # A step that fails keeps nothing; the end of a run gives back what is parked.
    with pytest.raises(RuntimeError), slots.held(limit, ACCOUNT_LEASE_SECONDS, keep_for_next=True):
        raise RuntimeError("the step failed")
    assert _active_slots(limit) == 0
    monkeypatch.setattr(slots, "PARK_SECONDS", 600.0)
    with slots.held(limit, ACCOUNT_LEASE_SECONDS, keep_for_next=True):
        pass
    assert _active_slots(limit) == 1
    slots.release_parked()
    assert _active_slots(limit) == 0
