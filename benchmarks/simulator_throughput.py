"""Simulator throughput and memory: mixed create/GET load from a separate process.

The simulator runs as its own process (``prefect-legnext simulator``) so that the
load generator does not share its interpreter. Each round sends creates and GETs
mixed 1:3 over a pool of concurrent connections until the simulator holds the
requested number of jobs, and reports requests per second, latency and the
simulator's resident memory. Rounds are repeated; the report gives medians.

Run: ``make bench`` (or ``python -m benchmarks.simulator_throughput --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.simulators import API_KEY, start_simulator


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def round_of_load(
    base_url: str, jobs: int, gets_per_create: int, connections: int, tag: str
) -> dict[str, Any]:
    latencies: list[float] = []
    job_ids: list[str] = []
    plan = ["create"] * jobs + ["get"] * (jobs * gets_per_create)
    random.Random(0).shuffle(plan)
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(plan):
        queue.put_nowait(item)
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"x-api-key": API_KEY}, limits=limits, timeout=30
    ) as client:
        # Seed one job so early GETs have something to read.
        first = await client.post("/api/v1/diffusion", json={"text": f"{tag} seed"})
        job_ids.append(first.json()["job_id"])

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                index, kind = queue.get_nowait()
                started = time.perf_counter()
                if kind == "create":
                    response = await client.post(
                        "/api/v1/diffusion", json={"text": f"{tag} prompt {index}"}
                    )
                    if response.status_code == 200:
                        job_ids.append(response.json()["job_id"])
                else:
                    job_id = random.choice(job_ids)
                    response = await client.get(f"/api/v1/job/{job_id}")
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(plan),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(plan) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="creates per round")
    parser.add_argument("--gets-per-create", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="1.0 keeps jobs alive (queued/running) during the run")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    process, base_url = start_simulator(args.time_scale)
    try:
        baseline = rss_mib(process.pid)
        results = []
        for number in range(args.rounds):
            result = asyncio.run(
                round_of_load(base_url, args.jobs, args.gets_per_create, args.connections,
                              f"round{number}")
            )  # fmt: skip
            stats = httpx.get(f"{base_url}/_sim/stats", timeout=30).json()
            result["jobs_held"] = stats["jobs_total"]
            result["rss_mib"] = rss_mib(process.pid)
            results.append(result)
            print(
                f"round {number + 1}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}, "
                f"jobs held {result['jobs_held']}, RSS {result['rss_mib']:.1f} MiB",
                flush=True,
            )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    rss_after = [r["rss_mib"] for r in results]
    jobs_added_after_first = max(1, args.jobs * (len(results) - 1))
    summary = {
        "cpu_count": os.cpu_count(),
        "jobs_per_round": args.jobs,
        "requests_per_round": results[0]["requests"],
        "connections": args.connections,
        "median_rps": statistics.median(r["rps"] for r in results),
        "median_p50_ms": statistics.median(r["p50_ms"] for r in results),
        "median_p99_ms": statistics.median(r["p99_ms"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "rss_baseline_mib": baseline,
        "rss_after_each_round_mib": rss_after,
        "kib_per_job": (rss_after[-1] - rss_after[0]) * 1024 / jobs_added_after_first,
        "rounds": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
