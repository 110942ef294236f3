"""The chaos scenarios in one process: flows called directly (threads) on the current
Prefect server or a temporary one, simulators in threads, moto behind the chaos
proxy. The short seeded variant that ``make test`` runs (pytest marker ``chaos``);
worker kills need processes and run in the fleet only."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.chaos import (
    TIME_SCALE,
    Report,
    Simulators,
    apply_s3,
    finish,
    record,
    run_chains,
    s3_outage,
)
from benchmarks.chaos_audit import S3View, SimRecord
from benchmarks.chaos_s3 import S3ChaosProxy
from benchmarks.chaos_scenarios import Chain, Scenario, plan

THREADS = 2  # per scenario; every scenario runs at once
LOCAL_MAX_WAIT = 5.0  # the stuck scenario's deadline here: short, the run is short


def _bucket_via(proxy: S3ChaosProxy, name: str) -> Any:
    from prefect_aws import AwsCredentials, S3Bucket

    from prefect_legnext.simulator.s3 import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY

    credentials = AwsCredentials(
        aws_access_key_id=LOCAL_ACCESS_KEY,
        aws_secret_access_key=LOCAL_SECRET_KEY,
        region_name=LOCAL_REGION,
        aws_client_parameters={"endpoint_url": proxy.endpoint_url},
    )
    return S3Bucket(bucket_name=name, credentials=credentials)


@contextlib.contextmanager
def _prefect(harness: bool) -> Iterator[None]:
    if not harness:
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def _run_one(chain: Chain) -> str:
    from prefect_legnext.orchestration.flows import legnext_chain

    name = chain.scenario.name
    state = legnext_chain(**chain.parameters(f"chaos-{name}", f"chaos-outputs-{name}"),
                          return_state=True)  # fmt: skip
    if state.is_completed():
        return ""
    error = state.result(raise_on_failure=False)
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def _run_scenario(chains: list[Chain], proxy: S3ChaosProxy) -> list[str]:
    outage = None
    if chains[0].scenario.s3_outage_seconds:
        outage = threading.Thread(target=s3_outage, args=(proxy, 3.0, 8.0))
        outage.start()
    try:
        return run_chains(chains, _run_one, THREADS)
    finally:
        if outage is not None:
            outage.join()


def _etags(view: S3View) -> dict[str, str]:
    s3 = view.s3
    return {
        k: s3.head_object(Bucket=view.bucket, Key=k)["ETag"]
        for k in view.keys
        if "/_ledger/" not in f"/{k}"
    }


def run_local(seed: int, total: int, *, harness: bool = True) -> Report:
    """Every scenario at once, each on its own simulator and its own S3 proxy (its S3
    faults are its own) in front of one moto server and one bucket."""
    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.simulator import LegnextSimulator
    from prefect_legnext.simulator.s3 import LocalS3Server

    report = Report(server="ephemeral")
    started: list[LegnextSimulator] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_prefect(harness))
        s3 = stack.enter_context(LocalS3Server())
        stack.callback(_stop_all, started)  # every simulator stops, also on failure
        bucket_name = f"chaos-{seed}-{secrets.token_hex(4)}"
        s3.create_bucket(bucket_name)

        def start(scenario: Scenario) -> SimRecord:
            key = f"sk-chaos-{secrets.token_hex(16)}"
            sim = LegnextSimulator(
                api_key=key, time_scale=TIME_SCALE, seed=seed, points=10_000_000,
                output_ttl=scenario.output_ttl, faults=scenario.sim_faults,
            )  # fmt: skip
            sim.start()
            started.append(sim)
            LegnextCredentials(api_key=key, base_url=sim.base_url, poll_scale=TIME_SCALE).save(
                f"chaos-{scenario.name}", overwrite=True
            )
            return SimRecord(scenario.name, sim.base_url, key, expiring=scenario.output_ttl < 1)

        sims = Simulators(start)
        proxies: dict[str, S3ChaosProxy] = {}
        chains_by_scenario = plan(total, seed)
        for name, chains in chains_by_scenario.items():
            scenario = chains[0].scenario
            if scenario.max_wait_seconds < 60:
                scenario = dataclasses.replace(scenario, max_wait_seconds=LOCAL_MAX_WAIT)
                chains_by_scenario[name] = [dataclasses.replace(c, scenario=scenario)
                                            for c in chains]  # fmt: skip
            sims.for_scenario(scenario)
            proxy = stack.enter_context(S3ChaosProxy(s3.endpoint_url, seed))
            apply_s3(proxy, scenario)
            _bucket_via(proxy, bucket_name).save(f"chaos-outputs-{name}", overwrite=True)
            proxies[name] = proxy
        completed = _each_scenario(report, chains_by_scenario, proxies)
        _rerun(report, chains_by_scenario, completed, sims, proxies,
               S3View(s3_client(s3), bucket_name))  # fmt: skip
        return finish(report, sims, S3View(s3_client(s3), bucket_name), [],
                      list(proxies.values()))  # fmt: skip


def _each_scenario(report: Report, chains_by_scenario: dict[str, list[Chain]],
                   proxies: dict[str, S3ChaosProxy]) -> set[str]:  # fmt: skip
    """Run every scenario at once; the names of the chains that completed."""
    completed: set[str] = set()
    with ThreadPoolExecutor(len(chains_by_scenario)) as pool:
        runs = {name: pool.submit(_run_scenario, chains, proxies[name])
                for name, chains in chains_by_scenario.items()}  # fmt: skip
        for name, run in runs.items():
            messages = run.result()
            record(report, chains_by_scenario[name], messages)
            completed.update(c.name for c, m in zip(chains_by_scenario[name], messages,
                                                    strict=True) if not m)  # fmt: skip
    return completed


def _stop_all(sims: list[Any]) -> None:
    for sim in sims:
        sim.stop()


def s3_client(server: Any) -> Any:
    return server.bucket_block("unused").credentials.get_s3_client()


def _rerun(report: Report, chains_by_scenario: dict[str, list[Chain]], completed: set[str],
           sims: Simulators, proxies: dict[str, S3ChaosProxy], view: S3View) -> None:  # fmt: skip
    """Re-run every chain with the faults off and the same idempotency scope: a
    completed chain must create no job and change no object; an unresolved one gets
    its chance to find the job it paid for. New jobs are counted for scenarios whose
    chains all completed the first time (a chain that failed early may pay now)."""
    import httpx

    for proxy in proxies.values():
        proxy.error_rate = proxy.ledger_lose_rate = 0.0
    before = _etags(view)

    def again(chains: list[Chain]) -> int:
        sim = sims.records[chains[0].scenario.name]
        httpx.put(f"{sim.base_url}/_sim/faults", json={}, timeout=60).raise_for_status()
        jobs_before = len(httpx.get(f"{sim.base_url}/_sim/jobs", timeout=60).json())
        messages = run_chains(chains, _run_one, THREADS)
        jobs_after = len(httpx.get(f"{sim.base_url}/_sim/jobs", timeout=60).json())
        if all(not m for m in messages) and all(c.name in completed for c in chains):
            return jobs_after - jobs_before
        return 0

    with ThreadPoolExecutor(len(chains_by_scenario)) as pool:
        report.rerun_new_jobs += sum(pool.map(again, chains_by_scenario.values()))
    after = _etags(S3View(view.s3, view.bucket))
    report.rerun_changed_objects = sum(1 for k, tag in before.items() if after.get(k) != tag)
