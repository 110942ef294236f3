"""Target 1: GETs per job and detection lag, ours vs the official SDK vs a fixed 5 s loop.

The same mixed jobs go to one simulator per poller (same seed, same bodies, so the same
durations), created on the same staggered schedule; each poller runs in its own process
and waits on all of its jobs at once. Detection lag = when the waiter returned minus the simulator's
``ended_at`` for the job, divided by the time scale (unscaled Legnext seconds). GETs
per job count every GET the simulator answered: job reads and active-task list reads.

The mix stands in for imagine/upscale/variation/edits/video with parentless endpoints of
the same duration classes (diffusion; blend as variation/reroll, 60-90 s; retexture as
upscale and the edits, 90-120 s; remove-background, describe, shorten; video from an
image URL, 3-6 min): a follow-up's body names its parent's job id, which differs between
simulator instances and would change its seeded duration. The account cap is lifted
(every job runs at once) so lags are measured against runs, not a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.benchkit import Figure, Outcome, Target
from benchmarks.simulators import API_KEY, image_server, sim_get, simulators, timestamp
from prefect_legnext import AsyncLegnextClient, Job, PollPolicy
from prefect_legnext.core.durations import DurationModel

# start_delay: seconds for every poller process to import before the first create (a late
# one creates its overdue jobs at once: lags are per job, so it only shifts its schedule).
FULL = {"jobs": 72, "time_scale": 0.3, "spacing": 1.0, "start_delay": 15.0}
QUICK = {"jobs": 12, "time_scale": 0.01, "spacing": 1.0, "start_delay": 0.0}
SDK_INTERVAL = 3.0  # legnext 0.3.0: tasks.wait_for_completion(poll_interval=3.0)
FIXED_INTERVAL = 5.0
ROOT = Path(__file__).resolve().parents[1]
MIX = [  # (slug, duration class), one cycle of 12
    "diffusion", "diffusion", "diffusion", "diffusion", "blend", "retexture", "retexture",
    "remove-background", "describe", "shorten", "video-diffusion", "video-diffusion",
]  # fmt: skip


def job_bodies(count: int, images: str) -> list[tuple[str, dict[str, Any]]]:
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        slug = MIX[i % len(MIX)]
        options: dict[str, dict[str, Any]] = {
            "diffusion": {"text": f"bench lighthouse {i} --v 7"},
            "blend": {
                "imgUrls": [f"{images}/a{i}.png", f"{images}/b{i}.png"],
                "aspect_ratio": "1:1",
            },
            "retexture": {"imgUrl": f"{images}/r{i}.png", "remixPrompt": f"brass {i}"},
            "remove-background": {"imgUrl": f"{images}/c{i}.png"},
            "describe": {"imgUrl": f"{images}/d{i}.png"},
            "shorten": {"prompt": f"a very long and winding prompt number {i} about dawn"},
            "video-diffusion": {"prompt": f"{images}/v{i}.png a slow pan {i}"},
        }
        bodies.append((slug, options[slug]))
    return bodies


Waiter = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Poller:
    """One side of the comparison: a name, its settings and its simulator."""

    name: str
    label: str
    make: Callable[[str, float], Any]  # (base_url, time_scale) -> async context of a waiter
    base_url: str = ""
    detected: dict[str, float] = field(default_factory=dict)


class OursWaiter:
    def __init__(self, base_url: str, scale: float, **policy: Any) -> None:
        poll = PollPolicy(scale=scale, durations=DurationModel(), **policy)
        self.client = AsyncLegnextClient(API_KEY, base_url=base_url, poll=poll)

    async def __aenter__(self) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def wait(created: dict[str, Any]) -> Any:
            return await self.client.wait_for_job(Job.model_validate(created), max_wait_seconds=1e5)

        return wait

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


class SdkWaiter:
    """The official SDK's own wait with its defaults (3 s fixed), scaled like the jobs."""

    def __init__(self, base_url: str, scale: float) -> None:
        import legnext

        self.client = legnext.AsyncClient(API_KEY, base_url=f"{base_url}/api")
        self.interval = SDK_INTERVAL * scale

    async def __aenter__(self) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        await self.client.__aenter__()

        async def wait(created: dict[str, Any]) -> Any:
            return await self.client.tasks.wait_for_completion(
                created["job_id"], timeout=1e5, poll_interval=self.interval
            )

        return wait

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)


