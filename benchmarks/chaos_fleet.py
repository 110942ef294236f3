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
from collections import Counter
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
    descendants,
    fleet_env,
    free_port,
    start_server,
    start_worker,
)
from benchmarks.postgres import postgres_server

POOL = "legnext-process"
WORKER_LIMIT = 4
ACCOUNT_SLOTS = 6
RUN_DEADLINE = 1080.0  # seconds for the whole first pass, kills and retries included
ORPHAN_GRACE = 20.0
FIRST_KILL, KILL_EVERY = 30.0, 45.0  # seconds into the run
AIM_SECONDS = 20.0  # how long a kill waits for a flow run in the phase it aims at
S3_OUTAGE_AFTER = 40.0
RERUN_SAMPLE = 2  # completed chains per scenario re-run, besides every retried one
Phase = str  # "submitting", "waiting", "persisting" or "other": what a killed run did


def _phase(task_run_name: str) -> Phase:
    """A chain step's task runs are named '<n> <action>: submit|wait <job>|persist <job>'."""
    for word, phase in ((": submit", "submitting"), (": wait", "waiting"),
                        (": persist", "persisting")):  # fmt: skip
        if word in task_run_name:
            return phase
    return "other"


class Fleet:
    def __init__(self, processes: Processes, workers: int, seed: int) -> None:
        self.processes = processes
        self.names = [f"worker-{n}" for n in range(1, workers + 1)]
        self.workers = {name: start_worker(processes, name, POOL, WORKER_LIMIT)
                        for name in self.names}  # fmt: skip
        self.killed = 0
        self.killed_runs: Counter[Phase] = Counter()  # flow runs killed, by what they did
        self._rng = random.Random(seed)

    def kill_aiming(self, client: Any, runs: list[UUID], aim: Phase) -> None:
        """SIGKILL the worker (with its flow-run processes) whose flow run is `aim`ing
        (e.g. inside a submit) when one is seen within AIM_SECONDS, else a random one;
        count what every killed flow run was doing; restart the worker a moment later."""
        deadline = time.monotonic() + AIM_SECONDS
        while True:
            doing = self._doing(client, runs)
            target = next((w for w, phases in doing.items() if aim in phases), None)
            if target is not None or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        name = target or self._rng.choice(self.names)
        self.killed_runs.update(doing.get(name, []))
        self.processes.kill(self.workers[name])
        self.killed += 1
        time.sleep(3)
        self.workers[name] = start_worker(self.processes, name, POOL, WORKER_LIMIT)

    def _doing(self, client: Any, runs: list[UUID]) -> dict[str, list[Phase]]:
        """Per worker, the phase of each of its flow runs that has a task running."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        running = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
        phase_of_run = {t.flow_run_id: _phase(t.name) for t in running}
        if not phase_of_run:
            return {}
        flows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(phase_of_run)))
        )
        children = {name: set(descendants(w.pid)) for name, w in self.workers.items()}
        doing: dict[str, list[Phase]] = {}
        for flow_run in flows:
            pid = (flow_run.infrastructure_pid or "").rsplit(":", 1)[-1]
            for name, pids in children.items():
                if pid.isdigit() and int(pid) in pids:
                    doing.setdefault(name, []).append(phase_of_run[flow_run.id])
        return doing


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _interleaved(chains_by_scenario: dict[str, list[Chain]]) -> list[Chain]:
    """Every scenario's chains taken in turn, so that each scenario is in flight all
    through the run (the workers take runs in creation order)."""
    queues = [list(chains) for chains in chains_by_scenario.values()]
    out: list[Chain] = []
    while any(queues):
        out.extend(q.pop(0) for q in queues if q)
    return out


def _drive(fleet: Fleet, report: Report, chains: list[Chain], deployment_id: UUID,
           kills: int, retried: set[str] | None = None) -> list[str]:  # fmt: skip
    """Start one flow run per chain, kill workers `kills` times while they run (aiming
    in turn at a submit and at a wait), reschedule runs orphaned by a kill (their
    chains' names go into `retried`), and return each chain's error text."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Scheduled

    with _client() as client:
        runs = [
            client.create_flow_run_from_deployment(
                deployment_id,
                parameters=c.parameters(f"chaos-{c.scenario.name}",
                                        f"chaos-outputs-{c.scenario.name}"),
            ).id
            for c in chains
        ]  # fmt: skip
        chain_of = dict(zip(runs, chains, strict=True))
        started = time.monotonic()
        kill_at = [started + FIRST_KILL + KILL_EVERY * i for i in range(kills)]
        aims = ["submitting", "waiting"]
        orphaned: dict[UUID, float] = {}
        while True:
            now = time.monotonic()
            if kill_at and now >= kill_at[0]:
                kill_at.pop(0)
                fleet.kill_aiming(client, runs, aims[fleet.killed % len(aims)])
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
                    if retried is not None:
                        retried.add(chain_of[flow_run.id].name)
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
    """Every scenario at once, each on its own simulator (a process) and its own S3
    fault proxy in front of one moto server and one bucket."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.simulator.s3 import LocalS3Server

    report = Report(server=server)
    # Absolute: flow-run processes start in a directory of their own.
    logs = (log_dir or Path(tempfile.mkdtemp(prefix="legnext-chaos-"))).resolve()
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
        from benchmarks.chaos_local import _bucket_via, s3_client

        bucket_name = f"chaos-{seed}-{secrets.token_hex(4)}"
        s3.create_bucket(bucket_name)

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
        chains_by_scenario = plan(total, seed)
        proxies: dict[str, S3ChaosProxy] = {}
        for name, chains in chains_by_scenario.items():
            sims.for_scenario(chains[0].scenario)
            proxy = stack.enter_context(S3ChaosProxy(s3.endpoint_url, seed))
            apply_s3(proxy, chains[0].scenario)
            _bucket_via(proxy, bucket_name).save(f"chaos-outputs-{name}", overwrite=True)
            proxies[name] = proxy
        processes.run(
            str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", str(ACCOUNT_SLOTS)
        )
        processes.run(
            str(BIN / "prefect"), "--no-prompt", "deploy", "--all", cwd=ROOT / "deployments"
        )
        fleet = Fleet(processes, workers, seed)
        with _client() as client:
            deployment = client.read_deployment_by_name("legnext-chain/legnext-chain").id
        outages = [
            threading.Thread(target=s3_outage, args=(proxies[n], S3_OUTAGE_AFTER,
                                                     c[0].scenario.s3_outage_seconds))
            for n, c in chains_by_scenario.items() if c[0].scenario.s3_outage_seconds
        ]  # fmt: skip
        for outage in outages:
            outage.start()
        everything = _interleaved(chains_by_scenario)
        retried: set[str] = set()
        t0 = time.monotonic()
        messages = _drive(fleet, report, everything, deployment, kills, retried)
        record(report, everything, messages)
        print(f"first pass: {len(everything)} chains in {time.monotonic() - t0:.0f}s",
              file=sys.stderr, flush=True)  # fmt: skip
        for outage in outages:
            outage.join()
        completed = {c.name for c, m in zip(everything, messages, strict=True) if not m}
        _rerun(fleet, report, chains_by_scenario, completed, retried, sims, proxies, deployment,
               S3View(s3_client(s3), bucket_name))  # fmt: skip
        report.workers_killed = fleet.killed
        report.killed_runs = dict(fleet.killed_runs)
        view = S3View(s3_client(s3), bucket_name)
        done = finish(report, sims, view, [logs], list(proxies.values()))
        if done.audit.peak_in_flight > ACCOUNT_SLOTS:
            done.unexpected.append(
                f"{done.audit.peak_in_flight} jobs in flight at once at a simulator, above "
                f"the legnext-account limit of {ACCOUNT_SLOTS}"
            )
        return done


def _rerun(fleet: Fleet, report: Report, chains_by_scenario: dict[str, list[Chain]],
           completed: set[str], retried: set[str], sims: Simulators,
           proxies: dict[str, S3ChaosProxy], deployment: UUID, view: S3View) -> None:  # fmt: skip
    """Chains again, faults off, same idempotency scope. First the completed ones that a
    kill interrupted and a sample of the others: together they must create no job and
    change no stored object. Then every chain that did not complete: it gets its
    chance to find the job it paid for (a paid job left behind counts as lost)."""
    from benchmarks.chaos_local import _etags

    for proxy in proxies.values():
        proxy.error_rate = proxy.ledger_lose_rate = 0.0
    for sim in sims.records.values():
        httpx.put(f"{sim.base_url}/_sim/faults", json={}, timeout=60).raise_for_status()

    def jobs() -> int:
        return sum(len(httpx.get(f"{s.base_url}/_sim/jobs", timeout=60).json())
                   for s in sims.records.values())  # fmt: skip

    done_before = [
        c for chains in chains_by_scenario.values()
        for i, c in enumerate(c for c in chains if c.name in completed)
        if i < RERUN_SAMPLE or c.name in retried
    ]  # fmt: skip
    before, jobs_before = _etags(view), jobs()
    messages = _drive(fleet, Report(), done_before, deployment, 0)
    report.rerun_new_jobs = jobs() - jobs_before
    report.rerun_chains = len(done_before)
    report.unexpected.extend(
        f"{c.name}: completed, then its re-run failed: {m[:300]}"
        for c, m in zip(done_before, messages, strict=True) if m
    )  # fmt: skip
    after = _etags(S3View(view.s3, view.bucket))
    report.rerun_changed_objects = sum(1 for k, tag in before.items() if after.get(k) != tag)
    unfinished = [c for chains in chains_by_scenario.values() for c in chains
                  if c.name not in completed]  # fmt: skip
    if unfinished:
        _drive(fleet, Report(), unfinished, deployment, 0)
        report.rerun_chains += len(unfinished)


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.5)
