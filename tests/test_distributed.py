"""Scale-out on Prefect's own machinery: a real ``prefect server start`` (SQLite), the
deployments of ``deployments/prefect.yaml`` on a process work pool, two
``prefect worker start`` processes, the simulator (cap 6) and moto's S3 server; and
the batch flow on a local Dask cluster. The ``legnext-account`` limit must keep every
run on every worker inside the account's cap. Every process is stopped at the end,
also on failure.

``make test`` runs 4 chains on 2 slots (more chains at once than slots: the limit is
what bounds Legnext's load); the 12-chain run on 6 slots behind docs/scaling.md's
figures is marked ``fleet`` and runs with ``make test-full``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.fleet import BIN, ROOT, Processes, running_server
from prefect_aws import S3Bucket

from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server

pytestmark = pytest.mark.distributed

TIME_SCALE = 0.02


@pytest.fixture(scope="module")
def prefect_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """``prefect server start`` (SQLite) on a free loopback port, with its own home.
    SQLite serialises writes: fleet_env lets a busy moment wait instead of answering
    503 (docs/scaling.md: use PostgreSQL for real fleets)."""
    with running_server(tmp_path_factory.mktemp("prefect-home")) as processes:
        yield processes


def _api_settings(cluster: Processes) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: cluster.env["PREFECT_API_URL"]})


def _check_form(schema: dict[str, Any]) -> None:
    for name, spec in schema["properties"].items():
        assert spec.get("title") and spec["title"] != name, name
        assert spec.get("description", "").endswith("."), name
        assert name in schema.get("required", []) or "default" in spec, name


def _stored_outputs(bucket: S3Bucket, prefix: str, job_ids: set[str]) -> int:
    """Check every job's sidecar and files in S3 (hashes recomputed); count the files."""
    s3 = bucket.credentials.get_s3_client()
    files = 0
    for job_id in job_ids:
        key = bucket._resolve_path(f"{prefix}/{job_id}/job.json")
        sidecar = json.loads(s3.get_object(Bucket=bucket.bucket_name, Key=key)["Body"].read())
        for item in sidecar["files"]:
            body = s3.get_object(Bucket=bucket.bucket_name, Key=item["key"])["Body"].read()
            assert hashlib.sha256(body).hexdigest() == item["sha256"]
            files += 1
    return files


def _record_figures(
    stats: dict[str, Any], chains: int, elapsed: float, task_runs: int, bucket: S3Bucket
) -> None:
    """With LEGNEXT_FIGURES=path, write what this run measured (docs/scaling.md)."""
    target = os.environ.get("LEGNEXT_FIGURES")
    if not target:
        return
    s3 = bucket.credentials.get_s3_client()
    objects = s3.list_objects_v2(Bucket=bucket.bucket_name).get("Contents", [])
    jobs = stats["jobs_total"]
    figures = {
        "chain_runs": chains,
        "time_scale": TIME_SCALE,
        "wall_seconds": round(elapsed, 1),
        "jobs": jobs,
        "peak_in_flight": stats["peak_in_flight"],
        "peak_running": stats["peak_running"],
        "job_polls_per_job": round(stats["requests"]["GET job"] / jobs, 2),
        "output_downloads_per_job": round(stats["requests"]["GET file"] / jobs, 2),
        "account_reads": stats["requests"].get("GET active_tasks", 0)
        + stats["requests"].get("GET balance", 0),
        "task_runs_per_chain": round(task_runs / chains, 1),
        "s3_objects_per_job": round(len(objects) / jobs, 2),
        "s3_bytes_per_job": sum(o["Size"] for o in objects) // jobs,
    }
    Path(target).write_text(json.dumps(figures, indent=2) + "\n")