class FixedWaiter:
    """The bare loop: sleep 5 s, GET, until the job finished."""

    def __init__(self, base_url: str, scale: float) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers={"x-api-key": API_KEY})
        self.interval = FIXED_INTERVAL * scale

    async def __aenter__(self) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        async def wait(created: dict[str, Any]) -> Any:
            while True:
                await asyncio.sleep(self.interval)
                body = (await self.http.get(f"/api/v1/job/{created['job_id']}")).json()
                if body.get("status") in ("completed", "failed"):
                    return body

        return wait

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()


def pollers(quick: bool) -> list[Poller]:
    def ours(**policy: Any) -> Callable[[str, float], Any]:
        return lambda url, scale: OursWaiter(url, scale, **policy)

    chosen = [
        Poller("ours", "ours (default: list every 2 s)", ours()),
        Poller("sdk", "legnext 0.3.0 SDK (3 s)", SdkWaiter),
        Poller("fixed5", "fixed 5 s loop", FixedWaiter),
    ]
    if not quick:
        chosen += [
            Poller("ours_per_job", "ours, per-job GETs only (4 s cap)",
                   ours(active_tasks_period=0)),
            Poller("ours_list1s", "ours, list every 1 s", ours(active_tasks_period=1.0)),
            Poller("ours_list4s", "ours, list every 4 s", ours(active_tasks_period=4.0)),
            Poller("ours_per_job2s", "ours, per-job only (2 s cap)",
                   ours(active_tasks_period=0, processing_interval=2.0)),
            Poller("ours_per_job8s", "ours, per-job only (8 s cap)",
                   ours(active_tasks_period=0, processing_interval=8.0)),
        ]  # fmt: skip
    return chosen


async def drive(poller: Poller, bodies: list[tuple[str, dict[str, Any]]], scale: float,
                spacing: float, start_at: float) -> None:  # fmt: skip
    """Create the jobs on the shared schedule (from `start_at`, epoch seconds) and wait
    on each with this poller."""
    async with (
        httpx.AsyncClient(
            base_url=poller.base_url, headers={"x-api-key": API_KEY}, timeout=60
        ) as http,
        poller.make(poller.base_url, scale) as wait,
    ):

        async def one(index: int, slug: str, body: dict[str, Any]) -> None:
            await asyncio.sleep(max(0.0, start_at + index * spacing * scale - time.time()))
            response = await http.post(f"/api/v1/{slug}", json=body)
            response.raise_for_status()
            created = response.json()
            # A failed job (e.g. an input the loaded machine served too late) is detected
            # too: each poller raises its own error when it sees it.
            with contextlib.suppress(Exception):
                await wait(created)
            poller.detected[created["job_id"]] = time.time()

        await asyncio.gather(*(one(i, slug, body) for i, (slug, body) in enumerate(bodies)))


def side_by_side(
    chosen: list[Poller], images: str, settings: dict[str, float], quick: bool
) -> None:
    """Every poller in its own process (so that one poller's load on an event loop does
    not delay another's), all creating on one schedule that starts once they imported.
    ``quick``: all in this process, on one event loop (seconds to start)."""
    if quick:
        bodies = job_bodies(int(settings["jobs"]), images)
        start_at = time.time()

        async def all_sides() -> None:
            await asyncio.gather(
                *(drive(p, bodies, settings["time_scale"], settings["spacing"], start_at)
                  for p in chosen)
            )  # fmt: skip

        asyncio.run(all_sides())
        return
    timing = json.dumps({**settings, "start_at": time.time() + settings["start_delay"]})
    processes = []
    for poller in chosen:
        command = [sys.executable, "-m", "benchmarks.bench_polling", poller.name,
                   poller.base_url, images, timing]  # fmt: skip
        processes.append(
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
        )
    for poller, process in zip(chosen, processes, strict=True):
        out, _ = process.communicate(timeout=3600)
        if process.returncode != 0:
            raise RuntimeError(f"poller {poller.name} failed ({process.returncode})")
        poller.detected = json.loads(out)


