"""Target 5: one worker process waiting on 500 jobs (quick: 30): CPU per poll and RSS,
ours and, side by side on the same jobs, the official SDK's own wait (its anchor).

The simulator runs as its own process, so this process's CPU time (``time.process_time``,
user + system, all threads) is the waiting alone: the jobs are created first, then every
wait runs at once on one event loop with our async client and its default policy. CPU
per poll (`cpu_ms_per_poll`) = that CPU time / the HTTP polls the simulator answered (job
GETs and shared active-task list reads): the strict reading, where a list read covering
500 jobs counts as one poll and every waiter's look at it is charged to it. CPU per job
waited on is reported alongside (it is what a worker's capacity depends on).

The SDK (``legnext`` 0.3.0, async client, ``wait_for_completion`` every 3 s, scaled)
waits on the same set of jobs in a process of its own against a simulator of its own,
right after ours: its CPU per poll (`cpu_ms_per_poll_sdk`) says how fast this host
answered the same kind of work (both sides are httpx), since the absolute figure moves
with the host.

The bare floor (`cpu_ms_per_poll_bare`): a plain httpx client with none of our code sends
the same number of requests as our side over the same number of ticks, one active-task
period apart (each tick: one list read and an even share of the job GETs, 8 in flight),
in a process of its own. On a virtual machine whose idle CPU goes cold (measured here: the
same GET costs 1 ms back to back and 4-8 ms after 50-200 ms idle), the CPU of a poll
depends on how many polls share a wake-up; the floor says what this host charges for
that many requests at that many wake-ups, and ours / floor what our code and our
schedule (GETs bunched at the ticks where jobs finish, not spread evenly) add.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_polling import SdkWaiter, job_bodies
from benchmarks.benchkit import Outcome, Target
from benchmarks.simulators import API_KEY, image_server, rss_mib, sim_get, simulators
from prefect_legnext import AsyncLegnextClient, Job, PollPolicy
from prefect_legnext.core.active_tasks import watch_for
from prefect_legnext.core.durations import DurationModel
from prefect_legnext.core.endpoints import ACTIVE_TASKS

FULL = {"jobs": 500, "time_scale": 0.1}
QUICK = {"jobs": 30, "time_scale": 0.01}  # and the simulator in this process
TARGET_MS = 2.0
ROOT = Path(__file__).resolve().parents[1]


async def create_all(base_url: str, bodies: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The jobs, created one by one before any wait starts (not measured)."""
    async with httpx.AsyncClient(
        base_url=base_url, headers={"x-api-key": API_KEY}, timeout=120
    ) as http:
        return [
            (await http.post(f"/api/v1/{slug}", json=body)).raise_for_status().json()
            for slug, body in bodies
        ]


async def wait_all(
    base_url: str, bodies: list[tuple[str, dict[str, Any]]], scale: float
) -> tuple[float, int]:
    """(CPU seconds this process spent waiting on every job at once, looks at the
    shared active-task list by the waiters)."""
    created = await create_all(base_url, bodies)
    poll = PollPolicy(scale=scale, durations=DurationModel())
    async with AsyncLegnextClient(API_KEY, base_url=base_url, poll=poll) as client:
        cpu = time.process_time()
        await asyncio.gather(
            *(client.wait_for_job(Job.model_validate(c), max_wait_seconds=1e5) for c in created)
        )
        return time.process_time() - cpu, watch_for(base_url, API_KEY).looks


async def wait_all_sdk(
    base_url: str, bodies: list[tuple[str, dict[str, Any]]], scale: float
) -> tuple[float, int]:
    """The same with the SDK's own wait, as the polling scenario runs it (no shared
    list: 0 looks)."""
    created = await create_all(base_url, bodies)
    async with SdkWaiter(base_url, scale) as wait:
        cpu = time.process_time()
        await asyncio.gather(*(wait(c) for c in created))
        return time.process_time() - cpu, 0


