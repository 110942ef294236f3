"""Scale-out on Prefect's own machinery: a real ``prefect server start`` (SQLite), the
deployments of ``deployments/prefect.yaml`` on a process work pool, two
``prefect worker start`` processes, the simulator (cap 6) and moto's S3 server; and
the batch flow on a local Dask cluster. The ``legnext-account`` limit must keep every
run on every worker inside the account's cap. Every process is stopped at the end,
also on failure."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect_aws import S3Bucket

from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHAIN_RUNS = 12
TIME_SCALE = 0.02


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Processes:
    """Background processes in their own process groups, each logging to a file."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(args), cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.running.append((name, process))
        return process

    def run(self, *args: str, cwd: Path = ROOT) -> str:
        result = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for _, process in self.running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def wait_for_api(processes: Processes, api_url: str, timeout: float = 180) -> None:
    """Wait until the Prefect server at `api_url` answers /health (~20 s here, more when
    the machine is busy); fail with the processes' logs if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.5)


@pytest.fixture(scope="module")
def prefect_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """``prefect server start`` on a free loopback port, with its own home."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEGNEXT_"))},
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # SQLite serialises writes: on 2 cores, let a busy moment wait instead of 503.
        # (docs/scaling.md: use PostgreSQL for real fleets.)
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "60",
        "PREFECT_CLIENT_MAX_RETRIES": "10",
    }
    processes = Processes(home, env)
    try:
        processes.start("server", str(BIN / "prefect"), "server", "start", "--host",
                        "127.0.0.1", "--port", str(port))  # fmt: skip
        wait_for_api(processes, env["PREFECT_API_URL"])
        yield processes
    finally:
        processes.stop_all()


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
    stats: dict[str, Any], elapsed: float, task_runs: int, bucket: S3Bucket
) -> None:
    """With LEGNEXT_FIGURES=path, write what this run measured (docs/scaling.md)."""
    target = os.environ.get("LEGNEXT_FIGURES")
    if not target:
        return
    s3 = bucket.credentials.get_s3_client()
    objects = s3.list_objects_v2(Bucket=bucket.bucket_name).get("Contents", [])
    jobs = stats["jobs_total"]
    figures = {
        "chain_runs": CHAIN_RUNS,
        "time_scale": TIME_SCALE,
        "wall_seconds": round(elapsed, 1),
        "jobs": jobs,
        "peak_in_flight": stats["peak_in_flight"],
        "peak_running": stats["peak_running"],
        "job_polls_per_job": round(stats["requests"]["GET job"] / jobs, 2),
        "output_downloads_per_job": round(stats["requests"]["GET file"] / jobs, 2),
        "account_reads": stats["requests"].get("GET active_tasks", 0)
        + stats["requests"].get("GET balance", 0),
        "task_runs_per_chain": round(task_runs / CHAIN_RUNS, 1),
        "s3_objects_per_job": round(len(objects) / jobs, 2),
        "s3_bytes_per_job": sum(o["Size"] for o in objects) // jobs,
    }
    Path(target).write_text(json.dumps(figures, indent=2) + "\n")


def test_twelve_chain_runs_on_two_workers_share_the_account_limit(
    prefect_cluster: Processes,
    legnext_simulator_factory: Any,
    local_s3_server: LocalS3Server,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    sim: LegnextSimulator = legnext_simulator_factory(time_scale=TIME_SCALE, concurrency=6)
    bucket = local_s3_server.create_bucket()
    cluster = prefect_cluster
    prefect_cli = str(BIN / "prefect")
    try:
        out = cluster.run(str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", "6")
        assert "legnext-account: 6 slots" in out and "work pool legnext-process" in out
        with _api_settings(cluster):
            LegnextCredentials(
                api_key=sim.api_key, base_url=sim.base_url, poll_scale=TIME_SCALE
            ).save("legnext", overwrite=True)
            bucket.save("legnext-outputs", overwrite=True)
        cluster.run(prefect_cli, "--no-prompt", "deploy", "--all", cwd=ROOT / "deployments")
        # 2 x 4 flow runs at once: more chains than the account's 6 slots, so the
        # legnext-account limit, not the number of runs, is what bounds Legnext's load.
        for number in (1, 2):
            cluster.start(
                f"worker-{number}", prefect_cli, "worker", "start", "--pool", "legnext-process",
                "--name", f"worker-{number}", "--limit", "4",
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
                for i in range(CHAIN_RUNS)
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
            assert names == ["Completed"] * CHAIN_RUNS, cluster.logs()
            workers = {client.read_flow_run(run.id).work_pool_name for run in runs}
            assert workers == {"legnext-process"}
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs]))
            )

        stats = sim.stats()
        assert stats["jobs_total"] == CHAIN_RUNS * 4
        assert stats["jobs_by_status"] == {"completed": CHAIN_RUNS * 4}
        assert stats["duplicate_creates"] == 0
        assert stats["peak_in_flight"] <= 6, stats["peak_in_flight"]
        assert stats["points"]["charged"] == CHAIN_RUNS * (40 + 80 + 120 + 120)
        job_ids = {job["job_id"] for job in sim.jobs()}
        assert _stored_outputs(bucket, "legnext/daily", job_ids) == CHAIN_RUNS * 4 * 4
        _record_figures(stats, elapsed, len(task_runs), bucket)
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
        cluster = {"n_workers": 2, "threads_per_worker": 2, "dashboard_address": None}
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


def _wait_for_slots(name: str, wanted: int, within: float, cluster: Processes) -> float:
    """Seconds until `name` has `wanted` active slots; fails after `within` seconds."""
    started = time.monotonic()
    while _active_slots(name) != wanted:
        assert time.monotonic() - started < within, cluster.logs()
        time.sleep(1)
    return time.monotonic() - started


def test_a_killed_holders_slot_frees_after_the_lease_and_a_live_one_keeps_it(
    prefect_cluster: Processes,
) -> None:
    """Issue 11, defect 7: a step's slot is leased for ACCOUNT_LEASE_SECONDS and renewed
    while held. A SIGKILLed holder (no release) frees its slot once the lease runs out and
    the server's repossessor has run; a live holder keeps its slot past the lease."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from prefect_legnext.orchestration.provisioning import ACCOUNT_LEASE_SECONDS

    cluster = prefect_cluster
    name = "lease-test"
    repossessor_seconds = 15.0  # the server's default loop (not changed by the fixture)
    # A generous bound for a busy machine, still far below the old 300 s lease.
    frees_within = ACCOUNT_LEASE_SECONDS + repossessor_seconds + 90
    with _api_settings(cluster):
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=2))
        python = str(BIN / "python")
        doomed = cluster.start("holder-killed", python, "-c", HOLD_SLOT, name)
        live = cluster.start("holder-live", python, "-c", HOLD_SLOT, name)
        try:
            _wait_for_slots(name, 2, 180, cluster)
            held_since = time.monotonic()
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=30)

            freed_after = _wait_for_slots(name, 1, frees_within, cluster)
            assert freed_after < frees_within
            # Past the live holder's first lease and a repossessor pass: renewed, kept.
            time.sleep(
                max(0.0, held_since + ACCOUNT_LEASE_SECONDS + 2 * repossessor_seconds
                    - time.monotonic())
            )  # fmt: skip
            assert live.poll() is None
            assert _active_slots(name) == 1
        finally:
            for process in (doomed, live):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
