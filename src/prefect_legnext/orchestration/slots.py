"""Slots of a global concurrency limit (``legnext-account``), leased, in two Prefect
server round trips per step: one ``increment-with-lease`` to take a slot, one
``decrement-with-lease`` to give it back.

Prefect's own `prefect.concurrency.sync.concurrency` does the same calls but queues every
acquisition of a process behind one service that sleeps the server's ``Retry-After``
(about 2 s) while the limit is full, so a slot that frees mid-sleep idles; and each use
starts its own renewal task. Here (our decisions):

- **Hand-over in the process**: a step that finishes while another step of the same
  process waits for the limit passes its lease to it: no round trip, no idle slot.
- **Release off the step's path**: the ``decrement-with-lease`` is sent by a background
  thread (flushed at interpreter exit), so the step goes on to persist at once.
- **Prompt retries across processes**: a full limit is asked again after 0.1 s, then
  longer (doubling, at most 1 s, jittered), not after the server's ``Retry-After``.
- **One renewal thread per process** renews every lease it holds every
  `RENEW_FRACTION` of the lease: a live holder keeps its slot however long it waits;
  a SIGKILLed one stops renewing and its slot frees when the lease runs out (the
  server's repossessor notices within ~15 s). A lease handed over keeps being renewed.

A limit that does not exist (or is inactive) is not enforced, as with Prefect's
`concurrency(strict=False)`: `acquire` answers None.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

logger = logging.getLogger("prefect_legnext.orchestration.slots")

RENEW_FRACTION = 0.5  # of the lease: two chances to renew before it runs out
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 1.0
LOCKED = 423


class RoundTrips:
    """Slot requests sent to the Prefect server by this process, by kind (a benchmark
    figure and a test's count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


ROUND_TRIPS = RoundTrips()


@dataclass
class _Waiter:
    lease: UUID | None = None
    handed: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Limit:
    """One limit's leases and waiters in this process, on one server."""

    api_url: str
    name: str
    lease_seconds: float
    held: set[UUID] = field(default_factory=set)
    waiters: deque[_Waiter] = field(default_factory=deque)


_lock = threading.Lock()
_limits: dict[tuple[str, str], _Limit] = {}
_clients: dict[str, SyncPrefectClient] = {}
_renewer: threading.Thread | None = None
# Its worker is joined at interpreter exit (concurrent.futures does), so no release is lost
# to a normal exit; a killed process's leases run out instead.
_releases = ThreadPoolExecutor(max_workers=1, thread_name_prefix="legnext-slot-release")


def _client(api_url: str) -> SyncPrefectClient:
    """One Prefect client per server and process for slot calls (built once: a client
    costs tens of ms), entered once and closed at exit with the process."""
    from prefect.client.orchestration import get_client

    with _lock:
        client = _clients.get(api_url)
        if client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            _clients[api_url] = client
        return client


def _limit(name: str, lease_seconds: float) -> _Limit:
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value() or "")
    with _lock:
        limit = _limits.get((api_url, name))
        if limit is None:
            limit = _limits[(api_url, name)] = _Limit(api_url, name, lease_seconds)
        return limit


def acquire(name: str, lease_seconds: float) -> tuple[_Limit, UUID | None]:
    """Take one slot of limit `name` (waiting as long as it takes); the lease, or None
    when the limit does not exist or is inactive."""
    import httpx

    limit = _limit(name, lease_seconds)
    client = _client(limit.api_url)
    delay = FIRST_RETRY_SECONDS
    while True:
        ROUND_TRIPS.add("increment")
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=lease_seconds
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != LOCKED:
                raise
        else:
            body: dict[str, Any] = response.json()
            if not body.get("limits"):
                logger.warning("concurrency limit %r does not exist: not enforced", name)
                return limit, None
            lease = UUID(body["lease_id"])
            with _lock:
                limit.held.add(lease)
            _ensure_renewer()
            return limit, lease
        # Full: wait for a hand-over from a step of this process, or retry soon.
        waiter = _Waiter()
        with _lock:
            limit.waiters.append(waiter)
        handed = waiter.handed.wait(delay * random.uniform(0.8, 1.2))
        with _lock:
            if not handed and waiter.lease is None:
                limit.waiters.remove(waiter)
        if waiter.lease is not None:
            return limit, waiter.lease
        delay = min(delay * 2, MAX_RETRY_SECONDS)


def release(limit: _Limit, lease: UUID | None) -> None:
    """Give the slot back: to a step of this process waiting for it (no round trip),
    else to the server."""
    if lease is None:
        return
    with _lock:
        if limit.waiters:
            waiter = limit.waiters.popleft()
            waiter.lease = lease
            waiter.handed.set()
            return
        limit.held.discard(lease)
    ROUND_TRIPS.add("decrement")
    _releases.submit(_release_on_server, limit, lease)


def _release_on_server(limit: _Limit, lease: UUID) -> None:
    try:
        _client(limit.api_url).release_concurrency_slots_with_lease(lease_id=lease)
    except Exception as exc:  # the lease runs out by itself within ACCOUNT_LEASE_SECONDS
        logger.warning("releasing a %r slot failed (%s); it frees when its lease ends",
                       limit.name, exc)  # fmt: skip


def settle() -> None:
    """Wait for the releases sent so far (tests and benchmarks read the server after)."""
    _releases.submit(lambda: None).result()


@contextmanager
def held(name: str, lease_seconds: float) -> Iterator[None]:
    """Hold one slot of `name` for the block (see the module docstring)."""
    limit, lease = acquire(name, lease_seconds)
    try:
        yield
    finally:
        release(limit, lease)


def _ensure_renewer() -> None:
    global _renewer
    with _lock:
        if _renewer is None or not _renewer.is_alive():
            _renewer = threading.Thread(target=_renew_forever, name="legnext-slots", daemon=True)
            _renewer.start()


def _renew_forever() -> None:
    """Renew every held lease every `RENEW_FRACTION` of its lease; a lease the server no
    longer knows (released meanwhile, or expired) is dropped."""
    while True:
        with _lock:
            limits = [limit for limit in _limits.values() if limit.held]
            interval = min((lim.lease_seconds for lim in limits), default=60.0) * RENEW_FRACTION
        time.sleep(interval)
        for limit in limits:
            with _lock:
                leases = list(limit.held)
            for lease in leases:
                _renew(limit, lease)


def _renew(limit: _Limit, lease: UUID) -> None:
    import httpx

    ROUND_TRIPS.add("renew")
    try:
        _client(limit.api_url).renew_concurrency_lease(
            lease_id=lease, lease_duration=limit.lease_seconds
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            with _lock:
                limit.held.discard(lease)
            return
        logger.warning("renewing the lease of a %r slot failed: %s", limit.name, exc)
    except Exception as exc:  # the server is down for a moment: try again next round
        logger.warning("renewing the lease of a %r slot failed: %s", limit.name, exc)
