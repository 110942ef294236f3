"""HTTP clients for Legnext: `LegnextClient` (sync) and `AsyncLegnextClient`.

Both share one request-building and response-reading path (`_ClientCore`) and
differ only in how they send and sleep. Each create endpoint in
`endpoints.CREATE_ENDPOINTS` is a method of both clients, named after it
(`client.diffusion(text=...)`, `client.remove_background(img_url=...)`), taking
the request's fields as typed snake_case keyword arguments: the methods are
generated from the table into `_generated_client` (``make generate``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from prefect_legnext.core._generated_client import _AsyncEndpoints, _SyncEndpoints
from prefect_legnext.core.active_tasks import watch_for
from prefect_legnext.core.clock import gauge_for
from prefect_legnext.core.endpoints import (
    ACCOUNT_INFO,
    ACTIVE_TASKS,
    BALANCE,
    GET_JOB,
    CreateEndpoint,
    QueryEndpoint,
    endpoint_for,
)
from prefect_legnext.core.errors import (
    InvalidRequestError,
    JobFailedError,
    JobTimeoutError,
    LegnextError,
    OutcomeUnknownError,
    TransportError,
    api_error_from_body,
)
from prefect_legnext.core.models import LegnextRequest, parse_job_id
from prefect_legnext.core.polling import PollPolicy
from prefect_legnext.core.responses import AccountInfo, ActiveTasks, Balance, Job, unwrap_data
from prefect_legnext.core.retry import (
    NOT_SENT_ERRORS,
    RetryPolicy,
    is_retryable,
    retry_after_seconds,
)
from prefect_legnext.core.waiting import JobWait

DEFAULT_BASE_URL = "https://api.legnext.ai"
ENV_API_KEY = "LEGNEXT_API_KEY"
ENV_BASE_URL = "LEGNEXT_BASE_URL"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DEFAULT_MAX_WAIT_SECONDS = 900.0
ACTIVE_TASKS_TIMEOUT = 5.0  # one try, short: the list is a shortcut, never needed
REDACTED = "**********"

logger = logging.getLogger("prefect_legnext.core.client")

ModelT = TypeVar("ModelT", bound=BaseModel)
JobUpdateHook = Callable[[Job], None]

try:
    _VERSION = version("prefect-legnext")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "0"


API_KEY_HEADER = "x-api-key"


def clean_api_key(value: str | SecretStr, source: str = "api_key") -> SecretStr:
    """The key without surrounding whitespace (a key pasted from a file or a mounted
    secret often ends in a newline), as a `SecretStr`.

    Raises:
        ValueError: the key is empty, or has a character an HTTP header cannot carry
            (whitespace or a control character inside, or non-ASCII); the message
            names `source` and never shows the key.
    """
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    key = raw.strip()
    if not key:
        raise ValueError(f"{source} is empty: set {ENV_API_KEY} or pass api_key")
    if not all("!" <= char <= "~" for char in key):  # visible ASCII only
        raise ValueError(
            f"{source} has whitespace, a control character or a non-ASCII character "
            "inside it (the key is not shown): copy the key again"
        )
    return SecretStr(key)


def key_renderings(key: str) -> list[str]:
    """Every way `key` can show up in text: as is and stripped, each also as the inside
    of its str repr and of its bytes repr (h11 says "Illegal header value b'KEY\\n'");
    longest first, so a longer rendering is replaced before a part of it."""
    forms: set[str] = set()
    for variant in (key, key.strip()):
        forms.add(variant)
        forms.add(repr(variant)[1:-1])
        forms.add(repr(variant.encode("utf-8", "backslashreplace"))[2:-1])
    return sorted((form for form in forms if form), key=len, reverse=True)


def redact(text: str, key: str) -> str:
    """`text` with every rendering of `key` replaced by `REDACTED`."""
    for form in key_renderings(key):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


class _SecretHeaders(httpx.Headers):
    """Request headers whose repr masks the key (httpx masks only ``authorization``),
    e.g. in ``repr(exc.request.headers)`` or a logged request."""

    def __repr__(self) -> str:
        items = [(k, REDACTED if k.lower() == API_KEY_HEADER else v) for k, v in self.items()]
        return f"{type(self).__name__}({dict(items)!r})"


class _ApiKeyAuth(httpx.Auth):
    """Adds ``x-api-key`` at send time, so the key never sits in client defaults."""

    def __init__(self, api_key: SecretStr) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers = _SecretHeaders(request.headers)
        request.headers[API_KEY_HEADER] = self._api_key.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(api_key=SecretStr('**********'))"


@dataclass(frozen=True)
class _WaitWindow:
    """One `wait_for_job` call's clock (monotonic seconds): when it started, when it must
    end, and the ``max_wait_seconds`` it was given (for the error)."""

    started: float
    end: float
    max_wait_seconds: float

    @classmethod
    def open(cls, max_wait_seconds: float, deadline: float | None) -> _WaitWindow:
        """`max_wait_seconds` from now, or less when the wall-clock `deadline` (epoch
        seconds, set by the flow's process or an earlier attempt) comes first."""
        now = time.monotonic()
        end = now + max_wait_seconds
        if deadline is not None:
            end = min(end, now + (deadline - time.time()))
        return cls(started=now, end=end, max_wait_seconds=max_wait_seconds)

    def left(self) -> float:
        return self.end - time.monotonic()

    def cannot_fit(self, backoff: float | None, transient: bool) -> bool:
        """Whether a transient failure ends the wait as a timeout, not a transport error:
        the deadline has come, or the retry's `backoff` would end past it."""
        if not transient:
            return False
        return self.left() <= 0 or (backoff is not None and backoff >= self.left())

    def capped(self, seconds: float) -> float:
        """`seconds`, shortened so that a sleep ends by the deadline."""
        return min(seconds, max(self.left(), 0.0))

    def timeout(self, job_id: str, job: Job | None) -> JobTimeoutError:
        return JobTimeoutError(
            job_id=job_id,
            job=job,
            waited_seconds=time.monotonic() - self.started,
            max_wait_seconds=self.max_wait_seconds,
        )


class _DeadlineReached(Exception):
    """A read of a wait could not finish, or be retried, before the wait's deadline;
    `wait_for_job` turns it into `JobTimeoutError` (it never leaves the client)."""


@asynccontextmanager
async def _place_at(
    gate: asyncio.Semaphore | None, window: _WaitWindow | None
) -> AsyncIterator[None]:
    """Hold a place at `gate` (nothing to hold without one), taken within the time
    `window` has left.

    Raises:
        _DeadlineReached: no place came free in time.
    """
    if gate is None:
        yield
        return
    try:
        async with asyncio.timeout(None if window is None else max(window.left(), 0.0)):
            await gate.acquire()
    except TimeoutError:
        raise _DeadlineReached("no place among the polls in flight came free in time") from None
    try:
        yield
    finally:
        gate.release()


class _ClientCore:
    """Everything the two clients share: configuration, request building,
    response reading, error mapping and the retry and polling decisions."""

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        *,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        if api_key is None:
            from_env = os.environ.get(ENV_API_KEY, "")
            if not from_env.strip():
                raise ValueError(f"no API key: pass api_key or set {ENV_API_KEY}")
            self._api_key = clean_api_key(from_env, ENV_API_KEY)
        else:
            self._api_key = clean_api_key(api_key)
        if base_url is None:
            base_url = os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.clock = gauge_for(self.base_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _http_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": self._timeout,
            "auth": _ApiKeyAuth(self._api_key),
            "headers": {"accept": "application/json", "user-agent": f"prefect-legnext/{_VERSION}"},
            "follow_redirects": False,
        }

    def _timeout_within(self, window: _WaitWindow | None) -> httpx.Timeout:
        """The client's timeouts, each cut to the time `window` has left, so that a slow
        answer cannot carry a wait past its deadline.

        Raises:
            _DeadlineReached: no time is left.
        """
        if window is None:
            return self._timeout
        left = window.left()
        if left <= 0:
            raise _DeadlineReached("no time left")

        def cut(seconds: float | None) -> float:
            return left if seconds is None else min(seconds, left)

        t = self._timeout
        return httpx.Timeout(
            connect=cut(t.connect), read=cut(t.read), write=cut(t.write), pool=cut(t.pool)
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key.get_secret_value())

    def _failure(
        self,
        response: httpx.Response,
        create: CreateEndpoint | None,
        body: Mapping[str, Any] | None,
        submitted_at: datetime,
    ) -> LegnextError | None:
        """The error an answer means, or None for success."""
        if response.is_success:
            return None
        if create is not None and response.status_code >= 500:
            return self._unknown(
                create, body, submitted_at, f"HTTP {response.status_code}", response.status_code
            )
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        # A server may echo request headers back: redact the key before the body is read,
        # so that it reaches no part of the error (message, detail, the attached job).
        return api_error_from_body(
            response.status_code,
            self._redact_json(payload),
            retry_after=retry_after_seconds(response),
        )

    def _redact_json(self, value: Any) -> Any:
        """Decoded JSON (or text) with the key redacted from every string in it."""
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, list):
            return [self._redact_json(item) for item in value]
        if isinstance(value, dict):
            return {self._redact_json(k): self._redact_json(v) for k, v in value.items()}
        return value

    def _transport_failure(
        self,
        exc: httpx.TransportError,
        create: CreateEndpoint | None,
        body: Mapping[str, Any] | None,
        submitted_at: datetime,
        what: str,
    ) -> LegnextError:
        reason = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
        if create is not None and not isinstance(exc, NOT_SENT_ERRORS):
            unknown = self._unknown(create, body, submitted_at, reason)
            unknown.timed_out = isinstance(exc, httpx.TimeoutException)
            return unknown
        return TransportError(f"{what}: {reason}")

    @staticmethod
    def _unknown(
        create: CreateEndpoint,
        body: Mapping[str, Any] | None,
        submitted_at: datetime,
        reason: str,
        status_code: int | None = None,
    ) -> OutcomeUnknownError:
        return OutcomeUnknownError(
            endpoint=create.name,
            task_type=create.task_type,
            body=body or {},
            submitted_at=submitted_at,
            reason=reason,
            status_code=status_code,
        )

    def _backoff(
        self,
        attempt: int,
        started: float,
        error: LegnextError,
        what: str,
        is_create: bool,
        window: _WaitWindow | None = None,
    ) -> float:
        """Seconds to wait before retrying, or raise ``error`` when it must not be retried
        (`_DeadlineReached` when a retry would not fit before `window`'s end)."""
        wait = self.retry.next_delay(
            attempt, time.monotonic() - started, error, is_create=is_create
        )
        if window is not None and window.cannot_fit(wait, is_retryable(error, is_create=is_create)):
            raise _DeadlineReached(what) from error
        if wait is None:
            raise error
        logger.warning(
            "%s failed (attempt %d/%d: %s); retrying in %.2fs",
            what, attempt, self.retry.max_attempts, type(error).__name__, wait,
        )  # fmt: skip
        return wait

    def _read(
        self,
        response: httpx.Response,
        model: type[ModelT],
        create: CreateEndpoint | None = None,
        body: Mapping[str, Any] | None = None,
        submitted_at: datetime | None = None,
    ) -> ModelT:
        """Parse a success answer. An unreadable answer to a create still means a
        job may exist, so it is reported as an unknown outcome, not a parse error."""
        try:
            result = model.model_validate(unwrap_data(response.json()))
        except (ValueError, ValidationError) as exc:
            if create is not None and submitted_at is not None:
                raise self._unknown(
                    create, body, submitted_at, "unreadable answer", response.status_code
                ) from exc
            raise LegnextError(
                f"unreadable answer from {response.request.url.path}: {type(exc).__name__}"
            ) from exc
        self._observe_clock(result, submitted_at if create is not None else None)
        return result

    def _observe_clock(self, result: BaseModel, sent: datetime | None) -> None:
        """Feed the clock gauge (see core/clock.py): a create's job with its send and
        answer times, and every job or active task read (completing a create's sample
        when its answer left ``created_at`` blank)."""
        if isinstance(result, Job):
            if sent is not None:
                answered = datetime.now(UTC)
                self.clock.created(result.job_id, result.meta.created_at, sent, answered)
            else:
                self.clock.seen(result.job_id, result.meta.created_at)
        elif isinstance(result, ActiveTasks):
            for task in result.tasks:
                self.clock.seen(task.job_id, task.created_at)

    def _poll_step(
        self, poll: PollPolicy, job: Job, job_id: str, window: _WaitWindow, plan: JobWait
    ) -> float | None:
        """After a poll: None when the job completed, else seconds until the next poll.

        Raises:
            JobFailedError: the job failed.
            JobTimeoutError: the deadline passed first.
        """
        if job.is_completed:
            poll.model.observe_job(job, poll.scale)
            return None
        if job.is_failed:
            raise JobFailedError(job)
        if not job.is_known_status:
            logger.warning("job %s reports unknown status %r; still waiting", job_id, job.status)
        if window.left() <= 0:
            raise window.timeout(job_id, job)
        return window.capped(plan.after_get(job, time.time()))

    def _list_step(
        self, plan: JobWait, reading: Any, job_id: str, last: Job | None, window: _WaitWindow
    ) -> float | None:
        """After a look at the active-task list: None when the job must be read now,
        else seconds until the next look.

        Raises:
            JobTimeoutError: the deadline passed first.
        """
        wait = plan.after_reading(reading, time.monotonic())
        if wait is not None and window.left() <= 0:
            raise window.timeout(job_id, last)
        return None if wait is None else window.capped(wait)

    def _wait_plan(self, poll: PollPolicy, job_id: str, job: Job | None) -> JobWait:
        watch = watch_for(self.base_url, self._api_key.get_secret_value())
        return JobWait(poll, job_id, job.task_type if job else "", watch)

    def _list_timeout(self, window: _WaitWindow) -> httpx.Timeout:
        return httpx.Timeout(max(0.001, min(ACTIVE_TASKS_TIMEOUT, window.left())))

    @staticmethod
    def _list_body(response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    @staticmethod
    def _first_wait(poll: PollPolicy, job: Job | None) -> float:
        # A job already finished (e.g. reused from a ledger) needs one read, not a wait.
        if job is None or job.is_finished:
            return 0.0
        return poll.first_wait(job.task_type, job.meta.started_at, time.time())

    @staticmethod
    def _job_id(job: str | Job) -> str:
        if isinstance(job, Job):
            return job.job_id
        try:
            return parse_job_id(job)
        except ValueError as exc:
            raise InvalidRequestError(GET_JOB.name, [("job_id", str(exc))]) from None


class LegnextClient(_ClientCore, _SyncEndpoints):
    """Synchronous Legnext client.

    Without `api_key` it reads ``LEGNEXT_API_KEY``, and without `base_url`
    ``LEGNEXT_BASE_URL`` (else ``https://api.legnext.ai``); explicit arguments win.
    The key is sent only in the ``x-api-key`` header, and appears in no repr, log
    line or error.

    Example:
        ```python
        from prefect_legnext import LegnextClient

        with LegnextClient(api_key="...") as client:
            job = client.diffusion(text="a lighthouse at dawn --v 7")
            done = client.wait_for_job(job)
            print(done.output_urls)
        ```
    """

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, **options)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def __enter__(self) -> LegnextClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call). Returns the new job.

        Raises:
            OutcomeUnknownError: the request was sent but its answer was lost.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        endpoint = endpoint_for(request)
        body = request.to_wire()
        return self._request("POST", endpoint.path, Job, create=endpoint, body=body)

    def get_job(self, job_id: str) -> Job:
        """Read a job (free; retried on 429, 5xx and network errors)."""
        return self._query(GET_JOB, job_id=self._job_id(job_id))

    def balance(self) -> Balance:
        """The account's balance (free)."""
        return self._query(BALANCE)

    def account_info(self) -> AccountInfo:
        return self._query(ACCOUNT_INFO)

    def active_tasks(self) -> ActiveTasks:
        return self._query(ACTIVE_TASKS)

    def wait_for_job(
        self,
        job: str | Job,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        on_update: JobUpdateHook | None = None,
    ) -> Job:
        """Poll until the job completes; pass the Job from a create to skip an early poll.

        The wait ends after ``max_wait_seconds``, or at ``deadline`` (epoch seconds, as
        `time.time()`) when that comes first. Everything counts: polls, slow answers
        (each read's timeouts are cut to the time left) and read retries (none starts
        whose backoff would end past the deadline).

        Raises:
            JobFailedError: the job failed (carries Legnext's code and message).
            JobTimeoutError: not finished by the deadline, also when reads were failing
                or too slow at that point.
        """
        poll = poll or self.poll
        job_id = self._job_id(job)
        window = _WaitWindow.open(max_wait_seconds, deadline)
        last = job if isinstance(job, Job) else None
        plan = self._wait_plan(poll, job_id, last)
        wait: float | None = self._first_wait(poll, last)
        while wait is not None:
            time.sleep(window.capped(wait))
            if last is not None and plan.uses_list(time.monotonic()):
                wait = self._list_step(
                    plan, self._active_reading(plan, window), job_id, last, window
                )
                if wait is not None:
                    continue
            last = self._read_job(job_id, window, last)
            if on_update is not None:
                on_update(last)
            wait = self._poll_step(poll, last, job_id, window, plan)
        assert last is not None  # the loop reads at least once
        return last

    def _active_reading(self, plan: JobWait, window: _WaitWindow) -> Any:
        """The account's active-task list, shared with every other waiter (one try)."""
        assert plan.watch is not None

        def fetch() -> Any:
            timeout = self._list_timeout(window)
            return self._list_body(self._http.get(ACTIVE_TASKS.path, timeout=timeout))

        return plan.watch.read(time.monotonic, window.started, fetch, plan.off_for)

    def _read_job(self, job_id: str, window: _WaitWindow, last: Job | None) -> Job:
        """One poll of a wait, within its window."""
        try:
            return self._query(GET_JOB, window, job_id=job_id)
        except _DeadlineReached as exc:
            raise window.timeout(job_id, last) from exc.__cause__

    def _query(
        self, query: QueryEndpoint[ModelT], window: _WaitWindow | None = None, **path_params: str
    ) -> ModelT:
        path = query.path.format(**path_params)
        return self._request("GET", path, query.response, window=window)

    def _request(
        self,
        method: str,
        path: str,
        model: type[ModelT],
        *,
        create: CreateEndpoint | None = None,
        body: dict[str, Any] | None = None,
        window: _WaitWindow | None = None,
    ) -> ModelT:
        what = f"{method} {path}"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            submitted_at = datetime.now(UTC)
            try:
                timeout = self._timeout_within(window)
                response = self._http.request(method, path, json=body, timeout=timeout)
                error = self._failure(response, create, body, submitted_at)
            except httpx.TransportError as exc:
                error = self._transport_failure(exc, create, body, submitted_at, what)
            if error is None:
                return self._read(response, model, create, body, submitted_at)
            time.sleep(self._backoff(attempt, started, error, what, create is not None, window))


