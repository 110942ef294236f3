"""Callback mode end to end: chain runs from the ``legnext-chain`` deployment on a real
``prefect server start`` (SQLite) with one process worker, the simulator sending
signed, faulty callbacks to the receiver (``prefect-legnext receiver``, a process of
its own), moto's S3 server, and the sweeper settling what the callbacks left.

Then the parts alone: the lease tag, the receiver's release of a job's slot, the
choice of wait mode."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from benchmarks.fleet import BIN, ROOT, Processes, flow_run_processes, free_port, running_server

from prefect_legnext.core.callbacks import (
    CALLBACK_TAG,
    FLOW_RUN_TAG,
    LEASE_TAG,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    callback_tags,
    sign,
)
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.orchestration.ledger import tag_callback
from prefect_legnext.orchestration.receiver import CallbackGate
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from test_distributed import _stored_outputs

TIME_SCALE = 0.02
SECRET = "whsec-callback-flows-5b9e"
SLOTS = 2
CHAINS = 3  # more chains than slots: the limit, not the number of runs, bounds Legnext


# --- the parts alone -----------------------------------------------------------------


def test_the_lease_is_tagged_on_the_callback_and_read_back_by_the_gate(
    task_object: Callable[..., dict[str, Any]],
) -> None:
    lease = str(uuid.uuid4())
    request = DiffusionRequest(
        text="x", callback=f"https://h.example/cb?a=1&{LEASE_TAG}=stale-lease"
    )
    tagged = tag_callback(request, "key-1", "run-1", lease).callback
    assert tagged is not None and "a=1" in tagged and "stale-lease" not in tagged
    assert callback_tags(tagged) == {CALLBACK_TAG: "key-1", FLOW_RUN_TAG: "run-1", LEASE_TAG: lease}
    assert LEASE_TAG not in (tag_callback(request, "key-1", "run-1").callback or "")
    hook = {"webhook_config": {"endpoint": tagged, "secret": ""}}
    body = json.dumps({"timestamp": 1, "data": task_object(status="completed", config=hook)})
    arrival = CallbackGate(None).decide({}, body.encode()).arrival
    assert arrival is not None and arrival.lease_id == lease


def test_a_task_object_kept_on_a_run_loses_the_webhook_secret_and_foreign_query(
    task_object: Callable[..., dict[str, Any]],
) -> None:
    from prefect_legnext.orchestration.deliveries import kept

    lease = str(uuid.uuid4())
    url = f"https://h.example/cb?token=proxy-9&{CALLBACK_TAG}=k1&{LEASE_TAG}={lease}"
    hook = {"webhook_config": {"endpoint": url, "secret": "whsec-vendor"}}
    data = task_object(status="completed", config=hook)
    stored = json.dumps(kept(data))
    assert "proxy-9" not in stored and "whsec-vendor" not in stored
    endpoint = kept(data)["config"]["webhook_config"]["endpoint"]
    assert callback_tags(endpoint) == {CALLBACK_TAG: "k1", LEASE_TAG: lease}
    assert kept(data)["output"] == data["output"] and data["config"] == hook  # a copy
    assert kept({"job_id": "j", "status": "completed"}) == {"job_id": "j", "status": "completed"}


def test_wait_mode_follows_the_credentials_and_the_run(prefect_server: None) -> None:
    import logging

    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.orchestration.callback_mode import choose_wait_mode
    from prefect_legnext.orchestration.job_leases import (
        MAX_LEASE_SECONDS,
        MIN_LEASE_SECONDS,
        job_lease_seconds,
    )

    log = logging.getLogger("test")
    plain = LegnextCredentials(api_key="lgx-test-key-0001")
    hooked = plain.model_copy(update={"callback_url": "https://hooks.example/legnext"})
    assert choose_wait_mode(None, plain, log) == "poll"
    assert choose_wait_mode("poll", hooked, log) == "poll"
    with pytest.raises(ValueError, match="callback_url"):
        choose_wait_mode("callback", plain, log)
    # Outside a deployment's flow run nothing can be suspended: polling.
    assert choose_wait_mode(None, hooked, log) == "poll"
    assert choose_wait_mode("callback", hooked, log) == "poll"

    @flow
    def decides(asked: str | None) -> str:
        return choose_wait_mode(asked, hooked, log)  # type: ignore[arg-type]

    # A flow run from Python cannot be suspended: it listens for the receiver's notice
    # on its server, unless asked to poll. A direct call of the flow's function has no
    # run to be delivered to, and no server here: it polls.
    assert decides(None) == "listen" and decides("callback") == "listen"
    assert decides("poll") == "poll"
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert decides.fn(None) == "poll"
    with pytest.raises(ValueError, match="http"):
        LegnextCredentials(api_key="lgx-test-key-0001", callback_url="ftp://x")
    # Long enough for the job, within what Prefect's server accepts.
    assert job_lease_seconds("diffusion") == 2 * 90 + 60
    assert job_lease_seconds("video_diffusion") == 2 * 360 + 60
    assert job_lease_seconds("diffusion", 0.001) == MIN_LEASE_SECONDS
    assert job_lease_seconds("video_diffusion", 1000) == MAX_LEASE_SECONDS


async def test_the_receiver_releases_a_jobs_slot_once(
    prefect_server: None, task_object: Callable[..., dict[str, Any]]
) -> None:
    """The slot's lease read from the echoed URL is released; a repeat (a duplicate
    delivery, or the sweeper releasing it too) never frees another job's slot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from prefect_legnext.orchestration import job_leases
    from prefect_legnext.orchestration.receiver import ReleaseJobSlot

    name = f"job-slots-{uuid.uuid4().hex[:8]}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=2)
        )

    async def active() -> int:
        async with get_client() as client:
            return (await client.read_global_concurrency_limit_by_name(name)).active_slots

    first = job_leases.take(name, 120)
    second = job_leases.take(name, 120)
    assert first is not None and second is not None and await active() == 2
    request = DiffusionRequest(text="x", callback="https://hooks.example/cb")
    tagged = tag_callback(request, "key-1", None, str(first)).callback
    hook = {"webhook_config": {"endpoint": tagged, "secret": ""}}
    body = json.dumps({"timestamp": 1, "data": task_object(status="completed", config=hook)})
    arrival = CallbackGate(None).decide({}, body.encode()).arrival
    assert arrival is not None
    release = ReleaseJobSlot()
    assert await release(arrival) == "released"
    assert await active() == 1
    assert await release(arrival) == "released"  # a repeat: nothing more
    assert await active() == 1
    job_leases.release(second)
    assert await active() == 0
    untagged = CallbackGate(None).decide({}, json.dumps({"data": task_object()}).encode())
    assert untagged.arrival is not None
    assert await release(untagged.arrival) == "no slot lease in the callback URL"


