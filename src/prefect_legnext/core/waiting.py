"""One `wait_for_job` call's polling decisions, shared by the sync and async clients:
per-job GETs on the `PollPolicy` schedule, and, while the account's shared active-task
list answers (`active_tasks`), looks at that list instead of GETs until the job leaves it.
"""

from __future__ import annotations

from prefect_legnext.core.active_tasks import OFF_SECONDS, ActiveTasksWatch, Reading
from prefect_legnext.core.polling import PollPolicy
from prefect_legnext.core.responses import Job, JobStatus

QUEUED = frozenset({JobStatus.PENDING.value})


class JobWait:
    """The state of one wait: whether the list may stand in for GETs of this job."""

    def __init__(
        self, poll: PollPolicy, job_id: str, task_type: str, watch: ActiveTasksWatch | None
    ) -> None:
        self.poll = poll
        self.job_id = job_id
        self.task_type = task_type
        self.watch = watch if poll.active_tasks_period > 0 else None
        if self.watch is not None:
            self.watch.period = max(poll.min_interval, poll.active_tasks_period * poll.scale)
        self.off_for = OFF_SECONDS * poll.scale
        self._confirming = False

    def uses_list(self, now: float) -> bool:
        """Whether the next look is at the shared list (`now`: monotonic seconds)."""
        return self.watch is not None and self.watch.is_on(now)

    def after_reading(self, reading: Reading | None, now: float) -> float | None:
        """Seconds until the next look, or None when the job must be read now: the list
        failed, or the job left it (finished, most likely: one GET confirms)."""
        if reading is None or self.watch is None:
            return None
        status = reading.statuses.get(self.job_id)
        if status is None:
            self._confirming = True
            return None
        if status in QUEUED:  # not started: it cannot finish before its shortest run time
            return self.poll.scaled(self.poll.queued_wait(self.task_type))
        return max(self.poll.min_interval, self.watch.next_due(now))

    def after_get(self, job: Job, now: float) -> float:
        """Seconds until the next look after a GET that found `job` unfinished (`now`:
        epoch seconds, for ``started_at``)."""
        if job.task_type:
            self.task_type = job.task_type
        if self._confirming:
            # Left the list but still running: this account's list does not show every
            # job (paged, truncated or late), so it cannot stand in for this job's GETs.
            self.watch = None
            self._confirming = False
        return self.poll.next_wait(job, now)