class AsyncLegnextClient(_ClientCore, _AsyncEndpoints):
    """Asynchronous Legnext client; the same surface as `LegnextClient`, awaited
    (``LEGNEXT_API_KEY`` and ``LEGNEXT_BASE_URL`` are read the same way). A client
    belongs to the event loop it is used in, as its httpx client and poll gate do.

    Example:
        ```python
        async with AsyncLegnextClient(api_key="...") as client:
            job = await client.diffusion(text="a lighthouse at dawn --v 7")
            done = await client.wait_for_job(job)
        ```
    """

    def __init__(
        self,
        api_key: str | SecretStr | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(api_key, **options)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())
        self._poll_gate = asyncio.Semaphore(self.poll.polls_in_flight)

    async def __aenter__(self) -> AsyncLegnextClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call). See `LegnextClient.create`."""
        endpoint = endpoint_for(request)
        body = request.to_wire()
        return await self._request("POST", endpoint.path, Job, create=endpoint, body=body)

    async def get_job(self, job_id: str) -> Job:
        return await self._query(GET_JOB, job_id=self._job_id(job_id))

    async def balance(self) -> Balance:
        return await self._query(BALANCE)

    async def account_info(self) -> AccountInfo:
        return await self._query(ACCOUNT_INFO)

    async def active_tasks(self) -> ActiveTasks:
        return await self._query(ACTIVE_TASKS)

    async def wait_for_job(
        self,
        job: str | Job,
        *,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        on_update: JobUpdateHook | None = None,
    ) -> Job:
        """Poll until the job completes. See `LegnextClient.wait_for_job`."""
        poll = poll or self.poll
        job_id = self._job_id(job)
        window = _WaitWindow.open(max_wait_seconds, deadline)
        last = job if isinstance(job, Job) else None
        plan = self._wait_plan(poll, job_id, last)
        wait: float | None = self._first_wait(poll, last)
        while wait is not None:
            await asyncio.sleep(window.capped(wait))
            if last is not None and plan.uses_list(time.monotonic()):
                reading = await self._active_reading(plan, job_id, window, last)
                wait = self._list_step(plan, reading, job_id, last, window)
                if wait is not None:
                    continue
            last = await self._read_job(job_id, window, last)
            if on_update is not None:
                on_update(last)
            wait = self._poll_step(poll, last, job_id, window, plan)
        assert last is not None  # the loop reads at least once
        return last

    async def _active_reading(
        self, plan: JobWait, job_id: str, window: _WaitWindow, last: Job | None
    ) -> Any:
        """The first of the account's active-task lists (shared with every other waiter)
        that no longer shows the job, or None when the list failed."""
        assert plan.watch is not None

        async def fetch() -> Any:
            timeout = self._list_timeout(window)
            return self._list_body(await self._http.get(ACTIVE_TASKS.path, timeout=timeout))

        try:
            return await plan.watch.until_gone(
                job_id, window.started, fetch, time.monotonic, plan.off_for, window.left()
            )
        except TimeoutError:
            raise window.timeout(job_id, last) from None

    async def _read_job(self, job_id: str, window: _WaitWindow, last: Job | None) -> Job:
        """One poll of a wait, within its window; each of its requests goes through the
        poll gate (`PollPolicy.polls_in_flight`), whose wait counts against the window."""
        try:
            return await self._query(GET_JOB, window, gate=self._poll_gate, job_id=job_id)
        except _DeadlineReached as exc:
            raise window.timeout(job_id, last) from exc.__cause__

    async def _query(
        self,
        query: QueryEndpoint[ModelT],
        window: _WaitWindow | None = None,
        gate: asyncio.Semaphore | None = None,
        **path_params: str,
    ) -> ModelT:
        path = query.path.format(**path_params)
        return await self._request("GET", path, query.response, window=window, gate=gate)

    async def _request(
        self,
        method: str,
        path: str,
        model: type[ModelT],
        *,
        create: CreateEndpoint | None = None,
        body: dict[str, Any] | None = None,
        window: _WaitWindow | None = None,
        gate: asyncio.Semaphore | None = None,
    ) -> ModelT:
        what = f"{method} {path}"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            async with _place_at(gate, window):  # held for the request, not its backoff
                submitted_at = datetime.now(UTC)
                try:
                    timeout = self._timeout_within(window)
                    response = await self._http.request(method, path, json=body, timeout=timeout)
                    error = self._failure(response, create, body, submitted_at)
                except httpx.TransportError as exc:
                    error = self._transport_failure(exc, create, body, submitted_at, what)
            if error is None:
                return self._read(response, model, create, body, submitted_at)
            await asyncio.sleep(
                self._backoff(attempt, started, error, what, create is not None, window)
            )
