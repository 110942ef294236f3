"""Every error prefect-legnext raises, one class per meaning.

Callers branch on the class, never on message text:

- `InvalidRequestError`: our own validation refused the input; nothing was sent.
- `LegnextAPIError` and its subclasses: Legnext answered with an error status.
- `TransportError`: the network failed on a request that is safe to repeat.
- `OutcomeUnknownError`: a paid create was sent but its answer was lost; it may
  or may not have created (and charged) a job. Never retry it blindly.
- `JobFailedError` / `JobTimeoutError`: a job that was accepted did not complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from prefect_legnext.core.responses import Job


class LegnextError(Exception):
    """Base class of every error raised by prefect-legnext."""


class InvalidRequestError(LegnextError, ValueError):
    """The request failed validation before anything was sent (zero paid calls).

    Attributes:
        endpoint: the endpoint name, e.g. ``"inpaint"``.
        problems: ``(field, rule)`` pairs, one per violated rule.
    """

    def __init__(self, endpoint: str, problems: list[tuple[str, str]]) -> None:
        self.endpoint = endpoint
        self.problems = problems
        listed = "; ".join(f"{field}: {rule}" if field else rule for field, rule in problems)
        super().__init__(f"invalid {endpoint} request: {listed}")


class LegnextAPIError(LegnextError):
    """Legnext answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status.
        code: Legnext's own error code from the body, when it sent one.
        message: the human-readable message from the body.
        raw_message: the upstream message, when present (body shapes A and B).
        detail: extra detail from the body, when present.
        job: the task object, for errors sent as a failed task (body shape B).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: int | None = None,
        raw_message: str = "",
        detail: Any = None,
        job: Job | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.raw_message = raw_message
        self.detail = detail
        self.job = job
        extra = f" ({raw_message})" if raw_message and raw_message != message else ""
        super().__init__(f"HTTP {status_code}: {message}{extra}")


class BadRequestError(LegnextAPIError):
    """400, 413 or 422: Legnext refused the parameters."""


class AuthenticationError(LegnextAPIError):
    """401: the API key is missing or wrong."""


class InsufficientPointsError(LegnextAPIError):
    """402: the account's balance cannot cover the job."""


class ContentRejectedError(LegnextAPIError):
    """403: moderation rejected the content, or the account may not use the feature."""


class NotFoundError(LegnextAPIError):
    """404: unknown job."""


class RateLimitedError(LegnextAPIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ServerError(LegnextAPIError):
    """5xx: trouble on Legnext's side."""


class TransportError(LegnextError):
    """The network failed on a request that is safe to repeat (a read, or a create
    that provably never reached the server)."""


class OutcomeUnknownError(LegnextError):
    """A create was sent but its answer was lost: a job may exist and be charged.

    Legnext has no idempotency key, so this is never retried by the client. It
    carries what a caller needs to reconcile: find the job among the account's
    tasks created around ``submitted_at`` with this ``task_type`` and ``body``.

    Attributes:
        endpoint: the endpoint name, e.g. ``"diffusion"``.
        task_type: the task type Legnext would report for the job.
        body: the JSON body that was sent (camelCase, no credentials).
        submitted_at: UTC time just before the request was sent.
        reason: what went wrong, e.g. ``"read timeout"`` or ``"HTTP 502"``.
        status_code: the HTTP status of the answer when one came back (a 5xx, or a
            success whose body could not be read); None when no answer came at all.
        timed_out: no answer came because we stopped waiting for it (a timeout), so
            Legnext may still have been working on the create; False when it answered
            or the connection was closed.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        task_type: str,
        body: Mapping[str, Any],
        submitted_at: datetime,
        reason: str,
        status_code: int | None = None,
        timed_out: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.task_type = task_type
        self.body = dict(body)
        self.submitted_at = submitted_at
        self.reason = reason
        self.status_code = status_code
        self.timed_out = timed_out
        super().__init__(
            f"{endpoint} was sent at {submitted_at.isoformat()} but its outcome is unknown "
            f"({reason}); a job may have been created and charged. Reconcile before resubmitting."
        )


class JobError(LegnextError):
    """Base class for jobs that were accepted but did not complete."""

    def __init__(self, message: str, *, job_id: str, job: Job | None) -> None:
        self.job_id = job_id
        self.job = job
        super().__init__(message)


class JobFailedError(JobError):
    """The job ended with status ``failed``; ``code`` and ``message`` are Legnext's."""

    def __init__(self, job: Job) -> None:
        self.code = job.error.code
        self.message = job.error.message or job.error.raw_message or "no message"
        super().__init__(
            f"job {job.job_id} ({job.task_type}) failed: [{self.code}] {self.message}",
            job_id=job.job_id,
            job=job,
        )


class JobTimeoutError(JobError):
    """The job did not finish before the deadline. It may still finish later.

    Attributes:
        waited_seconds: how long this wait (this attempt, when a task retried) lasted.
        max_wait_seconds: the limit it ran into, when known.
    """

    def __init__(
        self,
        *,
        job_id: str,
        job: Job | None,
        waited_seconds: float,
        max_wait_seconds: float | None = None,
    ) -> None:
        self.waited_seconds = waited_seconds
        self.max_wait_seconds = max_wait_seconds
        status = job.status if job is not None else "unknown"
        limit = (
            f"max_wait_seconds={max_wait_seconds:g} (this wait: {waited_seconds:.1f}s; "
            if max_wait_seconds is not None
            else f"{waited_seconds:.1f}s ("
        )
        super().__init__(
            f"job {job_id} did not finish within {limit}last status: {status})",
            job_id=job_id,
            job=job,
        )


_STATUS_CLASSES: dict[int, type[LegnextAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientPointsError,
    403: ContentRejectedError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


def error_class_for(status_code: int) -> type[LegnextAPIError]:
    """The error class that means ``status_code``."""
    if status_code >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status_code, LegnextAPIError)


def api_error_from_body(
    status_code: int, body: Any, *, retry_after: float | None = None
) -> LegnextAPIError:
    """Build the error for an HTTP error answer from any of Legnext's three body shapes.

    A: ``{"code", "message", "raw_message", "detail"}``; B: a task object with
    ``status: "failed"`` and ``error`` filled; C: ``{"error": {"code", "message"}}``.
    Anything else (an HTML page from a proxy, an empty body) keeps the status.
    """
    from prefect_legnext.core.responses import Job

    code: int | None = None
    message = ""
    raw_message = ""
    detail: Any = None
    job: Job | None = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if "job_id" in body and isinstance(error, Mapping):  # shape B
            try:
                job = Job.model_validate(body)
            except ValidationError:  # too partial to be a task: read its error as shape C
                job = None
        if job is not None:
            code, message = job.error.code, job.error.message
            raw_message, detail = job.error.raw_message, job.error.detail
        elif isinstance(error, Mapping):  # shape C
            code, message = _int_or_none(error.get("code")), str(error.get("message") or "")
        else:  # shape A
            code, message = _int_or_none(body.get("code")), str(body.get("message") or "")
            raw_message, detail = str(body.get("raw_message") or ""), body.get("detail")
    elif isinstance(body, str):
        message = body.strip()[:500]
    cls = error_class_for(status_code)
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "raw_message": raw_message,
        "detail": detail,
        "job": job,
    }
    if cls is RateLimitedError:
        kwargs["retry_after"] = retry_after
    return cls(message or raw_message or "no message", **kwargs)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class MissingExtraError(LegnextError, RuntimeError):
    """An optional dependency (an extra of the package) is not installed."""