def child(name: str, base_url: str, images: str, raw: str) -> None:
    """One poller's side of `side_by_side`: prints job id -> detection time (JSON)."""
    settings = json.loads(raw)
    poller = next(p for p in pollers(quick=False) if p.name == name)
    poller.base_url = base_url
    bodies = job_bodies(int(settings["jobs"]), images)
    asyncio.run(drive(poller, bodies, settings["time_scale"], settings["spacing"],
                      settings["start_at"]))  # fmt: skip
    print(json.dumps(poller.detected))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def measure(poller: Poller, scale: float) -> dict[str, float]:
    jobs = sim_get(poller.base_url, "/_sim/jobs")
    requests = sim_get(poller.base_url, "/_sim/stats")["requests"]
    lags: list[float] = []
    fractions: list[float] = []
    for job in jobs:
        ended, started = timestamp(job["ended_at"]), timestamp(job["started_at"])
        assert ended is not None and started is not None, f"{poller.name}: job not finished"
        lag = (poller.detected[job["job_id"]] - ended) / scale
        lags.append(lag)
        fractions.append(lag / ((ended - started) / scale))
    job_gets = requests.get("GET job", 0)
    list_gets = requests.get("GET active_tasks", 0)
    return {
        "failed_jobs": sum(job["status"] == "failed" for job in jobs),
        "polls_per_job": (job_gets + list_gets) / len(jobs),
        "list_reads_per_job": list_gets / len(jobs),
        "lag_median": statistics.median(lags),
        "lag_p90": quantile(lags, 0.9),
        "lag_max": max(lags),
        "lag_fraction_median": statistics.median(fractions),
        "lag_fraction_p90": quantile(fractions, 0.9),
    }


def plot(results: dict[str, dict[str, float]], labels: dict[str, str], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for name, figures in results.items():
        colour = "tab:blue" if name.startswith("ours") else "tab:red"
        if name == "fixed5":
            colour = "tab:gray"
        x = figures["polls_per_job"]
        axis.plot([x, x], [figures["lag_median"], figures["lag_p90"]], color=colour, lw=1)
        axis.scatter([x], [figures["lag_median"]], color=colour, marker="o")
        axis.scatter([x], [figures["lag_p90"]], color=colour, marker="^")
        axis.annotate(labels[name], (x, figures["lag_p90"]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")  # fmt: skip
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_xlabel("GETs per job (job reads + active-task list reads), log scale")
    axis.set_ylabel("detection lag, unscaled s (o median, ^ p90)")
    axis.set_title("Polling trade-off: same mixed jobs, side by side")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(*, quick: bool, workdir: Path) -> Outcome:
    settings = QUICK if quick else FULL
    scale, count = float(settings["time_scale"]), int(settings["jobs"])
    chosen = pollers(quick)
    with (
        image_server() as images,
        simulators(len(chosen), scale, concurrency=count, quick=quick) as urls,
    ):
        for poller, url in zip(chosen, urls, strict=True):
            poller.base_url = url
        side_by_side(chosen, images, settings, quick)
        results = {p.name: measure(p, scale) for p in chosen}
    figures: dict[str, Figure] = {"polling_jobs": count, "polling_time_scale": scale}
    for name, values in results.items():
        for key, value in values.items():
            figures[f"{key}_{name}"] = round(value, 3)
    ours, sdk = results["ours"], results["sdk"]
    ratio = ours["polls_per_job"] / sdk["polls_per_job"]
    lag_ok = all(ours[k] <= sdk[k] for k in ("lag_median", "lag_p90", "lag_max"))
    targets = [
        Target("GETs per job <= 1/3 of the SDK's",
               f"{ours['polls_per_job']:.1f} vs {sdk['polls_per_job']:.1f} ({ratio:.2f}x)",
               ratio <= 1 / 3),
        Target("detection lag median/p90/max <= the SDK's (unscaled s)",
               "ours {:.2f}/{:.2f}/{:.2f}, SDK {:.2f}/{:.2f}/{:.2f}".format(
                   ours["lag_median"], ours["lag_p90"], ours["lag_max"],
                   sdk["lag_median"], sdk["lag_p90"], sdk["lag_max"]),
               lag_ok),
    ]  # fmt: skip
    labels = {p.name: p.label for p in chosen}
    notes = [
        f"Polling: {count} mixed jobs per poller, time_scale {scale}, one simulator each "
        "(same seed and bodies, so the same durations); lags in unscaled seconds.",
        "",
        "| poller | GETs/job | of which list reads | lag median | p90 | max | "
        "lag/duration median | p90 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in results.items():
        notes.append(
            f"| {labels[name]} | {v['polls_per_job']:.1f} | {v['list_reads_per_job']:.1f} | "
            f"{v['lag_median']:.2f} | {v['lag_p90']:.2f} | {v['lag_max']:.2f} | "
            f"{v['lag_fraction_median']:.3f} | {v['lag_fraction_p90']:.3f} |"
        )
    failed = {name: int(v["failed_jobs"]) for name, v in results.items() if v["failed_jobs"]}
    if failed:
        notes.append(f"\nJobs that failed (counted: a failure is detected like a completion): "
                     f"{failed}.")  # fmt: skip
    path = workdir / "bench-polling.png"
    plot(results, labels, path)
    return Outcome(figures=figures, targets=targets, notes=notes, plots=[path])


if __name__ == "__main__":
    child(*sys.argv[1:5])