def test_the_sweeper_settles_an_overdue_job_once_and_renews_a_running_ones_slot(
    prefect_server: None, legnext_simulator_factory: Any
) -> None:
    """A run paused for a job whose delivery never came: before the job is overdue the
    sweeper only renews its slot; once overdue, one GET, the task object delivered, the
    run resumed with it, the slot released; then nothing more. A job still running at
    its due time is GET once and looked at again only a margin later."""
    from datetime import UTC, datetime, timedelta

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.states import Paused

    from prefect_legnext.orchestration import job_leases
    from prefect_legnext.orchestration.deliveries import (
        WaitNote,
        read_deliveries,
        read_wait_note,
        save_wait_note,
    )
    from prefect_legnext.orchestration.receiver import pause_key_for
    from prefect_legnext.orchestration.sweeper import sweep_once
    from prefect_legnext.testing import legnext_client_for
    from prefect_support import credentials_for

    @flow
    def waits() -> None:
        pass

    fast = legnext_simulator_factory()  # jobs done in a blink
    slow = legnext_simulator_factory(time_scale=1.0)  # a diffusion takes 30-90 s
    name = f"sweep-slots-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=5))

        def paused_for(sim: LegnextSimulator, block: str, due: datetime) -> tuple[Any, str, Any]:
            credentials_for(sim).save(block, overwrite=True)
            with legnext_client_for(sim) as legnext:
                job = legnext.diffusion(text=f"a sweep test, {block}")
            key = pause_key_for(job.job_id)
            run = client.create_flow_run(waits, state=Paused(pause_key=key, timeout_seconds=600))
            lease = job_leases.take(name, 60)
            save_wait_note(client, run.id, WaitNote(
                job_id=job.job_id, task_type="diffusion", submitted_at=now, due_at=due,
                lease_id=str(lease), lease_seconds=60, credentials_block=block,
            ))  # fmt: skip
            return run, job.job_id, lease

        def gets(sim: LegnextSimulator, job_id: str) -> int:
            return int(next(j["gets"] for j in sim.jobs() if j["job_id"] == job_id))

        def active() -> int:
            return client.read_global_concurrency_limit_by_name(name).active_slots

        done_run, done_job, _ = paused_for(fast, "sweep-fast", now + timedelta(hours=1))
        running_run, running_job, _ = paused_for(slow, "sweep-slow", now - timedelta(seconds=1))
        while fast.jobs()[-1]["status"] != "completed":
            time.sleep(0.05)
        early = sweep_once()
        assert done_job.lower() in early.renewed and done_job.lower() not in early.checked
        assert gets(fast, done_job) == 0
        # Still running at its due time: one GET, due again a margin later.
        assert running_job.lower() in early.still_running
        assert gets(slow, running_job) == 1
        later = read_wait_note(client, running_run.id, running_job)
        assert later is not None and later.due_at > now
        # Overdue now.
        overdue = sweep_once(now=now + timedelta(hours=2))
        assert done_job.lower() in overdue.resumed and done_job.lower() in overdue.released
        assert gets(fast, done_job) == 1
        state = client.read_flow_run(done_run.id).state
        assert state is not None and state.is_running()
        assert read_deliveries(client, done_run.id)[done_job.lower()].is_completed
        assert active() == 1  # the slow job's slot is kept
        again = sweep_once(now=now + timedelta(hours=3))
        assert done_job.lower() not in again.waiting and gets(fast, done_job) == 1
    assert gets(slow, running_job) >= 2  # overdue twice: looked at again


