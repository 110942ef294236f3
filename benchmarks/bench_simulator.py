"""The simulator's own throughput and memory (`benchmarks.simulator_throughput`, see
docs/simulator.md) as a `make bench` scenario: no target of issue 12, a figure of the
tool every other scenario runs against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.benchkit import Outcome

ROOT = Path(__file__).resolve().parents[1]


def run(*, quick: bool, workdir: Path) -> Outcome:
    out = workdir / "simulator_throughput.json"
    size = ["--jobs", "30", "--rounds", "2", "--connections", "4"] if quick else []
    subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "benchmarks.simulator_throughput", *size, "--json", str(out)],
        check=True, capture_output=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    summary = json.loads(out.read_text())
    figures = {
        "simulator_rps": round(summary["median_rps"], 1),
        "simulator_p99_ms": round(summary["median_p99_ms"], 1),
        "simulator_errors": summary["errors"],
        "simulator_kib_per_job": round(summary["kib_per_job"], 2),
    }
    notes = [
        f"Simulator: {summary['jobs_per_round']} creates and "
        f"{summary['requests_per_round'] - summary['jobs_per_round']} GETs per round over "
        f"{summary['connections']} connections: median {summary['median_rps']:.0f} req/s, "
        f"p99 {summary['median_p99_ms']:.0f} ms, {summary['errors']} errors, "
        f"{summary['kib_per_job']:.1f} KiB per job held (docs/simulator.md).",
    ]
    return Outcome(figures=figures, notes=notes)