async def replay_bare(
    base_url: str, bodies: list[tuple[str, dict[str, Any]]], scale: float, lists: int, gets: int
) -> tuple[float, int]:
    """Our side's request count without our code: `lists` ticks (at least one) one list
    period apart, counted from each tick's start as our list reader does; each tick one
    active-task list read (none when ours read no list) and an even share of `gets` job
    GETs, 8 in flight at most."""
    created = await create_all(base_url, bodies)
    ids = [c["job_id"] for c in created]
    policy = PollPolicy(scale=scale)
    period = policy.active_tasks_period * scale
    gate = asyncio.Semaphore(policy.polls_in_flight)
    ticks = max(lists, 1)
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": API_KEY}) as http:

        async def read(path: str) -> Any:
            async with gate:
                return (await http.get(path)).raise_for_status().json()

        loop = asyncio.get_running_loop()
        cpu, sent, start = time.process_time(), 0, loop.time()
        for tick in range(1, ticks + 1):
            due = round(tick * gets / ticks) - sent
            paths = [f"/api/v1/job/{ids[(sent + k) % len(ids)]}" for k in range(due)]
            paths += [ACTIVE_TASKS.path] if lists else []
            await asyncio.gather(*(read(p) for p in paths))
            sent += due
            await asyncio.sleep(max(0.0, start + tick * period - loop.time()))
        return time.process_time() - cpu, 0


Side = Callable[..., Coroutine[Any, Any, tuple[float, int]]]
SIDES: dict[str, Side] = {"ours": wait_all, "sdk": wait_all_sdk, "bare": replay_bare}


def worker(
    side: str, base_url: str, images: str, count: int, scale: float, *pattern: int
) -> dict[str, float]:
    """The waiting worker: CPU seconds and its RSS (current, peak) in MiB. `pattern`: the
    bare side's (our list reads, our job GETs)."""
    cpu, looks = asyncio.run(SIDES[side](base_url, job_bodies(count, images), scale, *pattern))
    rss, peak = rss_mib()
    return {"cpu": cpu, "looks": looks, "rss": rss, "peak": peak}


def measure(
    side: str, images: str, count: int, scale: float, quick: bool, *pattern: int
) -> dict[str, Any]:
    """One side's figures, against a simulator of its own: the worker's and the polls
    the simulator answered."""
    with simulators(1, scale, concurrency=count, quick=quick) as (url,):
        if quick:  # no process to start; the figures do not count
            measured: dict[str, Any] = worker(side, url, images, count, scale, *pattern)
        else:  # a worker process of its own: its CPU and RSS are the waiting alone
            command = [sys.executable, "-m", "benchmarks.bench_capacity", side, url, images,
                       str(count), str(scale), *map(str, pattern)]  # fmt: skip
            done = subprocess.run(  # noqa: S603 - our own module
                command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800
            )
            measured = json.loads(done.stdout)
        requests = sim_get(url, "/_sim/stats")["requests"]
    return measured | {"requests": requests}


def polls_in(requests: dict[str, int]) -> int:
    """The HTTP polls a simulator answered: job GETs and active-task list reads."""
    return requests.get("GET job", 0) + requests.get("GET active_tasks", 0)


