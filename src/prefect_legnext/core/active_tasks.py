"""One shared ``GET /api/account/active_tasks`` read per process and account.

Legnext's spec (openapi-complete.yaml) lists the account's running jobs, with their
status, in one answer; API.md says it is unverified on the live service: use it when it
answers, never depend on it. So every waiting job of the process (sync or async client,
any thread or event loop) reads the same list, refreshed at most once per period: sync
waiters look at it each period and the first one due fetches it; async waiters of an
event loop hand their job to one task that fetches it and wakes only the waiters whose
job left it. A job absent from a list taken after its wait began has probably finished,
and one GET of the job confirms it.

Our decisions: a failed read, a non-2xx answer or a body without a list of tasks each
with a ``job_id`` counts as a failure and the waiters poll their jobs one by one; after
`FAILURES_TO_SWITCH_OFF` failures in a row the list is not asked for
`OFF_SECONDS` (times the poll scale). No key is kept: watches are found by a salted
digest of it, and nothing here logs a request's headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prefect_legnext.core.responses import unwrap_data

FAILURES_TO_SWITCH_OFF = 3
OFF_SECONDS = 600.0

logger = logging.getLogger("prefect_legnext.core.active_tasks")

_SALT = os.urandom(16)  # digests of keys mean nothing outside this process


@dataclass(frozen=True)
class Reading:
    """One list: when it was taken (monotonic seconds) and each listed job's status."""

    at: float
    statuses: dict[str, str]


def parse_reading(body: Any, at: float) -> Reading | None:
    """The listed jobs of an answer, or None for a body we cannot trust."""
    data = unwrap_data(body)
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return None
    statuses: dict[str, str] = {}
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("job_id"), str):
            return None
        status = task.get("status")
        statuses[task["job_id"]] = status.strip().lower() if isinstance(status, str) else ""
    return Reading(at=at, statuses=statuses)


class ActiveTasksWatch:
    """The shared list of one account; thread safe, usable from any event loop."""

    def __init__(self) -> None:
        self.period = 2.0  # set by the waiters' policy (scaled seconds)
        self.requests = 0  # statistics: list reads sent, and waiters' looks at a list
        self.looks = 0
        self._reading: Reading | None = None
        self._failures = 0
        self._off_until = float("-inf")
        self._state = threading.Lock()
        self._sync_fetch = threading.Lock()
        self._tickers: dict[asyncio.AbstractEventLoop, _LoopTicker] = {}

    def __repr__(self) -> str:
        return f"ActiveTasksWatch(period={self.period}, requests={self.requests})"

    def is_on(self, now: float) -> bool:
        return now >= self._off_until

    def next_due(self, now: float) -> float:
        """Seconds until the current reading is stale (when waiters should look again)."""
        reading = self._reading
        if reading is None:
            return 0.0  # nothing read yet: now
        return max(0.0, reading.at + self.period - now)

    def _reusable(self, now: float, since: float) -> Reading | None:
        reading = self._reading
        # Reused while younger than a period: waiters due at the same tick share one read.
        if reading is not None and reading.at >= since and now - reading.at < self.period:
            return reading
        return None

    def _without_fetch(self, now: float, since: float) -> tuple[bool, Reading | None]:
        """(True, answer) when no request is needed: the list is off (None) or another
        waiter's reading is fresh; (False, None) when this caller must fetch."""
        if not self.is_on(now):
            return True, None
        reading = self._reusable(now, since)
        return reading is not None, reading

    def _record(self, result: Any, at: float, off_for: float) -> Reading | None:
        reading = None if isinstance(result, BaseException) else parse_reading(result, at)
        with self._state:
            self.requests += 1
            if reading is not None:
                self._reading, self._failures = reading, 0
                return reading
            self._failures += 1
            if self._failures >= FAILURES_TO_SWITCH_OFF:
                self._off_until = at + off_for
                self._failures = 0
        reason = type(result).__name__ if isinstance(result, BaseException) else "unexpected body"
        logger.info("active_tasks read failed (%s); polling each job instead", reason)
        return None

    def read(
        self, now: Callable[[], float], since: float, fetch: Callable[[], Any], off_for: float
    ) -> Reading | None:
        """A list taken after `since` (monotonic), fetched by this caller only when no
        other waiter has just fetched one; None when the list is off or failed."""
        self.looks += 1  # a statistic: a lost increment between threads does no harm
        done, reading = self._without_fetch(now(), since)
        if done:  # the common case, without a lock: another waiter has just read it
            return reading
        with self._sync_fetch:
            at = now()
            done, reading = self._without_fetch(at, since)
            if done:
                return reading
            try:
                result: Any = fetch()
            except Exception as exc:  # never depend on it: any failure means per-job GETs
                result = exc
            return self._record(result, at, off_for)

    async def until_gone(
        self,
        job_id: str,
        since: float,
        fetch: Callable[[], Awaitable[Any]],
        now: Callable[[], float],
        off_for: float,
        seconds_left: float,
    ) -> Reading | None:
        """For async waiters: the first list taken after `since` without `job_id` (the
        job most likely finished), or None when a read fails or the list is off. One
        task per event loop reads the list every period and wakes only the waiters
        whose job left it, so a job still running costs no wake-up per period.

        Raises:
            TimeoutError: nothing happened within `seconds_left`.
        """
        if not self.is_on(now()):
            return None
        loop = asyncio.get_running_loop()
        with self._state:
            ticker = self._tickers.get(loop)
            if ticker is None:
                ticker = self._tickers[loop] = _LoopTicker(self, now)
        future = ticker.add(job_id, since, fetch, off_for)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(seconds_left, 0.0))
        finally:
            ticker.waiters.pop(future, None)


