"""The chaos scenarios on the engine users scale to (``make chaos``): a real
``prefect server start`` on PostgreSQL, the deployments of ``deployments/prefect.yaml``
on a process pool, several ``prefect worker start`` processes of which some are
SIGKILLed (with their flow-run processes) and restarted while chains submit and wait.
A flow run left Running by a killed process is set back to Scheduled (retried: same
run, same idempotency scope); at the end every chain is re-run."""

from __future__ import annotations

import contextlib
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from benchmarks.chaos import TIME_SCALE, Report, Simulators, apply_s3, finish, record, s3_outage
from benchmarks.chaos_audit import S3View, SimRecord
from benchmarks.chaos_s3 import S3ChaosProxy
from benchmarks.chaos_scenarios import Chain, Scenario, plan
from benchmarks.fleet import (
    BIN,
    ROOT,
    Processes,
    alive,
    fleet_env,
    free_port,
    start_server,
    start_worker,
)
from benchmarks.postgres import postgres_server

POOL = "legnext-process"
WORKER_LIMIT = 4
ACCOUNT_SLOTS = 6
RUN_DEADLINE = 900.0  # seconds for one scenario's runs, kills and retries included
ORPHAN_GRACE = 20.0


class Fleet:
    def __init__(self, processes: Processes, workers: int, seed: int) -> None:
        self.processes = processes
        self.names = [f"worker-{n}" for n in range(1, workers + 1)]
        self.workers = {name: start_worker(processes, name, POOL, WORKER_LIMIT)
                        for name in self.names}  # fmt: skip
        self.killed = 0
        self._rng = random.Random(seed)

    def kill_one(self) -> None:
        """SIGKILL one worker (and its flow-run processes), restart it a moment later."""
        name = self._rng.choice(self.names)
        self.processes.kill(self.workers[name])
        self.killed += 1
        time.sleep(3)
        self.workers[name] = start_worker(self.processes, name, POOL, WORKER_LIMIT)


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _drive(fleet: Fleet, report: Report, chains: list[Chain], deployment_id: UUID,
           kills: int) -> list[str]:  # fmt: skip
    """Start one flow run per chain, kill workers `kills` times while they run,
    reschedule runs orphaned by a kill, and return each chain's error text."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Scheduled

    with _client() as client:
        runs = [
            client.create_flow_run_from_deployment(
                deployment_id, parameters=c.parameters(f"chaos-{c.scenario.name}", "chaos-outputs")
            ).id
            for c in chains
        ]
        started = time.monotonic()
        kill_at = sorted(started + 15 + 25 * i for i in range(kills))
        orphaned: dict[UUID, float] = {}
        while True:
            now = time.monotonic()
            if kill_at and now >= kill_at[0]:
                kill_at.pop(0)
                fleet.kill_one()
            flows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs))
            )
            states = {f.id: f for f in flows}
            if all(f.state is not None and f.state.is_final() for f in flows) and not kill_at:
                break
            for flow_run in flows:
                state = flow_run.state
                if state is None or not (
                    state.is_running() or state.is_pending() or state.name == "Crashed"
                ):
                    orphaned.pop(flow_run.id, None)
                    continue
                pid = (flow_run.infrastructure_pid or "").rsplit(":", 1)[-1]
                if state.name != "Crashed" and pid.isdigit() and alive(int(pid)):
                    orphaned.pop(flow_run.id, None)
                    continue
                since = orphaned.setdefault(flow_run.id, now)
                if now - since > ORPHAN_GRACE:
                    client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
                    report.retried_runs += 1
                    orphaned.pop(flow_run.id)
            if now - started > RUN_DEADLINE:
                break
            time.sleep(3)
        messages = []
        for run_id in runs:
            state = states[run_id].state
            if state is not None and state.is_completed():
                messages.append("")
            else:
                name = state.name if state else "no state"
                messages.append(f"{name}: {state.message if state else ''}")
        return messages


def run_fleet(seed: int, total: int, workers: int, kills: int, server: str,
              log_dir: Path | None) -> Report:  # fmt: skip
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.simulator.s3 import LocalS3Server

    report = Report(server=server)
    logs = log_dir or Path(tempfile.mkdtemp(prefix="legnext-chaos-"))
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(postgres_server()) if server == "postgresql" else None
        env = fleet_env(logs / "prefect-home", free_port(), database.url if database else None)
        (logs / "prefect-home").mkdir(exist_ok=True)
        processes = Processes(logs, env)
        stack.callback(processes.stop_all)
        start_server(processes)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}))
        s3 = stack.enter_context(LocalS3Server())
        proxy = stack.enter_context(S3ChaosProxy(s3.endpoint_url, seed))
        from benchmarks.chaos_local import _bucket_via, s3_client

        bucket_name = f"chaos-{seed}-{secrets.token_hex(4)}"
        s3.create_bucket(bucket_name)
        _bucket_via(proxy, bucket_name).save("chaos-outputs", overwrite=True)

        def start(scenario: Scenario) -> SimRecord:
            key = f"sk-chaos-{secrets.token_hex(16)}"
            port = free_port()
            processes.env["LEGNEXT_SIMULATOR_API_KEY"] = key  # never on a command line
            processes.start(
                f"sim-{scenario.name}", str(BIN / "prefect-legnext"), "simulator", "--port",
                str(port), "--time-scale", str(TIME_SCALE), "--seed", str(seed),
                "--concurrency", str(ACCOUNT_SLOTS), "--points", "100000000",
                "--output-ttl", str(scenario.output_ttl),
            )  # fmt: skip
            del processes.env["LEGNEXT_SIMULATOR_API_KEY"]
            base = f"http://127.0.0.1:{port}"
            _wait_http(f"{base}/_sim/stats")
            httpx.put(
                f"{base}/_sim/faults", json=scenario.sim_faults, timeout=30
            ).raise_for_status()
            LegnextCredentials(api_key=key, base_url=base, poll_scale=TIME_SCALE).save(
                f"chaos-{scenario.name}", overwrite=True
            )
            return SimRecord(scenario.name, base, key, expiring=scenario.output_ttl < 1)

        sims = Simulators(start)
        processes.run(
            str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", str(ACCOUNT_SLOTS)
        )
        processes.run(
            str(BIN / "prefect"), "--no-prompt", "deploy", "--all", cwd=ROOT / "deployments"
        )
        fleet = Fleet(processes, workers, seed)
        with _client() as client:
            deployment = client.read_deployment_by_name("legnext-chain/legnext-chain").id
        chains_by_scenario = plan(total, seed)
        per_scenario = max(1, kills // len(chains_by_scenario))
        spare = kills - per_scenario * len(chains_by_scenario)
        for name, chains in chains_by_scenario.items():
            scenario = chains[0].scenario
            sims.for_scenario(scenario)
            apply_s3(proxy, scenario)
            outage = None
            if scenario.s3_outage_seconds:
                outage = threading.Thread(
                    target=s3_outage, args=(proxy, 20.0, scenario.s3_outage_seconds)
                )
                outage.start()
            n_kills = per_scenario + (spare if name == "drop" else 0)
            t0 = time.monotonic()
            record(report, chains, _drive(fleet, report, chains, deployment, n_kills))
            print(f"scenario {name}: {len(chains)} chains in {time.monotonic() - t0:.0f}s",
                  file=sys.stderr, flush=True)  # fmt: skip
            if outage is not None:
                outage.join()
        _rerun(
            fleet, report, chains_by_scenario, sims, proxy, deployment, s3_client(s3), bucket_name
        )
        report.workers_killed = fleet.killed
        view = S3View(s3_client(s3), bucket_name)
        done = finish(report, sims, view, [logs], [proxy])
        if done.audit.peak_in_flight > ACCOUNT_SLOTS:
            done.unexpected.append(
                f"{done.audit.peak_in_flight} jobs in flight at once at a simulator, above "
                f"the legnext-account limit of {ACCOUNT_SLOTS}"
            )
        return done


def _rerun(fleet: Fleet, report: Report, chains_by_scenario: dict[str, list[Chain]],
           sims: Simulators, proxy: S3ChaosProxy, deployment: UUID, s3: Any,
           bucket: str) -> None:  # fmt: skip
    """Every chain again, faults off, same idempotency scope: completed chains must
    create no job and change no stored object."""
    from benchmarks.chaos_local import _etags

    proxy.error_rate = proxy.ledger_lose_rate = 0.0
    before = _etags(S3View(s3, bucket))
    for chains in chains_by_scenario.values():
        sim = sims.records[chains[0].scenario.name]
        httpx.put(f"{sim.base_url}/_sim/faults", json={}, timeout=60).raise_for_status()
        jobs_before = len(httpx.get(f"{sim.base_url}/_sim/jobs", timeout=60).json())
        messages = _drive(fleet, Report(), chains, deployment, 0)
        jobs_after = len(httpx.get(f"{sim.base_url}/_sim/jobs", timeout=60).json())
        if all(not m for m in messages) and chains[0].scenario.name != "failing":
            report.rerun_new_jobs += jobs_after - jobs_before
    after = _etags(S3View(s3, bucket))
    report.rerun_changed_objects = sum(1 for k, tag in before.items() if after.get(k) != tag)


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.5)