def run(*, quick: bool, workdir: Path) -> Outcome:
    settings = QUICK if quick else FULL
    count, scale = int(settings["jobs"]), float(settings["time_scale"])
    with image_server() as images:
        measured = measure("ours", images, count, scale, quick)
        requests = measured["requests"]
        lists = requests.get("GET active_tasks", 0)
        bare = measure("bare", images, count, scale, quick, lists, requests.get("GET job", 0))
        sdk = measure("sdk", images, count, scale, quick)
    sdk_polls = sdk["requests"].get("GET job", 0)
    sdk_per_poll = sdk["cpu"] * 1000 / max(sdk_polls, 1)
    polls = polls_in(requests)
    cpu, rss, peak = measured["cpu"], measured["rss"], measured["peak"]
    job_looks = requests.get("GET job", 0) + measured["looks"]  # each job status learned
    per_poll = cpu * 1000 / max(polls, 1)
    bare_polls = polls_in(bare["requests"])
    bare_per_poll = bare["cpu"] * 1000 / max(bare_polls, 1)
    figures = {
        "capacity_jobs": count,
        "capacity_time_scale": scale,
        "capacity_polls": polls,
        "capacity_list_reads": requests.get("GET active_tasks", 0),
        "cpu_ms_per_poll": round(per_poll, 3),
        "cpu_ms_per_poll_sdk": round(sdk_per_poll, 3),
        "capacity_polls_sdk": sdk_polls,
        "cpu_ms_per_poll_bare": round(bare_per_poll, 3),
        "capacity_polls_bare": bare_polls,
        "capacity_cpu_seconds_bare": round(bare["cpu"], 3),
        "capacity_cpu_seconds_sdk": round(sdk["cpu"], 3),
        "capacity_cpu_ms_per_job": round(cpu * 1000 / count, 3),
        "capacity_cpu_ms_per_job_look": round(cpu * 1000 / max(job_looks, 1), 3),
        "capacity_cpu_seconds": round(cpu, 3),
        "capacity_rss_mib": round(rss, 1),
        "capacity_peak_rss_mib": round(peak, 1),
    }
    targets = [
        Target(f"CPU per poll <= {TARGET_MS} ms, {count} jobs in one process",
               f"{per_poll:.2f} ms ({polls} polls, RSS {rss:.0f} MiB; bare floor "
               f"{bare_per_poll:.2f} ms; SDK {sdk_per_poll:.2f} ms, {sdk_polls} polls)",
               per_poll <= TARGET_MS),
    ]  # fmt: skip
    notes = [
        f"Capacity: one process waiting on {count} mixed jobs (time_scale {scale}): "
        f"{cpu:.2f} s CPU for {polls} polls ({requests.get('GET job', 0)} job GETs, "
        f"{requests.get('GET active_tasks', 0)} shared active-task list reads) = "
        f"{per_poll:.2f} ms per poll (process CPU time / HTTP polls), "
        f"{cpu * 1000 / count:.2f} ms per job waited on, {cpu * 1000 / max(job_looks, 1):.3f} "
        f"ms per job-look ({job_looks} looks at a job's status: its GETs and each "
        f"waiter's look at a shared list). RSS {rss:.0f} MiB "
        f"(peak {peak:.0f} MiB) of the worker process.",
        f"The SDK's own wait on the same {count} jobs, right after, in a process of its "
        f"own: {sdk['cpu']:.2f} s CPU for {sdk_polls} job GETs = {sdk_per_poll:.2f} ms per "
        f"poll, {sdk['cpu'] * 1000 / count:.2f} ms per job (ours / SDK per poll: "
        f"{per_poll / max(sdk_per_poll, 1e-9):.2f} x). Both sides' requests are httpx's; "
        "the absolute figures move with the host (see the import row's SDK time).",
        f"The bare floor: a plain httpx client sending as many requests ({bare_polls}) over "
        f"as many ticks one list period apart ({max(lists, 1)}: each a list read, when ours "
        f"read any, and about {requests.get('GET job', 0) / max(lists, 1):.1f} job GETs, "
        f"spread evenly): {bare['cpu']:.2f} s CPU = {bare_per_poll:.2f} ms per poll "
        f"(ours / floor: {per_poll / max(bare_per_poll, 1e-9):.2f} x: our code and our "
        "schedule). On a host whose idle CPU goes cold, most of a poll's CPU is the "
        "wake-up it shares with the few polls of its tick.",
    ]
    return Outcome(figures=figures, targets=targets, notes=notes)


if __name__ == "__main__":
    side, url, images, count, scale = sys.argv[1:6]
    pattern = map(int, sys.argv[6:])
    print(json.dumps(worker(side, url, images, int(count), float(scale), *pattern)))
