"""The cost scenarios of ``make bench`` (issue 12, targets 2, 3, 4 and 6) run end to end
in their quick variants and produce every figure, finite. Never a timing: speed is
read from ``make bench``'s full runs."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest
from benchmarks import bench_import, bench_memory, bench_overhead, bench_utilisation
from benchmarks.benchkit import Outcome
from benchmarks.cost_stack import ENV_PREFECT_API

pytestmark = pytest.mark.timeout(600)

KEYS: dict[ModuleType, set[str]] = {
    bench_overhead: {
        "overhead_ms_per_step", "overhead_ms_per_step_whole_run", "overhead_ms_per_run_fixed",
        "s3_calls_per_step", "s3_calls_per_step_bare", "http_clients_per_run",
        "slot_round_trips_per_step",
    },
    bench_utilisation: {
        "utilisation_makespan_ratio", "max_in_flight",
        "utilisation_makespan_ratio_prefect_concurrency", "slot_round_trips_per_job",
    },
    bench_memory: {"stream_peak_rss_growth_mb", "naive_peak_rss_growth_mb"},
    bench_import: {"import_seconds_core", "import_seconds_sdk"},
}  # fmt: skip


@pytest.fixture
def running_server(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's Prefect test server stands in for ``prefect server start``."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv(ENV_PREFECT_API, str(PREFECT_API_URL.value()))


def _check(outcome: Outcome, module: ModuleType) -> None:
    missing = KEYS[module] - set(outcome.figures)
    assert not missing, missing
    for key, value in outcome.figures.items():
        assert isinstance(value, int | float) and math.isfinite(value), (key, value)
    assert outcome.targets and all(t.text and t.result for t in outcome.targets)


@pytest.mark.usefixtures("running_server")
@pytest.mark.parametrize("module", [bench_overhead, bench_utilisation], ids=lambda m: m.__name__)
def test_the_prefect_cost_scenarios_produce_every_figure(
    module: ModuleType, tmp_path: Path
) -> None:
    _check(module.run(quick=True, workdir=tmp_path), module)


@pytest.mark.parametrize("module", [bench_memory, bench_import], ids=lambda m: m.__name__)
def test_the_memory_and_import_scenarios_produce_every_figure(
    module: ModuleType, tmp_path: Path
) -> None:
    _check(module.run(quick=True, workdir=tmp_path), module)
