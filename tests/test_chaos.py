"""The chaos suite's short seeded run (issue 11): one chain per scenario, every
scenario at once, in process, on the session's temporary Prefect server. ``make
chaos`` runs the large one on a PostgreSQL-backed server with process workers that
are SIGKILLed (docs/reliability.md). Counted from the simulators' records and S3, never from what
the flows report."""

from __future__ import annotations

import pytest
from benchmarks.chaos import Report
from benchmarks.chaos_local import run_local

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SEED = 11
CHAINS = 7  # one per scenario


@pytest.fixture(scope="module")
def report(prefect_server: None) -> Report:
    return run_local(SEED, CHAINS, harness=False)


def test_every_chain_is_counted_once(report: Report) -> None:
    o = report.outcomes
    assert report.chains == CHAINS
    assert o["completed"] + o["outcome_unknown"] + o["failed"] == CHAINS


def test_no_step_paid_twice_and_no_key_leaked(report: Report) -> None:
    assert report.audit.duplicates == 0, report.details()
    assert report.audit.leaked == 0
    assert report.rerun_new_jobs == 0, report.details()
    assert report.rerun_changed_objects == 0, report.details()


def test_nothing_lost_and_only_allowed_outcomes(report: Report) -> None:
    assert report.audit.lost == 0, report.details()
    assert report.unexpected == [], report.details()
