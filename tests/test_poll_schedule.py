"""The poll schedule (issue 12): first check from ``started_at``, waits that shrink near
the predicted finish, jitter that only shortens, and run times learned online within a
bounded memory. Pure decisions: no clock, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prefect_legnext import Job, PollPolicy
from prefect_legnext.core.durations import (
    MAX_TASK_TYPES,
    SEED_POINTS,
    WINDOW,
    DurationModel,
    run_seconds,
)

NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def exact(**fields: Any) -> PollPolicy:
    return PollPolicy(jitter=0.0, durations=DurationModel(), **fields)


def running(task_object: Any, seconds_ago: float, task_type: str = "diffusion") -> Job:
    body = task_object(status="processing", task_type=task_type)
    body["meta"]["started_at"] = (NOW - timedelta(seconds=seconds_ago)).isoformat()
    return Job.model_validate(body)


def test_the_first_check_counts_from_started_at() -> None:
    policy = exact()
    started = NOW - timedelta(seconds=20)
    # diffusion runs 30-90 s: 20 s in, no finish is possible for another 10 s
    assert policy.first_wait("diffusion", started, NOW.timestamp()) == pytest.approx(10.0)
    assert policy.first_wait("diffusion") == pytest.approx(30.0)  # not started: from now
    late = NOW - timedelta(seconds=45)
    assert policy.first_wait("diffusion", late, NOW.timestamp()) == policy.min_interval


def test_a_started_at_in_our_future_is_read_leniently() -> None:
    policy = exact()
    ahead = NOW + timedelta(seconds=2)  # within clock skew: "just started"
    assert policy.first_wait("diffusion", ahead, NOW.timestamp()) == pytest.approx(30.0)
    far = NOW + timedelta(days=1)  # our clocks disagree: ignored, not trusted
    assert policy.first_wait("diffusion", far, NOW.timestamp()) == pytest.approx(30.0)


def test_waits_shrink_as_the_finish_nears_and_back_off_capped_when_overdue(
    task_object: Any,
) -> None:
    policy = exact(processing_interval=10.0)
    now = NOW.timestamp()
    early, late = (policy.next_wait(running(task_object, s), now) for s in (40.0, 87.0))
    assert early == pytest.approx(10.0)  # capped by processing_interval
    assert late < 4.0  # 87 s into a 30-90 s run: the finish is close
    overdue = [policy.next_wait(running(task_object, 90 + s), now) for s in (2, 8, 60, 600)]
    assert overdue == sorted(overdue) and overdue[0] < overdue[-1]  # backing off...
    assert overdue[-1] == pytest.approx(10.0)  # ...never past the cap


def test_jitter_only_ever_shortens_a_wait(task_object: Any) -> None:
    model = DurationModel()
    plain = PollPolicy(jitter=0.0, durations=model)
    jittered = PollPolicy(jitter=0.3, durations=model)
    job = running(task_object, 50.0)
    now = NOW.timestamp()
    firsts = [jittered.first_wait("upscale") for _ in range(300)]
    nexts = [jittered.next_wait(job, now) for _ in range(300)]
    assert all(0.7 * 90.0 <= w <= plain.first_wait("upscale") for w in firsts)
    assert all(w <= plain.next_wait(job, now) for w in nexts)
    assert max(firsts) - min(firsts) > 1.0  # spread, not constant


def test_learned_run_times_move_the_schedule(task_object: Any) -> None:
    model = DurationModel()
    policy = PollPolicy(jitter=0.0, durations=model)
    assert policy.first_wait("diffusion") == pytest.approx(30.0)  # the documented low end
    body = task_object(status="completed")
    body["meta"]["started_at"] = "2026-01-05T12:00:00Z"
    body["meta"]["ended_at"] = "2026-01-05T12:00:50Z"
    for _ in range(SEED_POINTS):
        model.observe_job(Job.model_validate(body))
    assert model.learned_count("diffusion") == SEED_POINTS
    assert policy.first_wait("diffusion") == pytest.approx(50.0)  # what this account sees
    assert policy.first_wait("upscale") == pytest.approx(90.0)  # other types untouched


def test_a_few_samples_blend_with_the_documented_range() -> None:
    model = DurationModel()
    model.observe("diffusion", 10.0)  # one fast job: the seed still counts
    assert model.quantile("diffusion", 0.0) == 10.0
    assert model.quantile("diffusion", 1.0) == 90.0


def test_jobs_without_usable_timestamps_teach_nothing(task_object: Any) -> None:
    model = DurationModel()
    for meta in (
        {"started_at": "", "ended_at": "2026-01-05T12:00:50Z"},
        {"started_at": "0001-01-01T00:00:00Z", "ended_at": "0001-01-01T00:00:00Z"},
        {"started_at": "2026-01-05T12:01:00Z", "ended_at": "2026-01-05T12:00:00Z"},
    ):
        body = task_object(status="completed")
        body["meta"].update(meta)
        model.observe_job(Job.model_validate(body))
    assert model.learned_count("diffusion") == 0
    assert run_seconds(None, NOW) is None


def test_memory_is_bounded() -> None:
    model = DurationModel()
    for i in range(10 * WINDOW):
        model.observe("diffusion", 40.0 + i % 7)
    assert model.learned_count("diffusion") == WINDOW
    for i in range(MAX_TASK_TYPES + 50):
        model.observe(f"made_up_{i}", 12.0)
    assert sum(model.learned_count(f"made_up_{i}") for i in range(MAX_TASK_TYPES + 50)) < (
        MAX_TASK_TYPES
    )


def test_learned_samples_are_widened_at_the_low_end() -> None:
    """The shortest of a few runs seen overestimates the shortest possible run: the
    first check comes a gap before it, not at it."""
    model = DurationModel()
    for seconds in range(200, 380, 20):  # 9 runs, 200..360 s
        model.observe("video_diffusion", float(seconds))
    policy = PollPolicy(jitter=0.0, durations=model)
    assert policy.first_wait("video_diffusion") == pytest.approx(180.0)  # 200 - one gap
