"""The client's retry policy, in one screen.

Reads (GET job, account) are free and idempotent: retried on 429, 5xx and
network errors. Creates are paid and Legnext has no idempotency key: retried
only when the request provably never reached the server (connection not
established, or refused locally before sending) or was refused before acceptance
(429). Any other failure of a create after sending becomes `OutcomeUnknownError`
and is never re-sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from prefect_legnext.core.errors import LegnextError, RateLimitedError, ServerError, TransportError

# Raised by httpx before a single byte of the request left this machine. h11 refuses
# a request it cannot frame (e.g. an illegal header value) while building its head,
# before writing; our bodies carry an exact Content-Length, so no body error comes later.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, honouring ``Retry-After``.

    A ``Retry-After`` is waited exactly, never shortened: when it is longer than
    ``max_delay``, or would end past ``max_total``, the client does not retry early but
    raises the `RateLimitedError`, whose ``retry_after`` says how long Legnext asked
    the caller to wait.

    Attributes:
        max_attempts: total tries, the first included.
        initial_delay: the first backoff, in seconds.
        max_delay: the longest single wait; a longer ``Retry-After`` is not waited here
            but raised.
        max_total: no retry starts once this many seconds have passed in all, and none
            whose wait would end past it.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1): the
        server's ``Retry-After`` as given, else jittered exponential backoff."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        ceiling = min(self.initial_delay * 2 ** (attempt - 1), self.max_delay)
        return random.uniform(ceiling / 2, ceiling)

    def next_delay(
        self, attempt: int, elapsed: float, error: LegnextError, *, is_create: bool
    ) -> float | None:
        """The wait before the next try, or None when ``error`` must be raised."""
        if not is_retryable(error, is_create=is_create) or attempt >= self.max_attempts:
            return None
        retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
        wait = self.delay(attempt, retry_after)
        if wait > self.max_delay or elapsed + wait > self.max_total:
            return None  # a Retry-After this long is the caller's to wait, not ours
        return wait


NO_RETRY = RetryPolicy(max_attempts=1)


def is_retryable(error: LegnextError, *, is_create: bool) -> bool:
    """Whether repeating the request is both useful and safe."""
    if isinstance(error, RateLimitedError):
        return True
    if is_create:
        # A create reaches here as TransportError only when it was never sent.
        return isinstance(error, TransportError)
    return isinstance(error, ServerError | TransportError)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, from either its delta-seconds or its HTTP-date form."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": zone unknown, read as UTC
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