@pytest.mark.usefixtures("killed_holder")  # its lease runs out while the chains run
@pytest.mark.parametrize(
    ("chains", "slots", "runs_per_worker"),
    [
        pytest.param(4, 2, 2, marks=pytest.mark.timeout(600), id="4-chains"),
        pytest.param(12, 6, 4, marks=[pytest.mark.fleet, pytest.mark.timeout(900)], id="12-chains"),
    ],
)
def test_chain_runs_on_two_workers_share_the_account_limit(
    prefect_cluster: Processes,
    legnext_simulator_factory: Any,
    local_s3_server: LocalS3Server,
    chains: int,
    slots: int,
    runs_per_worker: int,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    sim: LegnextSimulator = legnext_simulator_factory(time_scale=TIME_SCALE, concurrency=6)
    bucket = local_s3_server.create_bucket()
    cluster = prefect_cluster
    prefect_cli = str(BIN / "prefect")
    try:
        out = cluster.run(str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", str(slots))
        assert f"legnext-account: {slots} slots" in out and "work pool legnext-process" in out
        with _api_settings(cluster):
            LegnextCredentials(
                api_key=sim.api_key, base_url=sim.base_url, poll_scale=TIME_SCALE
            ).save("legnext", overwrite=True)
            bucket.save("legnext-outputs", overwrite=True)
        cluster.run(prefect_cli, "--no-prompt", "deploy", "--all", cwd=ROOT / "deployments")
        # 2 x runs_per_worker flow runs at once: more chains than the slots (the
        # simulator's cap stays 6), so the legnext-account limit, not the number of runs
        # or Legnext, is what bounds Legnext's load.
        for number in (1, 2):
            cluster.start(
                f"worker-{number}", prefect_cli, "worker", "start", "--pool", "legnext-process",
                "--name", f"worker-{number}", "--limit", str(runs_per_worker),
            )  # fmt: skip

        with _api_settings(cluster), get_client(sync_client=True) as client:
            deployments = {
                name: client.read_deployment_by_name(f"{name}/{name}")
                for name in ("legnext-chain", "legnext-batch", "legnext-pipeline")
            }
            for deployment in deployments.values():
                _check_form(deployment.parameter_openapi_schema)
                assert deployment.work_pool_name == "legnext-process"
            chain = deployments["legnext-chain"]
            assert chain.parameter_openapi_schema["properties"]["steps"]["items"]["enum"] == [
                "diffusion", "enhance", "inpaint", "retexture",
            ]  # fmt: skip
            assert [s.active for s in chain.schedules] == [False]  # the example schedule
            started = time.monotonic()
            runs = [
                client.create_flow_run_from_deployment(
                    chain.id, parameters={"prompt": f"a lighthouse, variant {i}"}
                )
                for i in range(chains)
            ]
            deadline = time.monotonic() + 420
            while True:
                states = [client.read_flow_run(run.id).state for run in runs]
                if all(state is not None and state.is_final() for state in states):
                    break
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(2)
            elapsed = time.monotonic() - started
            names = [state.name if state else None for state in states]
            assert names == ["Completed"] * chains, cluster.logs()
            workers = {client.read_flow_run(run.id).work_pool_name for run in runs}
            assert workers == {"legnext-process"}
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs]))
            )

        stats = sim.stats()
        assert stats["jobs_total"] == chains * 4
        assert stats["jobs_by_status"] == {"completed": chains * 4}
        assert stats["duplicate_creates"] == 0
        assert stats["peak_in_flight"] <= slots, stats["peak_in_flight"]
        assert stats["points"]["charged"] == chains * (40 + 80 + 120 + 120)
        job_ids = {job["job_id"] for job in sim.jobs()}
        assert _stored_outputs(bucket, "legnext/daily", job_ids) == chains * 4 * 4
        _record_figures(stats, chains, elapsed, len(task_runs), bucket)
    finally:
        # Workers go before the server; the fixture stops the server after the module.
        for name, process in cluster.running:
            if name.startswith("worker") and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)


