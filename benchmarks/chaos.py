"""The chaos suite (issue 11): chains under injected faults, counted from the outside.

Two ways to run the same scenarios (`benchmarks.chaos_scenarios`) and the same audit
(`benchmarks.chaos_audit`):

- ``--fleet`` (``make chaos``): a real ``prefect server start`` on PostgreSQL (or
  SQLite), the deployments of ``deployments/prefect.yaml``, N process workers of which
  some are SIGKILLed (with their flow-run processes) and restarted during the run; a
  crashed flow run is set back to Scheduled (retried) and every chain is re-run at
  the end with the same idempotency scope;
- in process (the ``chaos`` pytest marker): the flows called directly on Prefect's
  temporary server, a few chains per scenario.

Either way it ends with exactly one line on stdout::

    chaos: faults=N chains=M completed=C outcome_unknown=U failed=F duplicates=D
    lost=L leaked=K workers_killed=W server=...   (one line)

Details (per scenario, unexpected outcomes, lost jobs) go to stderr. The exit status
is 1 when a promise broke (see `Report.holds`).
Run: ``python -m benchmarks.chaos --help``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chaos_audit import Audit, S3View, SimRecord, audit
from benchmarks.chaos_s3 import S3ChaosProxy
from benchmarks.chaos_scenarios import Chain, Outcome, Scenario, classify, plan

SIM_CONCURRENCY = 6
TIME_SCALE = 0.01
MAX_UNKNOWN_SHARE = 0.02  # issue 11: U at most 2% of M


@dataclass
class Report:
    """Everything the summary line and the details say."""

    chains: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    faults: int = 0
    workers_killed: int = 0
    retried_runs: int = 0
    # Flow runs a worker kill took down, by what they were doing (submitting, waiting...).
    killed_runs: dict[str, int] = field(default_factory=dict)
    rerun_chains: int = 0
    rerun_new_jobs: int = 0
    rerun_changed_objects: int = 0
    server: str = "ephemeral"
    audit: Audit = field(default_factory=Audit)

    def line(self) -> str:
        o, a = self.outcomes, self.audit
        return (
            f"chaos: faults={self.faults} chains={self.chains} completed={o['completed']} "
            f"outcome_unknown={o['outcome_unknown']} failed={o['failed']} "
            f"duplicates={a.duplicates} lost={a.lost} leaked={a.leaked} "
            f"workers_killed={self.workers_killed} server={self.server}"
        )

    def holds(self) -> bool:
        """Whether the run kept every promise: nothing paid twice, lost or leaked, only
        the outcomes each scenario allows, at most 2% of chains left unknown, and re-runs
        of completed chains that create no job and change no object."""
        a = self.audit
        unknown_ok = self.outcomes["outcome_unknown"] <= MAX_UNKNOWN_SHARE * self.chains
        clean = a.duplicates == a.lost == a.leaked == 0
        rerun_clean = self.rerun_new_jobs == self.rerun_changed_objects == 0
        return clean and rerun_clean and unknown_ok and not self.unexpected

    def details(self) -> str:
        a = self.audit
        return "\n".join([
            f"jobs={a.jobs} charged_points={a.charged_points} kept_points={a.kept_points} "
            f"expired_on_purpose={a.expired} files_checked={a.files_checked} "
            f"peak_in_flight={a.peak_in_flight} retried_runs={self.retried_runs} "
            f"killed_runs={dict(sorted(self.killed_runs.items()))} "
            f"rerun_chains={self.rerun_chains} rerun_new_jobs={self.rerun_new_jobs} "
            f"rerun_changed_objects={self.rerun_changed_objects}",
            *(f"unexpected: {u}" for u in self.unexpected[:30]),
            *(f"lost: {j}" for j in a.lost_jobs[:30]),
            *(f"duplicate: {d}" for d in a.duplicate_keys[:10]),
        ])  # fmt: skip


class Simulators:
    """One simulator per scenario (its faults and output lifetime), each a process."""

    def __init__(self, start: Callable[[Scenario], SimRecord]) -> None:
        self._start = start
        self.records: dict[str, SimRecord] = {}

    def for_scenario(self, scenario: Scenario) -> SimRecord:
        if scenario.name not in self.records:
            self.records[scenario.name] = self._start(scenario)
        return self.records[scenario.name]


def count_faults(records: list[SimRecord], proxies: list[S3ChaosProxy]) -> int:
    """Faults that actually fired: dropped answers, 5xx and 429 answers, failed and stuck
    jobs at the simulators; errors, lost answers and refused requests at S3."""
    total = 0
    for proxy in proxies:
        total += proxy.counts["errors"] + proxy.counts["lost_answers"]
        total += proxy.counts["refused_while_down"]
    for sim in records:
        stats = sim.stats
        total += stats["dropped_responses"] + stats["injected_errors"]
        total += sum(1 for j in sim.jobs if j["status"] in ("failed", "processing", "staged"))
        if sim.expiring:
            total += sum(1 for j in sim.jobs if j["status"] == "completed")
    return total


def s3_outage(proxy: S3ChaosProxy, after: float, seconds: float) -> None:
    """Stop S3 `after` seconds into a scenario, start it `seconds` later."""
    time.sleep(after)
    proxy.stop()
    time.sleep(seconds)
    proxy.start()


def apply_s3(proxy: S3ChaosProxy, scenario: Scenario) -> None:
    proxy.error_rate = scenario.s3_error_rate
    proxy.ledger_lose_rate = scenario.ledger_lose_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--fleet", action="store_true", help="deployments on real workers")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=4, help="worker SIGKILLs in the run")
    parser.add_argument("--server", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    # `timeout` (make chaos) sends SIGTERM: exit through the finally blocks, so that
    # PostgreSQL, the server, the workers and the simulators are all stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.fleet:
        from benchmarks.chaos_fleet import run_fleet

        report = run_fleet(args.seed, args.chains, args.workers, args.kills, args.server,
                           args.log_dir)  # fmt: skip
    else:
        from benchmarks.chaos_local import run_local

        report = run_local(args.seed, args.chains)
    print(report.details(), file=sys.stderr, flush=True)
    print(report.line(), flush=True)
    return 0 if report.holds() else 1


def run_chains(chains: list[Chain], run_one: Callable[[Chain], str], threads: int) -> list[str]:
    """Each chain's error text ('' when it completed), `threads` at a time."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run_one, chains))


def record(report: Report, chains: list[Chain], messages: list[str]) -> None:
    for chain, message in zip(chains, messages, strict=True):
        outcome, allowed = classify(chain.scenario, message)
        report.outcomes[outcome] += 1
        report.chains += 1
        if not allowed:
            report.unexpected.append(f"{chain.name}: {outcome}: {message[:300]}")


def plan_for(total: int, seed: int) -> dict[str, list[Chain]]:
    return plan(total, seed)


def view_of(s3_client: Any, bucket: str) -> S3View:
    return S3View(s3_client, bucket)


def finish(report: Report, sims: Simulators, view: S3View, log_dirs: list[Path],
           proxies: list[S3ChaosProxy]) -> Report:  # fmt: skip
    records = list(sims.records.values())
    report.audit = audit(records, view, log_dirs)
    report.faults = count_faults(records, proxies)
    return report


if __name__ == "__main__":
    sys.exit(main())