# --- end to end ------------------------------------------------------------------------


class Monitor:
    """Every half second: which runs are suspended, and which runs have a live
    flow-run process under the worker (read from /proc)."""

    def __init__(self, run_ids: list[uuid.UUID], worker_pid: int, api: Any) -> None:
        self.run_ids, self.worker_pid, self.api = run_ids, worker_pid, api
        self.samples: list[tuple[set[str], set[str]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        with self.api(), get_client(sync_client=True) as client:  # settings are per thread
            while not self.stop.wait(0.5):
                try:
                    suspended = {
                        str(run_id) for run_id in self.run_ids
                        if (state := client.read_flow_run(run_id).state) is not None
                        and state.name == "Suspended"
                    }  # fmt: skip
                except httpx.HTTPError:  # a busy server: look again
                    continue
                self.samples.append((suspended, flow_run_processes(self.worker_pid)))


def _wait_for_port(port: int, cluster: Processes, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    with running_server(tmp_path_factory.mktemp("prefect-home")) as processes:
        yield processes


def _forged_delivery(receiver: str, job: dict[str, Any], flow_run_id: uuid.UUID) -> int:
    """A "completed" task object for a running job, naming its run, signed with the
    wrong secret."""
    hook = {"webhook_config": {"endpoint": f"{receiver}&{FLOW_RUN_TAG}={flow_run_id}"}}
    task = {"job_id": job["job_id"], "task_type": job["task_type"], "status": "completed",
            "config": hook}  # fmt: skip
    body = json.dumps({"timestamp": int(time.time() * 1000), "data": task}).encode()
    stamp = str(int(time.time() * 1000))
    headers = {"content-type": "application/json", TIMESTAMP_HEADER: stamp,
               SIGNATURE_HEADER: sign("not-the-secret", stamp, body)}  # fmt: skip
    return httpx.post(receiver, content=body, headers=headers, timeout=30).status_code


@pytest.mark.timeout(600)
def test_chain_runs_wait_suspended_and_complete_through_callbacks_and_the_sweeper(
    cluster: Processes, legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.orchestration.provisioning import ACCOUNT_LIMIT
    from prefect_legnext.orchestration.sweeper import SweepReport, sweep_once

    def api() -> Any:
        return temporary_settings(updates={PREFECT_API_URL: cluster.env["PREFECT_API_URL"]})

    sim: LegnextSimulator = legnext_simulator_factory(
        time_scale=TIME_SCALE, concurrency=6, callback_secret=SECRET
    )
    # Every enhance's deliveries are lost (only the sweeper can settle those); the
    # diffusions' are dropped at 30%, each sent twice, and staged/processing held back
    # until after a later status.
    sim.set_faults({
        "diffusion": {"callback_drop_rate": 0.3, "callback_duplicate_rate": 1.0,
                      "callback_reorder_rate": 1.0},
        "enhance": {"callback_drop_rate": 1.0},
    })  # fmt: skip
    bucket = local_s3_server.create_bucket()
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}/legnext/callback?token=proxy-token-1"
    prefect_cli = str(BIN / "prefect")
    sweeps: list[SweepReport] = []
    stop_sweeping = threading.Event()

    def sweeper() -> None:
        with api():
            while not stop_sweeping.wait(2.0):
                try:
                    sweeps.append(sweep_once())
                except httpx.HTTPError:  # a busy server: sweep again
                    continue

    sweeping = threading.Thread(target=sweeper, daemon=True)
    out = cluster.run(str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", str(SLOTS))
    assert f"legnext-account: {SLOTS} slots" in out
    with api():
        LegnextCredentials(
            api_key=sim.api_key, base_url=sim.base_url, poll_scale=TIME_SCALE,
            callback_url=receiver_url,
        ).save("legnext", overwrite=True)  # fmt: skip
        bucket.save("legnext-outputs", overwrite=True)
    cluster.run(prefect_cli, "--no-prompt", "deploy", "--name", "legnext-chain",
                cwd=ROOT / "deployments")  # fmt: skip
    cluster.env["LEGNEXT_CALLBACK_SECRET"] = SECRET
    # A resumed run waits for the worker's next look (10 s by default): 2 s here.
    cluster.env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    cluster.start("receiver", str(BIN / "prefect-legnext"), "receiver", "--port", str(port))
    # No --limit: Prefect 3.8's worker with a limit can crash when a resumed run comes
    # back before it has seen the run's first process exit ("this borrower is already
    # holding one of this CapacityLimiter's tokens", PrefectHQ/prefect#16806). The
    # legnext-account limit bounds Legnext's load anyway (docs/callbacks.md).
    worker = cluster.start("worker", prefect_cli, "worker", "start", "--pool", "legnext-process")
    try:
        _wait_for_port(port, cluster)
        sweeping.start()
        with api(), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("legnext-chain/legnext-chain")
            runs = [
                client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={"prompt": f"a heron {i}", "steps": ["diffusion", "enhance"]},
                )
                for i in range(CHAINS)
            ]
            monitor = Monitor([run.id for run in runs], worker.pid, api)
            monitor.thread.start()
            forged: int | None = None
            deadline = time.monotonic() + 420
            while True:
                states = [client.read_flow_run(run.id).state for run in runs]
                if all(state is not None and state.is_final() for state in states):
                    break
                if forged is None:
                    # A forged "completed" for a running job: refused, changes nothing.
                    running = [j for j in sim.jobs() if j["status"] != "completed"]
                    if running:
                        forged = _forged_delivery(receiver_url, running[0], runs[0].id)
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(1)
            monitor.stop.set()
            assert [s.name if s else None for s in states] == ["Completed"] * CHAINS, cluster.logs()
            limit = client.read_global_concurrency_limit_by_name(ACCOUNT_LIMIT)
    finally:
        stop_sweeping.set()
        os.killpg(worker.pid, signal.SIGTERM)
        sweeping.join(timeout=60)

    stats = sim.stats()
    jobs = CHAINS * 2
    assert stats["jobs_total"] == jobs and stats["duplicate_creates"] == 0
    assert stats["jobs_by_status"] == {"completed": jobs}
    assert stats["points"]["charged"] == CHAINS * (40 + 80)
    # The account limit held while nobody waited in a process, and every slot came
    # back by release (the shortest lease is 60 s: a slot left to run out would show).
    assert stats["peak_in_flight"] <= SLOTS, stats["peak_in_flight"]
    assert limit.active_slots == 0
    # At most one GET per job: none where the delivery came, the sweeper's where not.
    assert all(job["gets"] <= 1 for job in sim.jobs()), sim.jobs()
    callbacks = stats["callbacks"]
    assert callbacks["dropped"] >= CHAINS and callbacks["duplicated"] >= 1
    assert callbacks["reordered"] >= 1
    swept = {job for report in sweeps for job in report.resumed}
    enhance_jobs = {j["job_id"].lower() for j in sim.jobs() if j["task_type"] == "enhance"}
    assert enhance_jobs <= swept, (swept, enhance_jobs)
    # Every job's slot was given back by whoever learnt that it finished (the receiver,
    # or the sweeper), not left to run out.
    received = (cluster.log_dir / "receiver.log").read_text()
    by_receiver = set(re.findall(r"callback for job ([0-9a-f-]+) \(completed\): 200 [^\n]*"
                                 r"slot: released", received))  # fmt: skip
    by_sweeper = {job for report in sweeps for job in report.released}
    assert by_receiver | by_sweeper == {j["job_id"].lower() for j in sim.jobs()}, received
    assert forged == 401
    # Suspended runs held no process: seen with no flow-run process of theirs alive.
    idle = [s for s, alive in monitor.samples if s and not (s & alive)]
    assert idle, monitor.samples[-20:]
    job_ids = {job["job_id"] for job in sim.jobs()}
    assert _stored_outputs(bucket, "legnext/daily", job_ids) == jobs * 4
    # What was kept on the runs (deliveries, run inputs) holds no proxy token.
    with api(), get_client(sync_client=True) as client:
        kept = {prefix: [i.value for run in runs
                         for i in client.filter_flow_run_input(run.id, prefix, 100, set())]
                for prefix in ("legnext-delivered-", "legnext-wait-", "suspended-")}  # fmt: skip
    inputs = [value for values in kept.values() for value in values]
    delivered = {json.loads(value)["job_id"].lower() for value in kept["legnext-delivered-"]}
    assert delivered == {j.lower() for j in job_ids}  # every job was delivered to its run
    assert not [value for value in inputs if "proxy-token" in value]


@pytest.mark.timeout(600)
def test_a_run_outside_a_deployment_listens_for_the_notice_and_polls_what_never_comes(
    cluster: Processes, legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    """Callback mode in a flow run from Python (it cannot be suspended): each step's
    wait task listens for the receiver's notice. The diffusion's delivery comes: its
    job is never GET. Every enhance delivery is lost: that step reads the job once its
    callback is overdue and polls it to the end. The receiver resumes nothing (the run
    was never paused) and answers at once."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.orchestration.flows import legnext_chain

    sim: LegnextSimulator = legnext_simulator_factory(
        time_scale=TIME_SCALE, concurrency=6, callback_secret=SECRET
    )
    sim.set_faults({"enhance": {"callback_drop_rate": 1.0}})
    bucket = local_s3_server.create_bucket()
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}/legnext/callback"
    cluster.env["LEGNEXT_CALLBACK_SECRET"] = SECRET
    with temporary_settings(updates={PREFECT_API_URL: cluster.env["PREFECT_API_URL"]}):
        LegnextCredentials(
            api_key=sim.api_key, base_url=sim.base_url, poll_scale=TIME_SCALE,
            callback_url=receiver_url,
        ).save("legnext-listen", overwrite=True)  # fmt: skip
        bucket.save("legnext-listen-outputs", overwrite=True)
        cluster.start("receiver-listen", str(BIN / "prefect-legnext"), "receiver", "--port",
                      str(port), "--storage-block", "legnext-listen-outputs")  # fmt: skip
        _wait_for_port(port, cluster)
        state = legnext_chain(
            "a heron, listened for", steps=["diffusion", "enhance"],
            credentials_block="legnext-listen", storage_block="legnext-listen-outputs",
            key_prefix="listen", return_state=True,
        )  # fmt: skip
    assert state.is_completed(), (state.message, cluster.logs())
    result = state.result()
    jobs = {job["task_type"]: job for job in sim.jobs()}
    assert set(jobs) == {"diffusion", "enhance"} and len(sim.jobs()) == 2
    assert [step.job_id for step in result.steps] == [
        jobs["diffusion"]["job_id"], jobs["enhance"]["job_id"],
    ]  # fmt: skip
    # Told by the receiver: no GET. Never told: read once overdue, then polled.
    assert jobs["diffusion"]["gets"] == 0, jobs
    assert jobs["enhance"]["gets"] >= 1, jobs
    assert sim.stats()["callbacks"]["dropped"] >= 1
    received = (cluster.log_dir / "receiver-listen.log").read_text()
    diffusion = jobs["diffusion"]["job_id"].lower()
    line = next(
        (ln for ln in received.splitlines() if f"callback for job {diffusion} (completed)" in ln),
        None,
    )
    assert line is not None and "the run listens for the notice" in line, received
    assert _stored_outputs(bucket, "listen", {j["job_id"] for j in sim.jobs()}) == 8


def test_chains_run_again_after_an_early_delivery_reserve_their_budget_afresh(
    prefect_server: None,
) -> None:
    """A delivery that comes before the run suspends makes the chains run again in the
    same process: their steps reserve again, and must not count twice against
    max_points."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from prefect import flow

    from prefect_legnext.core.responses import Job
    from prefect_legnext.orchestration.callback_mode import (
        DELIVERED,
        Awaited,
        AwaitingCallbacks,
        current_flow_run_id,
    )
    from prefect_legnext.orchestration.flows import PointBudget, _until_done

    budget = PointBudget(max_points=40, available=1000)
    settings = SimpleNamespace(wait_mode="callback", max_wait_seconds=60)
    job_id = str(uuid.uuid4())
    executions: list[int] = []

    def chains() -> str:
        budget.reserve(40, "step 1 (diffusion)", already_paid=bool(executions))
        executions.append(1)
        if len(executions) == 1:  # the job finished before the run could suspend
            DELIVERED.add(current_flow_run_id(), Job.model_validate(
                {"job_id": job_id, "task_type": "diffusion", "status": "completed"}
            ))  # fmt: skip
            raise AwaitingCallbacks([Awaited(job_id, datetime.now(UTC))])
        return "done"

    @flow
    def early_delivery() -> str:
        return _until_done(chains, settings, budget)  # type: ignore[arg-type]

    assert early_delivery() == "done"
    assert len(executions) == 2 and budget.reserved == 40
