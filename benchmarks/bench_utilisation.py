"""Account utilisation (issue 12, target 3): a batch of 60 one-step chains (diffusion)
with the account capped at 6 jobs (``legnext-account`` = 6 and the simulator's own cap 6),
on a running ``prefect server start``, side by side with the same batch holding its
slots through Prefect's own ``prefect.concurrency.sync.concurrency`` (the anchor: what
the flows did before, acquisition retried after the server's ``Retry-After``).

Read from the simulator (never from what the flows report): the makespan (first create
to last completion), the jobs' total run time (``ended_at - started_at``), the ideal
(total / 6), and the peak of jobs in flight (submitted and not finished).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.benchkit import Outcome, Target
from benchmarks.cost_stack import child_main, prefect_server, run_child, stack

CAP = 6
TARGET_RATIO = 1.10


def run(*, quick: bool, workdir: Path) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--jobs", "3", "--time-scale", "0.005"] if quick else ["--jobs", "60"]
    with prefect_server(workdir) as api_url:
        m = run_child("benchmarks.bench_utilisation", api_url, workdir, *args)
    return outcome(m)


def outcome(m: dict[str, Any]) -> Outcome:
    figures = {k: v for k, v in m.items() if isinstance(v, int | float)}
    ratio, peak = figures["utilisation_makespan_ratio"], figures["max_in_flight"]
    return Outcome(
        figures=figures,
        targets=[
            Target(
                f"{m['jobs']} jobs, cap {CAP}: makespan <= {TARGET_RATIO:.2f} x ideal",
                f"{ratio:.3f} x (Prefect's concurrency(): "
                f"{figures['utilisation_makespan_ratio_prefect_concurrency']:.3f} x)",
                ratio <= TARGET_RATIO,
            ),
            Target(f"never more than {CAP} jobs in flight", f"peak {peak:.0f}", peak <= CAP),
        ],
        notes=[
            f"{m['jobs']} diffusion jobs at time_scale {m['time_scale']:g} (mean job "
            f"{figures['mean_job_seconds']:.2f} s); ideal {figures['ideal_seconds']:.1f} s, "
            f"makespan {figures['makespan_seconds']:.1f} s; slot round trips per job "
            f"{figures['slot_round_trips_per_job']:.2f}; load average {m['load']:.1f}.",
            "Slot held while Legnext runs nothing, medians per job: submit dispatch to "
            f"the job's creation {figures['slot_to_create_seconds_median']:.3f} s, the "
            f"job's end to the wait task's return "
            f"{figures['job_end_to_wait_return_seconds_median']:.3f} s (the poll lag).",
        ],
    )


# -- the child ---------------------------------------------------------------------------


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@contextmanager
def _prefect_concurrency_slots() -> Iterator[None]:
    """The anchor: the flows' slot as it was, through Prefect's own context manager."""
    from prefect.concurrency.sync import concurrency

    from prefect_legnext.orchestration import flows
    from prefect_legnext.orchestration.provisioning import ACCOUNT_LEASE_SECONDS, ACCOUNT_LIMIT

    @contextmanager
    def prefect_slot(limit: str = ACCOUNT_LIMIT, *, keep_for_next: bool = False) -> Iterator[None]:
        with concurrency(limit, occupy=1, lease_duration=ACCOUNT_LEASE_SECONDS):
            yield

    ours = flows.account_slot
    flows.account_slot = prefect_slot
    try:
        yield
    finally:
        flows.account_slot = ours


def _batch(jobs: int, time_scale: float, tag: str) -> dict[str, float]:
    import httpx

    from prefect_legnext.orchestration import flows, slots
    from prefect_legnext.orchestration.provisioning import upsert_account_limit

    submits: dict[str, float] = {}  # job id -> when its submit task was dispatched
    waits: dict[str, float] = {}  # job id -> when its wait task came back
    dispatch = flows._dispatch

    def timed_dispatch(task: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        started = time.time()
        result = dispatch(task, name, *args, **kwargs)
        if name.endswith(": submit"):
            job, _reused = result  # submit_step: the job and whether it was reused
            submits[job.job_id] = started
        elif ": wait " in name:
            waits[result.job_id] = time.time()
        return result

    flows._dispatch = timed_dispatch
    with stack(time_scale, concurrency=CAP) as st:
        os.environ.update(st.flow_env())
        upsert_account_limit(CAP)
        trips, kinds = slots.ROUND_TRIPS.total(), dict(slots.ROUND_TRIPS.counts)
        handovers = slots.HANDOVERS.total()
        started = time.perf_counter()
        flows.legnext_batch(
            prompts=[f"{tag} {i}" for i in range(jobs)], steps=["diffusion"],
            max_points=10**8,
        )  # fmt: skip
        wall = time.perf_counter() - started
        trips = slots.ROUND_TRIPS.total() - trips
        handovers = slots.HANDOVERS.total() - handovers
        kinds = {k: v - kinds.get(k, 0) for k, v in slots.ROUND_TRIPS.counts.items()}
        print(f"{tag}: slot requests {kinds}, hand-overs {handovers}", file=sys.stderr)
        peak = st.sim.stats()["peak_in_flight"]
        with httpx.Client(base_url=st.sim.base_url, headers={"x-api-key": st.sim.api_key}) as c:
            metas = {
                j["job_id"]: c.get(f"/api/v1/job/{j['job_id']}").json()["meta"]
                for j in st.sim.jobs()
            }
    flows._dispatch = dispatch
    # Time each job's slot was held but Legnext did not run it: from the submit task's
    # dispatch to the job's creation, and from its end to the wait task's return.
    to_create = [_stamp(m["created_at"]) - submits[j] for j, m in metas.items() if j in submits]
    to_return = [waits[j] - _stamp(m["ended_at"]) for j, m in metas.items() if j in waits]
    created = [_stamp(m["created_at"]) for m in metas.values()]
    ended = [_stamp(m["ended_at"]) for m in metas.values()]
    total = sum(_stamp(m["ended_at"]) - _stamp(m["started_at"]) for m in metas.values())
    makespan = max(ended) - min(created)
    ideal = total / CAP
    return {
        "ratio": makespan / ideal,
        "peak": peak,
        "makespan": makespan,
        "ideal": ideal,
        "mean_job": total / len(metas),
        "wall": wall,
        "trips": trips / len(metas),
        "handovers": handovers / len(metas),
        "to_create": statistics.median(to_create),
        "to_return": statistics.median(to_return),
    }


def child(jobs: int, time_scale: float) -> dict[str, Any]:
    ours = _batch(jobs, time_scale, "ours")
    with _prefect_concurrency_slots():
        anchor = _batch(jobs, time_scale, "anchor")
    return {
        "utilisation_makespan_ratio": ours["ratio"],
        "max_in_flight": ours["peak"],
        "makespan_seconds": ours["makespan"],
        "ideal_seconds": ours["ideal"],
        "mean_job_seconds": ours["mean_job"],
        "batch_wall_seconds": ours["wall"],
        "slot_round_trips_per_job": ours["trips"],
        "slot_handovers_per_job": ours["handovers"],
        "slot_to_create_seconds_median": ours["to_create"],
        "job_end_to_wait_return_seconds_median": ours["to_return"],
        "utilisation_makespan_ratio_prefect_concurrency": anchor["ratio"],
        "max_in_flight_prefect_concurrency": anchor["peak"],
        "jobs": jobs,
        "time_scale": time_scale,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    child_main(__doc__, run, lambda a: child(a.jobs, a.time_scale), jobs=60, time_scale=0.1)


if __name__ == "__main__":
    main()
