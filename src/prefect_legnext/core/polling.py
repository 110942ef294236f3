"""When to poll a job: status-aware, jittered, scaled to the task type.

The first check comes near the start of the task type's typical duration (no
point asking about a diffusion after 2 s), then intervals shrink while the job
is ``processing`` (it is about to finish) and stay longer while it waits in
``pending``/``staged``. Shared by the sync and async ``wait_for_job``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.core.responses import Job, JobStatus, normalize_task_type

DEFAULT_TYPICAL_SECONDS = (30.0, 90.0)


@dataclass(frozen=True)
class PollPolicy:
    """Poll timing. ``scale`` multiplies every duration: 1.0 for Legnext, the
    simulator's ``time_scale`` (e.g. 0.001) when polling the simulator.

    Attributes:
        first_check: seconds before the first poll; None = the low end of the
            task type's typical duration.
        queued_interval: between polls while ``pending`` or ``staged``.
        processing_interval: between polls while ``processing``.
        unknown_interval: between polls while the status is not one we know.
        jitter: +/- fraction applied to every wait, to spread many pollers.
        min_interval: the floor of any wait, in seconds (after scaling).
    """

    first_check: float | None = None
    queued_interval: float = 10.0
    processing_interval: float = 4.0
    unknown_interval: float = 15.0
    jitter: float = 0.2
    scale: float = 1.0
    min_interval: float = 0.005

    def first_wait(self, task_type: str) -> float:
        if self.first_check is not None:
            return self._jittered(self.first_check)
        endpoint = ENDPOINTS_BY_NAME.get(normalize_task_type(task_type))
        low, _high = endpoint.typical_seconds if endpoint else DEFAULT_TYPICAL_SECONDS
        return self._jittered(low)

    def next_wait(self, job: Job) -> float:
        if job.status == JobStatus.PROCESSING:
            return self._jittered(self.processing_interval)
        if job.status in (JobStatus.PENDING, JobStatus.STAGED):
            return self._jittered(self.queued_interval)
        return self._jittered(self.unknown_interval)

    def _jittered(self, seconds: float) -> float:
        spread = seconds * self.jitter
        return max(self.min_interval, (seconds + random.uniform(-spread, spread)) * self.scale)
