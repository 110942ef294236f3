"""The clock gauge (core/clock.py): how far Legnext's clock is from ours, measured from
our own creates, shared by the processes of one machine."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from prefect_legnext.core.clock import TRUSTED_SECONDS, ClockGauge, Offset, sample
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.testing import legnext_client_for

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_created_job_bounds_the_offset_by_its_send_and_answer() -> None:
    # Created at 10.5 on Legnext's clock, between our 0.2 and 0.4: offset in 10.1..10.3.
    bounds = sample(_at(10.5), sent=_at(0.2), answered=_at(0.4))
    assert bounds.low == pytest.approx(10.1) and bounds.high == pytest.approx(10.3)


def test_a_whole_second_created_at_means_any_time_within_that_second() -> None:
    # Legnext's samples carry no fraction: "...:10Z" is 10.0 up to 11.0.
    bounds = sample(_at(10), sent=_at(0.2), answered=_at(0.4))
    assert bounds.low == pytest.approx(9.6) and bounds.high == pytest.approx(10.8)


def test_samples_intersect_and_the_answer_may_come_from_a_later_read(tmp_path: Path) -> None:
    gauge = ClockGauge("http://legnext.test", tmp_path)
    assert gauge.offset() is None
    gauge.created("a", _at(10.5), _at(0.2), _at(0.4))  # 10.1..10.3
    gauge.created("b", None, _at(5.0), _at(5.3))  # blank created_at, as Legnext's samples
    assert gauge.offset() == Offset(pytest.approx(10.1), pytest.approx(10.3))  # type: ignore[arg-type]
    gauge.seen("b", _at(15.25))  # the job's first read: 9.95..10.25
    gauge.seen("someone-else", _at(99))  # not ours: ignored
    offset = gauge.offset()
    assert offset is not None
    assert offset.low == pytest.approx(10.1) and offset.high == pytest.approx(10.25)


def test_samples_that_disagree_give_their_hull_not_a_guess(tmp_path: Path) -> None:
    # Two servers whose clocks differ by 2 s: no single offset fits both, so the
    # estimate is wide enough for either (a narrow wrong one could miss a lost job).
    gauge = ClockGauge("http://legnext.test", tmp_path)
    gauge.created("a", _at(10.5), _at(0.2), _at(0.4))  # 10.1..10.3
    gauge.created("b", _at(12.5), _at(0.2), _at(0.4))  # 12.1..12.3
    assert gauge.offset() == Offset(pytest.approx(10.1), pytest.approx(12.3))  # type: ignore[arg-type]


def test_a_fresh_process_starts_from_the_machines_shared_estimate(tmp_path: Path) -> None:
    measured = ClockGauge("http://legnext.test", tmp_path)
    measured.created("a", _at(10.5), _at(0.2), _at(0.4))
    fresh = ClockGauge("http://legnext.test", tmp_path)  # another process, nothing measured
    offset = fresh.offset()
    assert offset is not None  # the shared one, with a margin: another process measured it
    assert offset.low < 10.1 < 10.3 < offset.high and offset.high - offset.low < 1
    other_account = ClockGauge("http://elsewhere.test", tmp_path)
    assert other_account.offset() is None


def test_a_stale_or_unreadable_shared_estimate_is_ignored(tmp_path: Path) -> None:
    gauge = ClockGauge("http://legnext.test", tmp_path)
    gauge.path.write_text(
        json.dumps({"low": 1, "high": 2, "at": time.time() - TRUSTED_SECONDS - 1})
    )
    assert gauge.offset() is None
    gauge.path.write_text("{not json")
    assert gauge.offset() is None


def test_the_client_measures_the_simulators_clock(legnext_simulator_factory: Any) -> None:
    # A simulator whose clock runs 90 s ahead: a create and a read of the job measure
    # it within a fraction of a second, on the client every caller shares.
    sim = legnext_simulator_factory(clock_offset=90.0)
    with legnext_client_for(sim) as client:
        job = client.create(DiffusionRequest(text="what time is it"))
        client.get_job(job.job_id)
        offset = client.clock.offset()
    assert offset is not None
    assert offset.low <= 90.0 <= offset.high and offset.high - offset.low < 1.0


def test_a_steady_estimate_is_shared_again_before_the_others_stop_trusting_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Samples that leave the estimate unchanged still refresh the shared file now and
    # then: other processes trust it for TRUSTED_SECONDS after its last write only.
    from prefect_legnext.core import clock

    gauge = ClockGauge("http://legnext.test", tmp_path)
    gauge.created("a", _at(10.5), _at(0.2), _at(0.4))
    first = json.loads(gauge.path.read_text())["at"]
    monkeypatch.setattr(clock, "REFRESH_SECONDS", 0.0)
    time.sleep(0.01)
    gauge.created("b", _at(10.5), _at(0.2), _at(0.4))  # the same bounds: no change
    assert json.loads(gauge.path.read_text())["at"] > first
    monkeypatch.setattr(clock, "REFRESH_SECONDS", 3600.0)
    again = json.loads(gauge.path.read_text())["at"]
    gauge.created("c", _at(10.5), _at(0.2), _at(0.4))
    assert json.loads(gauge.path.read_text())["at"] == again
