"""When to poll a job: around its predicted finish, status-aware, jittered only shorter.

What Legnext tells us (the vendor's side): the status phases (``pending`` -> ``staged`` ->
``processing``), ``meta.started_at`` and the documented typical duration per task type.
Our decisions: the first check comes at the low end of the task type's run time counted
from ``started_at`` (or from now while the job has not started), because no job finishes
sooner; then the waits shrink as the chance that the job has finished rises (the
learned distribution of `durations`), never longer than ``processing_interval``; once the
job runs longer than any sample (overdue) the waits back off, still capped by
``processing_interval``. Jitter only ever shortens a wait, so it can never add detection
lag. Shared by the sync and async ``wait_for_job``; `active_tasks` adds one shared list
read per account on top of this schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from prefect_legnext.core.durations import DEFAULT_TYPICAL_SECONDS, DURATIONS, DurationModel
from prefect_legnext.core.responses import Job, JobStatus

__all__ = ["DEFAULT_TYPICAL_SECONDS", "PollPolicy"]

CLOCK_SKEW = 5.0  # a started_at up to this far in our future is read as "just started"


@dataclass(frozen=True)
class PollPolicy:
    """Poll timing. ``scale`` multiplies every duration: 1.0 for Legnext, the
    simulator's ``time_scale`` (e.g. 0.001) when polling the simulator.

    Attributes:
        first_check: seconds before the first poll; None = the low end of the task
            type's run time (learned, seeded with the documented range), counted from
            the job's ``started_at``.
        queued_interval: the longest wait while ``pending`` (or ``staged`` without a
            ``started_at``): shorter when the task type can finish sooner.
        processing_interval: the longest wait while the job runs (the lag budget of
            per-job polling); waits are shorter near the predicted finish.
        unknown_interval: between polls while the status is not one we know.
        jitter: the fraction by which a wait may be randomly *shortened* (spreads many
            pollers; never lengthens a wait, so it adds no lag). Default 0.1 (was +/-0.2).
        min_interval: the floor of any wait, in seconds (after scaling).
        first_quantile: the quantile of the run time at which the first check comes.
        finish_probability: while running, wait until the job has finished with about
            this probability (given it had not), capped by ``processing_interval``.
        active_tasks_period: seconds between the shared ``GET /api/account/active_tasks``
            reads that cover every waiting job of the process and account (`active_tasks`);
            0 turns them off (per-job GETs only).
        polls_in_flight: the most job polls an async client sends at once; more wait
            their turn (read from the client's own policy). Our decision: when hundreds
            of waits poll at the same moment, httpx's connection pool spends more CPU
            queueing them than the requests cost (measured here, a burst of 500 GETs on
            loopback: 2.1 ms CPU per GET unbounded, 1.1 ms with 8 in flight, and sooner
            done). Raise it for a distant server with many jobs finishing at once.
        durations: the run-time model; None = the process's own (`durations.DURATIONS`).
    """

    first_check: float | None = None
    queued_interval: float = 10.0
    processing_interval: float = 4.0
    unknown_interval: float = 15.0
    jitter: float = 0.1
    scale: float = 1.0
    min_interval: float = 0.005
    first_quantile: float = 0.0
    finish_probability: float = 0.25
    active_tasks_period: float = 2.0
    polls_in_flight: int = 8
    durations: DurationModel | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.polls_in_flight < 1:
            raise ValueError(f"polls_in_flight must be at least 1, not {self.polls_in_flight}")

    @property
    def model(self) -> DurationModel:
        return self.durations if self.durations is not None else DURATIONS

    def first_wait(
        self, task_type: str, started_at: datetime | None = None, now: float | None = None
    ) -> float:
        """Seconds before the first poll of a job of `task_type`; `now` is epoch seconds
        (``time.time()``), needed only with `started_at`."""
        if self.first_check is not None:
            return self._jittered(self.first_check)
        elapsed = self.elapsed(started_at, now) or 0.0
        low = self.model.quantile(task_type, self.first_quantile)
        return self._jittered(max(0.0, low - elapsed))

    def next_wait(self, job: Job, now: float | None = None) -> float:
        """Seconds until the next poll after reading `job` at `now` (epoch seconds)."""
        started = self.elapsed(job.meta.started_at, now)
        running = job.status == JobStatus.PROCESSING or (
            job.status == JobStatus.STAGED and started is not None
        )
        if running:
            return self._jittered(self._running_wait(job.task_type, started))
        if job.status in (JobStatus.PENDING, JobStatus.STAGED):
            return self._jittered(self.queued_wait(job.task_type))
        return self._jittered(self.unknown_interval)

    def queued_wait(self, task_type: str) -> float:
        """Unscaled wait while a job has not started: it cannot finish before its shortest
        run time, so waiting up to that adds no lag."""
        return min(self.queued_interval, self.model.quantile(task_type, self.first_quantile))

    def _running_wait(self, task_type: str, elapsed: float | None) -> float:
        if elapsed is None:
            return self.processing_interval
        low = self.model.quantile(task_type, self.first_quantile)
        if elapsed < low:
            return low - elapsed
        horizon = self.model.horizon(task_type, elapsed, self.finish_probability)
        if horizon is None:  # overdue: back off from short waits up to the cap
            overdue = elapsed - self.model.quantile(task_type, 1.0)
            horizon = overdue / 2
        return min(horizon, self.processing_interval)

    def elapsed(self, started_at: datetime | None, now: float | None) -> float | None:
        """Unscaled seconds the job has been running, or None when unknown (no
        ``started_at``, no clock, or a timestamp our clock cannot agree with)."""
        if started_at is None or now is None or self.scale <= 0:
            return None
        try:
            real = now - started_at.timestamp()
        except (OverflowError, OSError, ValueError):
            return None
        if real < -CLOCK_SKEW * self.scale:
            return None
        return max(real, 0.0) / self.scale

    def scaled(self, seconds: float) -> float:
        return max(self.min_interval, seconds * self.scale)

    def _jittered(self, seconds: float) -> float:
        return max(
            self.min_interval, seconds * (1.0 - random.uniform(0.0, self.jitter)) * self.scale
        )
