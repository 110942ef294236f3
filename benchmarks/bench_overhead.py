"""Prefect overhead per chain step (issue 12, target 2), side by side in one run.

Both sides run the classic chain (diffusion -> enhance -> inpaint -> retexture) against
the same simulator (jobs finish in milliseconds: ``time_scale`` 1e-4) and the same S3
(moto behind a counting proxy), alternating, several rounds:

- **bare**: one async httpx client and one boto3 client; per step the POST, the polls
  (the same `PollPolicy` timing as ours), each output's GET and a PUT of it, a sidecar
  PUT; the retexture step gets a presigned URL of the S3 copy, as ours does.
- **ours**: ``legnext_chain`` on an already running ``prefect server start``: task runs,
  the ledger, the account slot, artifacts, events, the run's logs.

A step's time is between the ends of consecutive steps (``STEP_LISTENERS``'s
"persisted" on our side); the overhead per step is the median over rounds of ours
minus bare, for steps 2-4 (inside one run). What a run pays once (flow-run creation,
block/credential resolution, the balance read, the limit check, the summary artifact,
the end of the run) is step 1's extra and the time after the last step: reported as
``overhead_ms_per_run_fixed``, and the whole run's overhead over its 4 steps as
``overhead_ms_per_step_whole_run``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.benchkit import Outcome, Target
from benchmarks.cost_stack import Stack, child_main, prefect_server, run_child, stack

STEPS = 4
TIME_SCALE = 1e-4
TARGET_MS = 60.0
TARGET_S3_CALLS = 8.0


def run(*, quick: bool, workdir: Path) -> Outcome:
    """Measure in a child interpreter pointed at a running Prefect server."""
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = "1" if quick else "7"
    with prefect_server(workdir) as api_url:
        measured = run_child("benchmarks.bench_overhead", api_url, workdir, "--rounds", rounds)
    return outcome(measured)


def outcome(m: dict[str, Any]) -> Outcome:
    figures = {k: v for k, v in m.items() if isinstance(v, int | float)}
    per_step = figures["overhead_ms_per_step"]
    s3 = figures["s3_calls_per_step"]
    targets = [
        Target(
            f"Prefect overhead per chain step <= {TARGET_MS:g} ms vs the bare script",
            f"{per_step:.0f} ms (whole run / steps: "
            f"{figures['overhead_ms_per_step_whole_run']:.0f} ms)",
            per_step <= TARGET_MS,
        ),
        Target(
            f"S3 calls per step <= {TARGET_S3_CALLS:g}",
            f"{s3:.2f} (bare {figures['s3_calls_per_step_bare']:.2f})",
            s3 <= TARGET_S3_CALLS,
        ),
        Target(
            "account-slot round trips per step <= 2",
            f"{figures['slot_round_trips_per_step']:.2f}",
            figures["slot_round_trips_per_step"] <= 2,
        ),
        Target(
            "one HTTP client per credentials and process",
            f"{figures['http_clients_per_run']:.0f} built per run after the first",
            figures["http_clients_per_run"] <= 1,
        ),
    ]
    notes = [
        "Where a step's milliseconds go (ms per step; median and max per call): "
        + "; ".join(
            f"{name} {per_step:.0f} ({median:.0f}, max {longest:.0f})"
            for name, (per_step, median, longest) in m["breakdown"].items()
        ),
        "What a run pays once (ms, medians per run; the steps for comparison): "
        + "; ".join(f"{name} {value:.0f}" for name, value in m["per_run"].items())
        + ". Flow-run heartbeats are off (Prefect 3.8's default): none are sent or joined.",
        f"S3 calls per step by method: {m['s3_methods']}; bare script: {m['s3_methods_bare']}.",
        "Beyond the bare script's PUT per file and per sidecar, a new step writes the ledger "
        "twice and reads it never: the record before its POST (what makes a lost answer "
        "recoverable) and the job record after it (the job's claim is written only when "
        "that record could not be). Counted apart, as calls our process does not make: "
        f"Legnext's fetches of the presigned input URLs we hand it "
        f"({m['presigned_fetches_per_step']:.2f} per step, the same for both sides).",
        f"Steps 2-4 of each run, {m['rounds']} rounds alternating with the bare script; "
        f"load average {m['load']:.1f} on {m['cpus']} CPUs.",
    ]
    return Outcome(figures=figures, targets=targets, notes=notes)


# -- the child: both sides, measured -----------------------------------------------------


async def _bare_chain(st: Stack, s3: Any, prompt: str) -> list[float]:
    """The chain as a bare script; the end time of each step."""
    import httpx

    from prefect_legnext.core.polling import PollPolicy
    from prefect_legnext.core.responses import Job, unwrap_data
    from prefect_legnext.orchestration.flows import DEFAULT_MASK, classic_chain
    from prefect_legnext.orchestration.plans import build_request, plan_chain

    policy = PollPolicy(scale=TIME_SCALE)
    plan = plan_chain(
        classic_chain(prompt, ["diffusion", "enhance", "inpaint", "retexture"], 0, "a boat",
                      DEFAULT_MASK, "as watercolour")
    )  # fmt: skip
    ends: list[float] = []
    name = st.bucket.bucket_name
    async with httpx.AsyncClient(
        base_url=st.sim.base_url, headers={"x-api-key": st.sim.api_key}, timeout=30
    ) as http:
        parent: Job | None = None
        image_url: str | None = None
        for planned in plan.steps:
            needs_url = "img_url" in planned.step.endpoint.request.model_fields
            request = build_request(
                planned.step,
                parent_job_id=parent.job_id if parent else None,
                parent_image_url=image_url if needs_url else None,
            )
            answer = await http.post(planned.step.endpoint.path, json=request.to_wire())
            job = Job.model_validate(unwrap_data(answer.raise_for_status().json()))
            await asyncio.sleep(policy.first_wait(job.task_type))
            while True:
                answer = await http.get(f"/api/v1/job/{job.job_id}")
                job = Job.model_validate(unwrap_data(answer.raise_for_status().json()))
                if job.is_completed:
                    break
                await asyncio.sleep(policy.next_wait(job))
            urls = list(job.output_urls)
            if job.output and job.output.image_url and job.output.image_url not in urls:
                urls.append(job.output.image_url)
            files = []
            for n, url in enumerate(urls):
                body = (await http.get(url)).raise_for_status().content
                key = f"bare/{job.job_id}/{n}.png"
                digest = hashlib.sha256(body).hexdigest()
                s3.put_object(Bucket=name, Key=key, Body=body, Metadata={"sha256": digest})
                files.append({"key": key, "sha256": digest})
            s3.put_object(Bucket=name, Key=f"bare/{job.job_id}/job.json",
                          Body=json.dumps(files).encode())  # fmt: skip
            image_url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": name, "Key": files[0]["key"]}, ExpiresIn=3600
            )
            parent = job
            ends.append(time.perf_counter())
    return ends


def _timed(owner: Any, name: str, into: dict[str, list[float]], label: str) -> None:
    """Wrap ``owner.name`` so that each call's seconds add to ``into[label]`` (a
    measuring probe of this benchmark only)."""
    original = getattr(owner, name)

    def probe(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.setdefault(label, []).append(time.perf_counter() - started)

    setattr(owner, name, probe)


def child(rounds: int) -> dict[str, Any]:
    import os

    from prefect_legnext.core.client import LegnextClient
    from prefect_legnext.orchestration import clients, flows, slots, tasks

    with stack(TIME_SCALE) as st:
        os.environ.update(st.flow_env())
        s3 = st.bucket.credentials.get_s3_client()
        ends: list[float] = []
        flows.STEP_LISTENERS.append(
            lambda e: ends.append(time.perf_counter()) if e.phase == "persisted" else None
        )
        spent: dict[str, list[float]] = {}
        _timed(flows, "_recorded_job", spent, "ledger read + job check")
        _timed(flows, "_dispatch", spent, "task runs (submit, wait, persist)")
        _timed(flows, "_step_artifact", spent, "step artifact")
        _timed(slots, "acquire", spent, "slot acquire")
        _timed(slots, "release", spent, "slot release")
        # The work inside the task runs, so that the task-run machinery is what is left.
        _timed(tasks, "_submit_once", spent, "in task: ledger writes + POST")
        _timed(LegnextClient, "wait_for_job", spent, "in task: polls")
        _timed(tasks, "_persist", spent, "in task: downloads + S3 PUTs")
        per_run: dict[str, list[float]] = {}
        _timed(flows, "resolve_credentials", per_run, "credentials (block lookup)")
        _timed(flows, "resolve_bucket", per_run, "bucket (block lookup)")
        _timed(flows, "get_balance", per_run, "balance task run")
        _timed(flows, "ensure_account_limit", per_run, "legnext-account check")
        _timed(flows, "run_chain", per_run, "the steps (run_chain)")
        _timed(flows.legnext_pipeline, "fn", per_run, "inside the flow function")

        def ours(prompt: str) -> tuple[float, list[float]]:
            ends.clear()
            started = time.perf_counter()
            flows.legnext_chain(prompt=prompt, max_points=10_000)
            return started, [*ends, time.perf_counter()]

        def bare(prompt: str) -> tuple[float, list[float]]:
            started = time.perf_counter()
            return started, asyncio.run(_bare_chain(st, s3, prompt))

        bare("warm-up")
        ours("warm-up")
        built_before = clients.clients_built()
        slot_calls_before = slots.ROUND_TRIPS.total()
        st.proxy.calls.clear()
        st.proxy.presigned.clear()
        spent.clear()
        per_run.clear()
        ours_runs, bare_runs = [], []
        s3_ours: Counter[str] = Counter()
        s3_bare: Counter[str] = Counter()
        for i in range(rounds):
            before = Counter(st.proxy.calls)
            bare_runs.append(bare(f"bare {i}"))
            s3_bare.update(Counter(st.proxy.calls) - before)
            before = Counter(st.proxy.calls)
            ours_runs.append(ours(f"ours {i}"))
            s3_ours.update(Counter(st.proxy.calls) - before)
        built = clients.clients_built() - built_before
        fetched = sum(st.proxy.presigned.values())  # Legnext's reads of our input URLs
        slot_calls = slots.ROUND_TRIPS.total() - slot_calls_before

    def step_times(run: tuple[float, list[float]]) -> list[float]:
        start, marks = run
        points = [start, *marks[:STEPS]]
        return [b - a for a, b in itertools.pairwise(points)]

    bare_steps = [step_times(r) for r in bare_runs]
    our_steps = [step_times(r) for r in ours_runs]
    per_index = [
        statistics.median(s[i] for s in our_steps) - statistics.median(s[i] for s in bare_steps)
        for i in range(STEPS)
    ]
    per_step = statistics.median(per_index[1:]) * 1000
    whole_ours = statistics.median(r[1][-1] - r[0] for r in ours_runs)
    whole_bare = statistics.median(r[1][-1] - r[0] for r in bare_runs)
    whole = (whole_ours - whole_bare) * 1000
    steps_run = rounds * STEPS
    breakdown = {
        label: (1000 * sum(v) / steps_run, 1000 * statistics.median(v), 1000 * max(v))
        for label, v in spent.items()
    }
    runs = {label: 1000 * statistics.median(v) for label, v in per_run.items()}
    inside = runs.pop("inside the flow function")
    runs["Prefect's flow engine (create the run, states, logs, end)"] = 1000 * whole_ours - inside
    return {
        "per_run": runs,
        "overhead_ms_per_step": per_step,
        "overhead_ms_per_step_whole_run": whole / STEPS,
        "overhead_ms_per_run_fixed": whole - per_step * STEPS,
        "bare_ms_per_step": 1000 * whole_bare / STEPS,
        "ours_ms_per_step": 1000 * whole_ours / STEPS,
        "s3_calls_per_step": sum(s3_ours.values()) / steps_run,
        "s3_calls_per_step_bare": sum(s3_bare.values()) / steps_run,
        "presigned_fetches_per_step": fetched / (2 * steps_run),
        "http_clients_per_run": built / rounds,
        "slot_round_trips_per_step": slot_calls / steps_run,
        "s3_methods": dict(s3_ours),
        "s3_methods_bare": dict(s3_bare),
        "breakdown": breakdown,
        "rounds": rounds,
        "load": os.getloadavg()[0],
        "cpus": os.cpu_count() or 1,
    }


def main() -> None:
    child_main(__doc__, run, lambda a: child(a.rounds), rounds=7)


if __name__ == "__main__":
    main()