def test_batch_on_a_dask_cluster_under_the_account_limit(
    prefect_server: None, legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    from prefect.client.orchestration import get_client
    from prefect_dask import DaskTaskRunner

    from prefect_legnext.orchestration.flows import legnext_batch
    from prefect_legnext.orchestration.provisioning import ACCOUNT_LIMIT, upsert_account_limit
    from prefect_support import credentials_for

    sim = legnext_simulator_factory(time_scale=TIME_SCALE, concurrency=6)
    credentials_for(sim).save("legnext-dask", overwrite=True)
    bucket = local_s3_server.create_bucket()
    bucket.save("outputs-dask", overwrite=True)
    upsert_account_limit(2)  # tighter than the account: the limit, not Legnext, must bound it
    try:
        # One worker process (each costs ~10 s of CPU to start and import here): the
        # slots are taken in the flow's chain threads, the tasks run in that process.
        cluster = {"n_workers": 1, "threads_per_worker": 4, "dashboard_address": None}
        runner = DaskTaskRunner(cluster_kwargs=cluster)
        result = legnext_batch.with_options(task_runner=runner)(
            prompts=[f"a dask heron {i}" for i in range(4)],
            steps=["diffusion", "enhance"],
            credentials_block="legnext-dask",
            storage_block="outputs-dask",
        )
    finally:
        upsert_account_limit(6)
    assert len(result.chains) == 4
    stats = sim.stats()
    assert stats["jobs_total"] == 8 and stats["duplicate_creates"] == 0
    assert stats["peak_in_flight"] <= 2, stats["peak_in_flight"]
    job_ids = {step.job_id for chain in result.chains for step in chain.steps}
    assert _stored_outputs(bucket, "legnext", job_ids) == 8 * 4
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(ACCOUNT_LIMIT).limit == 6


HOLD_SLOT = """
import sys, time
from prefect_legnext.orchestration.flows import account_slot
with account_slot(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(3600)
"""


def _active_slots(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def _wait_for_slots(name: str, wanted: int, within: float, cluster: Processes) -> None:
    """Until `name` has `wanted` active slots; fails after `within` seconds."""
    started = time.monotonic()
    while _active_slots(name) != wanted:
        assert time.monotonic() - started < within, cluster.logs()
        time.sleep(1)


class KilledHolder:
    """Two processes held slots of `name` (limit 2); `doomed` was SIGKILLed at
    `killed_at`. A thread reads the limit every second from then on and notes when
    its active slots first fell to 1 (`freed_at`), so that a test that starts later
    still knows when the slot was freed."""

    def __init__(self, name: str, api_url: str, live: subprocess.Popen[bytes]) -> None:
        self.name, self.api_url, self.live = name, api_url, live
        self.killed_at = time.monotonic()
        self.freed_at: float | None = None
        self.freed = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        url = f"{self.api_url}/v2/concurrency_limits/{self.name}"
        with httpx.Client(timeout=10) as http:
            while not self.stopped.wait(1.0):
                try:
                    active = http.get(url).json()["active_slots"]
                except (httpx.HTTPError, ValueError, KeyError):
                    continue  # a busy server: read again
                if active == 1:
                    self.freed_at = time.monotonic()
                    self.freed.set()
                    return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


LEASE_LIMIT = "lease-test"
REPOSSESSOR_SECONDS = 15.0  # the server's default loop (not changed by the fixture)


@pytest.fixture(scope="module")
def killed_holder(prefect_cluster: Processes) -> Iterator[KilledHolder]:
    """Two holders of a `LEASE_LIMIT` slot, one SIGKILLed once both hold theirs.
    Module-scoped and requested by the chain test too, so that the lease (60 s, the
    shortest Prefect's server accepts) runs out while the chains run instead of in a
    wait of its own."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    cluster = prefect_cluster
    python = str(BIN / "python")
    with _api_settings(cluster), get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=LEASE_LIMIT, limit=2)
        )
    doomed = cluster.start("holder-killed", python, "-c", HOLD_SLOT, LEASE_LIMIT)
    live = cluster.start("holder-live", python, "-c", HOLD_SLOT, LEASE_LIMIT)
    holder = None
    try:
        with _api_settings(cluster):
            _wait_for_slots(LEASE_LIMIT, 2, 180, cluster)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        holder = KilledHolder(LEASE_LIMIT, cluster.env["PREFECT_API_URL"], live)
        yield holder
    finally:
        if holder is not None:
            holder.stop()
        for process in (doomed, live):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_a_killed_holders_slot_frees_after_the_lease_and_a_live_one_keeps_it(
    prefect_cluster: Processes, killed_holder: KilledHolder
) -> None:
    """Issue 11, defect 7: a step's slot is leased for ACCOUNT_LEASE_SECONDS and renewed
    while held. A SIGKILLed holder (no release) frees its slot once the lease runs out and
    the server's repossessor has run; a live holder keeps its slot past the lease."""
    from prefect_legnext.orchestration.provisioning import ACCOUNT_LEASE_SECONDS

    cluster, holder = prefect_cluster, killed_holder
    # A generous bound for a busy machine, still far below the old 300 s lease.
    frees_within = ACCOUNT_LEASE_SECONDS + REPOSSESSOR_SECONDS + 90
    holder.freed.wait(max(0.0, holder.killed_at + frees_within - time.monotonic()))
    assert holder.freed_at is not None, cluster.logs()
    assert holder.freed_at - holder.killed_at < frees_within
    # Past the live holder's first lease and a repossessor pass: renewed, kept.
    time.sleep(
        max(0.0, holder.killed_at + ACCOUNT_LEASE_SECONDS + 2 * REPOSSESSOR_SECONDS
            - time.monotonic())
    )  # fmt: skip
    assert holder.live.poll() is None
    with _api_settings(cluster):
        assert _active_slots(holder.name) == 1
