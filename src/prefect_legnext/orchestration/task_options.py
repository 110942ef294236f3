"""The Prefect options of the Legnext tasks: which failures Prefect retries, and how.

Retries go through Prefect (exponential backoff with jitter) and only for transient
errors: never for bad input, authentication, insufficient points or content rejection.
Shared by the tasks of `prefect_legnext.orchestration.tasks` and the per-endpoint submit tasks
generated from the endpoint table (`prefect_legnext.orchestration._generated_tasks`), which is why
they live below both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from prefect_legnext.core.errors import (
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from prefect_legnext.orchestration.errors import DownloadError, StorageUnavailableError

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (TransportError, ServerError, RateLimitedError)
STORAGE_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (StorageUnavailableError, DownloadError)
# A retried submit reconciles through the ledger before it could POST: safe to retry.
# A ledger that S3 could not reach is transient too: nothing was POSTed without it.
SUBMIT_RETRY_ERRORS = (*TRANSIENT_ERRORS, OutcomeUnknownError, StorageUnavailableError)


def retry_on(*kinds: type[Exception]) -> Callable[[Task[Any, Any], Any, Any], bool]:
    """A `retry_condition_fn`: retry only when the run failed with one of `kinds`."""

    def condition(_task: Task[Any, Any], _task_run: Any, state: Any) -> bool:
        error = state.result(raise_on_failure=False)
        return isinstance(error, kinds)

    condition.__name__ = f"retry_on_{'_'.join(k.__name__ for k in kinds)}"
    return condition


def task_options(name: str, retry_errors: tuple[type[Exception], ...]) -> dict[str, Any]:
    """``@task`` keyword arguments: no result caching, 3 retries with jittered
    exponential backoff, only for `retry_errors`."""
    return {
        "name": name,
        "cache_policy": NO_CACHE,
        "retries": 3,
        "retry_delay_seconds": exponential_backoff(backoff_factor=2),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_on(*retry_errors),
    }


# Every submit task's options; the per-endpoint ones are named ``legnext-<slug>``.
SUBMIT_OPTIONS = task_options("legnext-submit", SUBMIT_RETRY_ERRORS)
