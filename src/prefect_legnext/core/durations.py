"""How long each task type runs, learned online from this process's own finished jobs.

Each task type starts from Legnext's documented typical range (the endpoint table, i.e.
the vendor's numbers) and, once enough of its jobs have finished here, follows their
measured run times (``meta.ended_at - meta.started_at``) instead. Our decisions: how many
samples are kept (a bounded window per task type, a bounded number of task types) and
when the learned samples take over from the documented seed.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import datetime

from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.core.responses import Job, normalize_task_type

DEFAULT_TYPICAL_SECONDS = (30.0, 90.0)
SEED_POINTS = 9  # the documented range, evenly spaced, both ends included
WINDOW = 64  # learned run times kept per task type: the most recent ones
MAX_TASK_TYPES = 64  # unknown task types beyond this are not learned (bounded memory)
LONGEST_PLAUSIBLE = 24 * 3600.0  # a longer "run time" is a clock problem, not a sample


def _seed(task_type: str) -> list[float]:
    endpoint = ENDPOINTS_BY_NAME.get(task_type)
    low, high = endpoint.typical_seconds if endpoint else DEFAULT_TYPICAL_SECONDS
    step = (high - low) / (SEED_POINTS - 1)
    return [low + step * i for i in range(SEED_POINTS)]


def run_seconds(started_at: datetime | None, ended_at: datetime | None) -> float | None:
    """A job's run time from its own timestamps, or None when either is missing or the
    pair makes no sense (Legnext does not promise them: we read leniently)."""
    if started_at is None or ended_at is None:
        return None
    try:
        seconds = (ended_at - started_at).total_seconds()
    except TypeError:  # one naive, one aware
        return None
    return seconds if 0.0 < seconds < LONGEST_PLAUSIBLE else None


class DurationModel:
    """Run-time samples per task type, in Legnext seconds (unscaled); thread safe.

    Until a task type has `SEED_POINTS` learned samples its documented range is part of
    its samples; from then on only what was measured counts.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._learned: dict[str, deque[float]] = {}
        self._sorted: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, task_type: str, seconds: float) -> None:
        if not (0.0 < seconds < LONGEST_PLAUSIBLE) or math.isnan(seconds):
            return
        key = normalize_task_type(task_type)
        with self._lock:
            learned = self._learned.get(key)
            if learned is None:
                if len(self._learned) >= MAX_TASK_TYPES:
                    return
                learned = self._learned[key] = deque(maxlen=self._window)
            learned.append(seconds)
            self._sorted.pop(key, None)

    def observe_job(self, job: Job, scale: float = 1.0) -> None:
        """Learn from a finished job's timestamps (real seconds divided by `scale`, the
        simulator's time scale); a job without usable timestamps teaches nothing."""
        seconds = run_seconds(job.meta.started_at, job.meta.ended_at)
        if seconds is not None and scale > 0 and job.is_completed:
            self.observe(job.task_type, seconds / scale)

    def samples(self, task_type: str) -> list[float]:
        """The sorted samples the schedule reads (a copy-free cached list: do not modify)."""
        key = normalize_task_type(task_type)
        with self._lock:
            cached = self._sorted.get(key)
            if cached is None:
                learned = list(self._learned.get(key, ()))
                seed = _seed(key) if len(learned) < SEED_POINTS else []
                cached = sorted(learned + seed)
                if key in ENDPOINTS_BY_NAME or key in self._learned:
                    self._sorted[key] = cached
            return cached

    def clear(self) -> None:
        """Forget everything learned (tests start from the documented ranges)."""
        with self._lock:
            self._learned.clear()
            self._sorted.clear()

    def learned_count(self, task_type: str) -> int:
        with self._lock:
            return len(self._learned.get(normalize_task_type(task_type), ()))

    def quantile(self, task_type: str, q: float) -> float:
        """The `q` quantile of the run time. Learned samples alone are widened by one
        average gap at each end: the shortest of n runs seen overestimates the shortest
        possible run (by (max - min) / (n - 1) on average for a uniform spread), and a
        first check placed after a job's finish is pure lag."""
        values = self.samples(task_type)
        position = min(max(q, 0.0), 1.0) * (len(values) - 1)
        below = int(position)
        above = min(below + 1, len(values) - 1)
        value = values[below] + (values[above] - values[below]) * (position - below)
        spread = values[-1] - values[0]
        if self.learned_count(task_type) < SEED_POINTS or spread <= 0:
            return value  # the documented range is its own bound
        gap = spread / (len(values) - 1)
        return max(0.0, values[0] - gap + (value - values[0]) * (spread + 2 * gap) / spread)

    def horizon(self, task_type: str, elapsed: float, probability: float) -> float | None:
        """Seconds from `elapsed` until a job still running has finished with the given
        `probability` (conditional on not having finished yet); None when every sample is
        shorter than `elapsed` (the job is overdue)."""
        tail = [s for s in self.samples(task_type) if s > elapsed]
        if not tail:
            return None
        index = max(0, math.ceil(probability * len(tail)) - 1)
        return tail[index] - elapsed


# The process's model: every client and wait of the process learns into it.
DURATIONS = DurationModel()
