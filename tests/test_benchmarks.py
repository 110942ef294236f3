"""The benchmarks run end to end (tiny sizes; speed is measured by `make bench`, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_simulator_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.simulator_throughput", "--jobs", "30",
         "--rounds", "2", "--connections", "4", "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    summary = json.loads(out.read_text())
    assert summary["errors"] == 0
    assert summary["requests_per_round"] == 30 * 4
    assert [r["jobs_held"] for r in summary["rounds"]] == [31, 62]
    assert summary["median_rps"] > 0 and summary["rss_baseline_mib"] > 0