Fetch = Callable[[], Awaitable[Any]]


class _LoopTicker:
    """The async waiters of one event loop and the task reading the list for them."""

    def __init__(self, watch: ActiveTasksWatch, now: Callable[[], float]) -> None:
        self.watch = watch
        self.now = now
        self.off_for = OFF_SECONDS
        self.waiters: dict[asyncio.Future[Reading | None], tuple[str, float, Fetch]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(
        self, job_id: str, since: float, fetch: Fetch, off_for: float
    ) -> asyncio.Future[Reading | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reading | None] = loop.create_future()
        self.waiters[future] = (job_id, since, fetch)
        self.off_for = off_for
        reading = self.watch._reading
        if reading is not None:  # a list read since this job's wait began may do already
            self._settle(reading)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())
        return future

    def _settle(self, reading: Reading | None) -> None:
        for future, (job_id, since, _fetch) in list(self.waiters.items()):
            if future.done():
                continue
            self.watch.looks += 1
            if reading is None:
                future.set_result(None)
            elif reading.at >= since and job_id not in reading.statuses:
                future.set_result(reading)

    async def _run(self) -> None:
        # Runs while a waiter is registered: the check and the return below have no
        # await between them, so `add` (same loop) never meets a finishing task.
        try:
            while any(not f.done() for f in self.waiters):
                await asyncio.sleep(self.watch.next_due(self.now()))
                pending = [entry for f, entry in self.waiters.items() if not f.done()]
                if not pending:
                    continue
                at = self.now()
                reading: Reading | None
                if not self.watch.is_on(at):
                    reading = None
                else:
                    reading = self.watch._reusable(at, float("-inf"))
                    if reading is None:
                        try:
                            result: Any = await pending[0][2]()
                        except Exception as exc:  # any failure means per-job GETs
                            result = exc
                        reading = self.watch._record(result, at, self.off_for)
                self._settle(reading)
        finally:
            self._settle(None)  # never leave a waiter behind (an error, the loop closing)


_WATCHES: dict[tuple[str, str], ActiveTasksWatch] = {}
_WATCHES_LOCK = threading.Lock()
MAX_WATCHES = 256  # accounts x base URLs a process may wait on (bounded memory)


def watch_for(base_url: str, api_key: str) -> ActiveTasksWatch:
    """The process's watch of one account (base URL and key)."""
    digest = hashlib.blake2b(api_key.encode(), key=_SALT, digest_size=16).hexdigest()
    with _WATCHES_LOCK:
        watch = _WATCHES.get((base_url, digest))
        if watch is None:
            if len(_WATCHES) >= MAX_WATCHES:
                _WATCHES.pop(next(iter(_WATCHES)))
            watch = _WATCHES[(base_url, digest)] = ActiveTasksWatch()
        return watch


def forget_watches() -> None:
    """Drop every account's watch (tests start each from scratch)."""
    with _WATCHES_LOCK:
        _WATCHES.clear()
