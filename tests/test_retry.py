"""Retries: free reads are repeated within bounds; a paid create is repeated only when it
provably never reached Legnext, and a lost answer becomes OutcomeUnknownError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from prefect_legnext import (
    AuthenticationError,
    BadRequestError,
    ContentRejectedError,
    InsufficientPointsError,
    LegnextAPIError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from prefect_legnext.core.retry import NO_RETRY, is_retryable, retry_after_seconds

JOB = "9b2f6c1e-3d4a-4f5b-8c7d-0e1f2a3b4c5d"
HOOK = "https://hooks.example.test/legnext"
JOB_PATH = f"/api/v1/job/{JOB}"
POLICY = RetryPolicy(max_attempts=4, initial_delay=0.001, max_delay=0.01, max_total=5.0)
SLOW_POLICY = RetryPolicy(max_attempts=4, initial_delay=1.0, max_delay=30.0, max_total=120.0)
LOST_AFTER_SENDING = [
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteTimeout,
    httpx.WriteError,
]
NEVER_SENT = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]


def problem(status: int, **headers: str) -> httpx.Response:
    body = {"code": status, "message": f"status {status}", "raw_message": "", "detail": None}
    return httpx.Response(status, json=body, headers=headers)


# --- creates: sent once unless provably unsent ----------------------------------------------------


@pytest.mark.parametrize("lost", LOST_AFTER_SENDING)
def test_create_lost_after_sending_is_outcome_unknown_after_one_call(
    legnext: Any, api: Any, lost: type[Exception]
) -> None:
    route = api.post("/api/v1/video-diffusion").mock(side_effect=lost)
    before = datetime.now(UTC)

    with pytest.raises(OutcomeUnknownError) as info:
        legnext.with_options(
            {"retry": POLICY},
            "video_diffusion",
            job_id=JOB.upper(),
            image_no=1,
            video_type=1,
            callback=HOOK,
        )

    assert route.call_count == 1
    error = info.value
    assert error.endpoint == "video_diffusion"
    assert error.task_type == "video_diffusion"
    assert error.body == {"jobId": JOB, "imageNo": 1, "videoType": 1, "callback": HOOK}
    assert before <= error.submitted_at <= datetime.now(UTC)
    assert lost.__name__ in error.reason
    assert "may have been created and charged" in str(error)
    assert not isinstance(error, TransportError | LegnextAPIError)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_answered_by_5xx_is_outcome_unknown_after_one_call(
    legnext: Any, api: Any, status: int
) -> None:
    route = api.post("/api/v1/diffusion").mock(return_value=problem(status))

    with pytest.raises(OutcomeUnknownError) as info:
        legnext.with_options({"retry": POLICY}, "diffusion", text="a cat")

    assert route.call_count == 1
    assert info.value.reason == f"HTTP {status}"
    assert info.value.body == {"text": "a cat"}
    assert info.value.endpoint == "diffusion"


@pytest.mark.parametrize("answer", ["<html>ok</html>", '{"job_id": 12}', "[]"])
def test_create_with_an_unreadable_success_is_outcome_unknown(
    legnext: Any, api: Any, answer: str
) -> None:
    route = api.post("/api/v1/shorten").respond(200, text=answer)

    with pytest.raises(OutcomeUnknownError) as info:
        legnext.with_options({"retry": POLICY}, "shorten", prompt="a long prompt")

    assert route.call_count == 1
    assert info.value.reason == "unreadable answer"


@pytest.mark.parametrize("unsent", NEVER_SENT)
def test_create_that_never_connected_is_retried(
    legnext: Any, api: Any, task_object: Any, unsent: type[Exception]
) -> None:
    route = api.post("/api/v1/remove-background").mock(
        side_effect=[unsent, unsent, httpx.Response(200, json=task_object(job_id=JOB))]
    )

    job = legnext.with_options(
        {"retry": POLICY}, "remove_background", img_url="https://img.example.test/a.png"
    )

    assert job.job_id == JOB
    assert route.call_count == 3
    for call in route.calls:  # the same body each time
        assert call.request.content == route.calls[0].request.content


def test_create_that_never_connects_gives_up_with_a_transport_error(legnext: Any, api: Any) -> None:
    route = api.post("/api/v1/diffusion").mock(side_effect=httpx.ConnectError)
    with pytest.raises(TransportError):
        legnext.with_options({"retry": POLICY}, "diffusion", text="a cat")
    assert route.call_count == POLICY.max_attempts


def test_create_refused_with_429_is_retried_after_retry_after(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    route = api.post("/api/v1/diffusion").mock(
        side_effect=[
            problem(429, **{"Retry-After": "3"}),
            problem(429, **{"Retry-After": "0.5"}),
            httpx.Response(200, json=task_object(job_id=JOB)),
        ]
    )

    job = legnext.with_options({"retry": SLOW_POLICY}, "diffusion", text="a cat")

    assert job.job_id == JOB
    assert route.call_count == 3
    assert fake_clock.sleeps == [3.0, 0.5]


def test_retry_after_as_an_http_date_is_honoured(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    api.post("/api/v1/diffusion").mock(
        side_effect=[problem(429, **{"Retry-After": when}), httpx.Response(200, json=task_object())]
    )

    legnext.with_options({"retry": SLOW_POLICY}, "diffusion", text="a cat")

    [waited] = fake_clock.sleeps
    assert 17.0 <= waited <= 20.0


@pytest.mark.parametrize("call", ["create", "get"])
def test_retry_after_longer_than_max_delay_is_raised_not_retried_early(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any, call: str
) -> None:
    answers = [problem(429, **{"Retry-After": "3600"}), httpx.Response(200, json=task_object())]
    if call == "create":
        route = api.post("/api/v1/diffusion").mock(side_effect=answers)
        args: tuple[Any, ...] = ("diffusion",)
        kwargs: dict[str, Any] = {"text": "a cat"}
    else:
        route = api.get(JOB_PATH).mock(side_effect=answers)
        args, kwargs = ("get_job", JOB), {}

    with pytest.raises(RateLimitedError) as info:
        legnext.with_options({"retry": SLOW_POLICY}, *args, **kwargs)

    assert info.value.retry_after == 3600.0  # the caller waits as Legnext asked
    assert route.call_count == 1  # no early retry after max_delay (30 s)
    assert fake_clock.sleeps == []


def test_retry_after_within_max_delay_is_waited_exactly(
    legnext: Any, api: Any, task_object: Any, fake_clock: Any
) -> None:
    route = api.post("/api/v1/diffusion").mock(
        side_effect=[
            problem(429, **{"Retry-After": str(SLOW_POLICY.max_delay)}),
            httpx.Response(200, json=task_object(job_id=JOB)),
        ]
    )
    job = legnext.with_options({"retry": SLOW_POLICY}, "diffusion", text="a cat")
    assert job.job_id == JOB and route.call_count == 2
    assert fake_clock.sleeps == [SLOW_POLICY.max_delay]


# --- reads: retried on 5xx, 429 and network errors, within max_attempts and max_total -------------


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (lambda request: problem(500), ServerError),
        (lambda request: problem(503), ServerError),
        (lambda request: problem(429), RateLimitedError),
        (httpx.ReadTimeout, TransportError),
        (httpx.ConnectError, TransportError),
        (httpx.RemoteProtocolError, TransportError),
    ],
    ids=["500", "503", "429", "read-timeout", "connect-error", "protocol-error"],
)
@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_get_retries_stop_at_max_attempts(
    legnext: Any, api: Any, fake_clock: Any, answer: Any, raised: type, attempts: int
) -> None:
    route = api.get(JOB_PATH).mock(side_effect=answer)
    policy = RetryPolicy(max_attempts=attempts, initial_delay=0.5, max_delay=8.0)

    with pytest.raises(raised):
        legnext.with_options({"retry": policy}, "get_job", JOB)

    assert route.call_count == attempts
    assert len(fake_clock.sleeps) == attempts - 1


def test_get_recovers_after_a_transient_failure(legnext: Any, api: Any, task_object: Any) -> None:
    route = api.get(JOB_PATH).mock(
        side_effect=[
            problem(502),
            httpx.ReadTimeout,
            problem(429, **{"Retry-After": "0"}),
            httpx.Response(200, json=task_object(job_id=JOB, status="processing")),
        ]
    )
    job = legnext.with_options({"retry": POLICY}, "get_job", JOB)
    assert job.status == "processing"
    assert route.call_count == 4


def test_get_retries_respect_max_total_with_retry_after(
    legnext: Any, api: Any, fake_clock: Any
) -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, max_delay=30.0, max_total=25.0)
    route = api.get(JOB_PATH).mock(return_value=problem(429, **{"Retry-After": "10"}))

    with pytest.raises(RateLimitedError) as info:
        legnext.with_options({"retry": policy}, "get_job", JOB)

    # t=0 fail, wait 10; t=10 fail, wait 10; t=20 fail: another 10 s would pass 25 s.
    assert route.call_count == 3
    assert fake_clock.sleeps == [10.0, 10.0]
    assert info.value.retry_after == 10.0


def test_get_retries_respect_max_total_with_backoff(
    legnext: Any, api: Any, fake_clock: Any
) -> None:
    policy = RetryPolicy(max_attempts=100, initial_delay=1.0, max_delay=1.0, max_total=3.2)
    route = api.get(JOB_PATH).mock(return_value=problem(500))

    with pytest.raises(ServerError):
        legnext.with_options({"retry": policy}, "get_job", JOB)

    assert sum(fake_clock.sleeps) <= policy.max_total
    assert all(0.5 <= s <= 1.0 for s in fake_clock.sleeps)
    assert 4 <= route.call_count <= 8  # each wait is 0.5..1 s, and they fit in 3.2 s


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
@pytest.mark.parametrize("call", ["get_job", "diffusion"])
def test_4xx_are_never_retried(
    legnext: Any, api: Any, fake_clock: Any, status: int, call: str
) -> None:
    route = api.route(path__regex=r"^/api/v1/(job/.*|diffusion)$").mock(
        return_value=problem(status)
    )
    args: dict[str, Any] = {"text": "a cat"} if call == "diffusion" else {"job_id": JOB}

    with pytest.raises(LegnextAPIError) as info:
        legnext.with_options({"retry": SLOW_POLICY}, call, **args)

    assert info.value.status_code == status
    assert route.call_count == 1
    assert fake_clock.sleeps == []


def test_no_retry_policy_makes_one_call(legnext: Any, api: Any) -> None:
    route = api.get(JOB_PATH).mock(return_value=problem(503))
    with pytest.raises(ServerError):
        legnext.with_options({"retry": NO_RETRY}, "get_job", JOB)
    assert route.call_count == 1


def test_each_retry_is_logged(
    legnext: Any, api: Any, fake_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(JOB_PATH).mock(return_value=problem(503))
    with pytest.raises(ServerError):
        legnext.with_options({"retry": POLICY}, "get_job", JOB)
    retries = [r for r in caplog.records if r.name == "prefect_legnext.core.client"]
    assert len(retries) == POLICY.max_attempts - 1
    assert all("ServerError" in r.getMessage() for r in retries)


# --- RetryPolicy and Retry-After, as units --------------------------------------------------------


@pytest.mark.parametrize("attempt", range(1, 8))
def test_delay_is_jittered_exponential_backoff_capped_at_max_delay(attempt: int) -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0)
    ceiling = min(0.5 * 2 ** (attempt - 1), 8.0)
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jitter spreads clients apart


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(3.0, 3.0), (0.0, 0.0), (-2.0, 0.0), (8.0, 8.0), (99, 99)]
)
def test_delay_is_the_retry_after_never_shortened(retry_after: float, expected: float) -> None:
    assert RetryPolicy(max_delay=8.0).delay(1, retry_after) == expected


@pytest.mark.parametrize(("retry_after", "retried"), [(8.0, True), (8.01, False), (3600, False)])
def test_next_delay_refuses_a_retry_after_beyond_max_delay(
    retry_after: float, retried: bool
) -> None:
    policy = RetryPolicy(max_attempts=5, max_delay=8.0, max_total=100.0)
    error = RateLimitedError("slow down", retry_after=retry_after, status_code=429)
    expected = retry_after if retried else None
    assert policy.next_delay(1, 0.0, error, is_create=True) == expected
    assert policy.next_delay(1, 0.0, error, is_create=False) == expected


def error_of(cls: type[LegnextAPIError], status: int, **extra: Any) -> LegnextAPIError:
    return cls("x", status_code=status, **extra)


UNKNOWN = OutcomeUnknownError(
    endpoint="diffusion", task_type="diffusion", body={}, submitted_at=datetime.now(UTC), reason="x"
)


@pytest.mark.parametrize(
    ("error", "for_read", "for_create"),
    [
        (error_of(ServerError, 500), True, False),
        (error_of(RateLimitedError, 429), True, True),
        (TransportError("connect failed"), True, True),
        (UNKNOWN, False, False),
        (error_of(BadRequestError, 400), False, False),
        (error_of(AuthenticationError, 401), False, False),
        (error_of(InsufficientPointsError, 402), False, False),
        (error_of(ContentRejectedError, 403), False, False),
        (error_of(NotFoundError, 404), False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_what_is_retryable(error: Any, for_read: bool, for_create: bool) -> None:
    assert is_retryable(error, is_create=False) is for_read
    assert is_retryable(error, is_create=True) is for_create
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01)
    assert (policy.next_delay(1, 0.0, error, is_create=False) is not None) is for_read
    assert (policy.next_delay(1, 0.0, error, is_create=True) is not None) is for_create


def test_next_delay_stops_at_max_attempts_and_max_total() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=1.0, max_delay=1.0, max_total=10.0)
    error = error_of(ServerError, 500)
    assert policy.next_delay(2, 0.0, error, is_create=False) is not None
    assert policy.next_delay(3, 0.0, error, is_create=False) is None
    assert policy.next_delay(1, 9.0, error, is_create=False) is not None  # 9 + (0.5..1) fits
    assert policy.next_delay(1, 9.6, error, is_create=False) is None  # 9.6 + (0.5..1) does not


def test_next_delay_uses_the_servers_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, max_delay=60.0, max_total=100.0)
    error = RateLimitedError("slow down", retry_after=42.0, status_code=429)
    assert policy.next_delay(1, 0.0, error, is_create=True) == 42.0
    assert policy.next_delay(1, 60.0, error, is_create=True) is None  # 60 + 42 > 100


def test_no_retry_policy() -> None:
    assert NO_RETRY.max_attempts == 1
    assert NO_RETRY.next_delay(1, 0.0, error_of(ServerError, 500), is_create=False) is None


def retry_after(value: str | None) -> float | None:
    headers = {} if value is None else {"Retry-After": value}
    return retry_after_seconds(httpx.Response(429, headers=headers))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0", 0.0), ("0.5", 0.5), (" 12 ", 12.0), ("-3", 0.0), (None, None)],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after(value) == seconds


@pytest.mark.parametrize("value", ["soon", "", "Thursday", "Wed, 99 Foo 2015 99:99:99 GMT"])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert retry_after(value) is None


def test_retry_after_as_an_http_date() -> None:
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    waited = retry_after(future)
    assert waited is not None and 27.0 <= waited <= 30.0
    assert retry_after(past) == 0.0


def test_retry_after_as_a_date_without_a_zone_reads_as_utc() -> None:
    # RFC 5322's "-0000" (zone unknown) parses to a naive datetime; it must not crash.
    when = datetime.now(UTC) + timedelta(seconds=30)
    waited = retry_after(when.strftime("%a, %d %b %Y %H:%M:%S -0000"))
    assert waited is not None and 27.0 <= waited <= 30.0
