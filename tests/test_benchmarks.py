"""The benchmarks run end to end (tiny sizes; speed is measured by `make bench`, not here)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest


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


POLLING_KEYS = [
    f"{figure}_{side}"
    for figure in ("polls_per_job", "lag_median", "lag_p90", "lag_max")
    for side in ("ours", "sdk")
] + ["polls_per_job_fixed5"]
CAPACITY_KEYS = [
    "cpu_ms_per_poll",
    "cpu_ms_per_poll_sdk",
    "cpu_ms_per_poll_bare",
    "capacity_rss_mib",
]


def test_bench_quick_produces_every_figure(tmp_path: Path) -> None:
    """`make bench`'s scenarios, shrunk (``--quick``): every figure a target is read from
    is produced and finite. Only presence is checked: the quick figures mean nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--only", "polling", "capacity",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "latest.json").read_text())
    for key in [*POLLING_KEYS, *CAPACITY_KEYS, "load_average_1m"]:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value), key
    assert figures["quick"] is True and figures["scenarios_failed"] == []
    assert "| polling | GETs per job" in done.stdout  # the table


CALLBACK_KEYS = [
    "gets_per_job_callback",
    "lag_median_callback",
    "worker_seconds_per_job_callback",
    "worker_seconds_per_job_polling",
]


@pytest.mark.timeout(900)
def test_bench_quick_measures_callback_mode(tmp_path: Path) -> None:
    """The callback scenario end to end (a Prefect server, a worker, the receiver):
    its four figures are produced, and the counts that do not depend on speed hold
    (at most one GET per job)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--quick", "--only", "callbacks",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=840,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "latest.json").read_text())
    for key in CALLBACK_KEYS:
        assert isinstance(figures[key], int | float) and math.isfinite(figures[key]), key
    assert figures["gets_per_job_callback"] <= 1.0  # the bound; 0 when all arrive
    assert figures["worker_seconds_per_job_polling"] > 0


def test_a_failing_scenario_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import bench
    from benchmarks.benchkit import Outcome, Target

    def ok(*, quick: bool, workdir: Path) -> Outcome:
        plot = workdir / "fake-plot.png"
        plot.write_bytes(b"not really a png")
        return Outcome(
            {"answer": 42}, [Target("the answer", "42", True)], ["where it went"], [plot]
        )

    def broken(*, quick: bool, workdir: Path) -> Outcome:
        raise RuntimeError("scenario fell over")

    for name, run in (("fake_broken", broken), ("fake_ok", ok)):
        monkeypatch.setitem(sys.modules, f"benchmarks.bench_{name}", SimpleNamespace(run=run))
    monkeypatch.setattr(bench, "SCENARIOS", ["fake_broken", "fake_ok"])
    committed = tmp_path / "committed"  # where a full run would write: untouched
    monkeypatch.setattr(bench, "RESULTS", committed / "latest.json")
    monkeypatch.setattr(bench, "DOCS", committed)
    out_dir = tmp_path / "out"

    status = bench.main(["--quick", "--out", str(out_dir)])

    assert status == 1
    assert not committed.exists()
    figures = json.loads((out_dir / "latest.json").read_text())
    assert figures["answer"] == 42 and figures["scenarios_failed"] == ["fake_broken"]
    # The page of a partial run, beside its figures: notes, failure, plot, what ran.
    page = (out_dir / "benchmarks.md").read_text()
    assert "Partial run (fake_broken, fake_ok; quick" in page
    assert "| fake_ok | the answer | 42 | yes |" in page and "where it went" in page
    assert "Failed: RuntimeError: scenario fell over" in page
    assert "![fake-plot.png](fake-plot.png)" in page
    assert (out_dir / "fake-plot.png").read_bytes() == b"not really a png"
    out = capsys.readouterr().out
    assert "scenario fell over" in out and "| fake_ok | the answer | 42 | yes |" in out


def test_a_full_run_writes_the_committed_results_and_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --quick, --only or --out, the run replaces bench/results/latest.json and
    docs/benchmarks.md (here pointed at a temporary directory) and says it was full."""
    from benchmarks import bench
    from benchmarks.benchkit import Outcome, Target

    def ok(*, quick: bool, workdir: Path) -> Outcome:
        return Outcome({"answer": 42}, [Target("the answer", "42", True)], ["a note"])

    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_ok", SimpleNamespace(run=ok))
    monkeypatch.setattr(bench, "SCENARIOS", ["fake_ok"])
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results" / "latest.json")
    monkeypatch.setattr(bench, "DOCS", tmp_path / "docs")
    (tmp_path / "docs").mkdir()

    assert bench.main([]) == 0

    assert json.loads((tmp_path / "results" / "latest.json").read_text())["answer"] == 42
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "Last full run:" in page and "Partial run" not in page and "a note" in page
