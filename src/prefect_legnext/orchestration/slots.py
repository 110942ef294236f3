"""Slots of a global concurrency limit (``legnext-account``), leased, in two Prefect
server round trips per step: one ``increment-with-lease`` to take a slot, one
``decrement-with-lease`` to give it back.

Prefect's own `prefect.concurrency.sync.concurrency` does the same calls but queues every
acquisition of a process behind one service that sleeps the server's ``Retry-After``
(about 2 s) while the limit is full, so a slot that frees mid-sleep idles; and each use
starts its own renewal task. Here (our decisions):

- **Hand-over in the process**: a step that finishes while another step of the same
  process waits for the limit passes its lease to it: no round trip, no idle slot.
- **Prompt retries across processes**: the first step in the process's line asks a
  full limit again after 0.1 s, then longer (doubling, at most 1 s, jittered), not
  after the server's ``Retry-After``; the others wait for a hand-over.
- **No 2 s stalls**: a 503 or a dropped connection is asked again within 50-400 ms, and
  idle connections are closed before the server closes them (`_post`, `_client`).
- **A chain keeps its slot to its next step**: a step followed by another of its
  chain parks its lease instead of releasing it (`PARK_SECONDS` at most, renewed as
  any held lease); the next step that asks for a slot in this process takes it, with
  no round trip at either end. A parked lease nobody takes is released by a timer,
  off the steps' path; the flows release what is parked when they end
  (`release_parked`). The slot idles only while the chain persists its step.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import httpx
    from prefect.client.orchestration import SyncPrefectClient

logger = logging.getLogger("prefect_legnext.orchestration.slots")

RENEW_FRACTION = 0.5  # of the lease: two chances to renew before it runs out
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 1.0
LOCKED = 423
QUICK_RETRIES = (0.05, 0.1, 0.2, 0.4)  # seconds, see `_post`
KEEPALIVE_SECONDS = 4.0  # below uvicorn's 5 s idle timeout (our decision, see `_client`)
# How long a lease parked for a chain's next step waits to be taken (our decision: a
# step's persist takes well under this; past it the slot goes back to the server).
PARK_SECONDS = 15.0


class Tally:
    """Counts by kind, thread-safe: the slot requests this process sent to the Prefect
    server, and its hand-overs (benchmark figures and tests' counts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


ROUND_TRIPS = Tally()
HANDOVERS = Tally()  # slots passed between steps of this process: no round trip


@dataclass
class _Waiter:
    """A step waiting for a slot: `lease` is set when a step of the process hands one
    over; `wake` is set then, and when it becomes the head of the line."""

    lease: UUID | None = None
    wake: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Limit:
    """One limit's leases and waiters in this process, on one server."""

    api_url: str
    name: str
    lease_seconds: float
    held: set[UUID] = field(default_factory=set)
    waiters: deque[_Waiter] = field(default_factory=deque)
    parked: list[UUID] = field(default_factory=list)  # held, for this process's next step


_lock = threading.Lock()
_limits: dict[tuple[str, str], _Limit] = {}
_clients: dict[str, SyncPrefectClient] = {}
_renewer: threading.Thread | None = None


def _client(api_url: str) -> SyncPrefectClient:
    """One Prefect client per server and process for slot calls (built once: a client
    costs tens of ms), entered once and closed at exit with the process."""
    import httpx
    from prefect.client.orchestration import get_client

    with _lock:
        client = _clients.get(api_url)
        if client is None:
            # Idle connections are dropped before `prefect server start` (uvicorn, 5 s)
            # drops them: Prefect's default keeps them 25 s, and a request on a connection
            # the server has closed fails and is retried only after ~2 s of backoff.
            limits = httpx.Limits(
                max_connections=16, max_keepalive_connections=8,
                keepalive_expiry=KEEPALIVE_SECONDS,
            )  # fmt: skip
            client = get_client(httpx_settings={"limits": limits}, sync_client=True)
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
    when the limit does not exist or is inactive.

    The steps of a process that wait for the limit stand in one line: the first asks
    the server (after 0.1 s, then longer, at most 1 s apart), the others only wait for
    a slot a step of the process hands over, so a full limit costs the server one
    request per process and retry, not one per waiting step."""
    limit = _limit(name, lease_seconds)
    with _lock:
        if limit.parked:  # a step of this process kept it for the next one
            HANDOVERS.add("parked")
            return limit, limit.parked.pop()
    client = _client(limit.api_url)
    waiter = _Waiter()
    with _lock:
        limit.waiters.append(waiter)
    delay = FIRST_RETRY_SECONDS
    try:
        while True:
            with _lock:
                if waiter.lease is not None:
                    return limit, waiter.lease
                first = limit.waiters[0] is waiter
            if not first:
                _sleep(waiter, MAX_RETRY_SECONDS)
                continue
            granted, lease = _ask(client, limit)
            if granted:
                with _lock:
                    if waiter in limit.waiters:  # else a hand-over took it out of the line
                        limit.waiters.remove(waiter)
                    handed, waiter.lease = waiter.lease, None
                    _wake_first(limit)
                if handed is not None:  # a hand-over came while we asked: one is enough
                    release(limit, handed)
                return limit, lease
            _sleep(waiter, delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_RETRY_SECONDS)
    except BaseException:
        with _lock:
            if waiter in limit.waiters:
                limit.waiters.remove(waiter)
                _wake_first(limit)
            handed = waiter.lease
        if handed is not None:
            release(limit, handed)
        raise


def _ask(client: SyncPrefectClient, limit: _Limit) -> tuple[bool, UUID | None]:
    """One ``increment-with-lease``: (True, the lease) when granted, (True, None) when
    the limit is not enforced, (False, None) when it is full."""
    import httpx

    ROUND_TRIPS.add("increment")
    request = {"names": [limit.name], "slots": 1, "mode": "concurrency"}
    try:
        response = _post(
            client, "/v2/concurrency_limits/increment-with-lease",
            request | {"lease_duration": limit.lease_seconds},
        )  # fmt: skip
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != LOCKED:
            raise
        return False, None
    body: dict[str, Any] = response.json()
    if not body.get("limits"):
        logger.warning("concurrency limit %r does not exist: not enforced", limit.name)
        return True, None
    lease = UUID(body["lease_id"])
    with _lock:
        limit.held.add(lease)
    _ensure_renewer()
    return True, lease


def _post(client: SyncPrefectClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST `body` to the server; a 502/503 or a dropped connection is asked again after
    `QUICK_RETRIES` (50-400 ms), then with Prefect's own retries (2 s, 4 s, ...). A
    busy SQLite server answers 503 now and then: Prefect's first retry alone cost a step
    2 s. Our decision; it sends through the Prefect client's httpx client without its
    retry wrapper (its CSRF header added when the server asks for one)."""
    import httpx

    http = client._client
    for delay in QUICK_RETRIES:
        request = http.build_request("POST", path, json=body)
        add_csrf = getattr(http, "_add_csrf_headers", None)
        if add_csrf is not None:
            add_csrf(request)
        try:
            response = httpx.Client.send(http, request)
        except (httpx.TransportError, httpx.RemoteProtocolError):
            time.sleep(delay)
            continue
        if response.status_code in (502, 503):
            time.sleep(delay)
            continue
        response.raise_for_status()
        return response
    response = client.request("POST", path, json=body)  # type: ignore[arg-type]
    response.raise_for_status()
    return response


def _sleep(waiter: _Waiter, seconds: float) -> None:
    """Until a hand-over, a turn at the head of the line, or `seconds`."""
    waiter.wake.wait(seconds)
    waiter.wake.clear()


def _wake_first(limit: _Limit) -> None:
    """Tell the new head of the line that it asks the server now (holding `_lock`)."""
    if limit.waiters:
        limit.waiters[0].wake.set()


def release(limit: _Limit, lease: UUID | None, *, park_seconds: float = 0.0) -> None:
    """Give the slot back: to a step of this process waiting for it (no round trip),
    else, with `park_seconds`, keep it that long for this process's next step, else to
    the server."""
    if lease is None:
        return
    with _lock:
        if limit.waiters:
            waiter = limit.waiters.popleft()
            waiter.lease = lease
            HANDOVERS.add("handover")
            waiter.wake.set()
            _wake_first(limit)
            return
        if park_seconds > 0:
            limit.parked.append(lease)
            timer = threading.Timer(park_seconds, _unpark, (limit, lease))
            timer.daemon = True
            timer.start()
            return
        limit.held.discard(lease)
    _decrement(limit, lease)


def _unpark(limit: _Limit, lease: UUID) -> None:
    """Release `lease` if it is still parked (nobody took it)."""
    with _lock:
        if lease not in limit.parked:
            return
        limit.parked.remove(lease)
    release(limit, lease)


def release_parked() -> None:
    """Release every lease this process has parked (a flow's end: no next step)."""
    with _lock:
        parked = [(limit, lease) for limit in _limits.values() for lease in limit.parked]
        for limit in _limits.values():
            limit.parked.clear()
    for limit, lease in parked:
        release(limit, lease)


def _decrement(limit: _Limit, lease: UUID) -> None:
    # A step releases in line; a parked lease nobody took is released from its timer.
    # A 503 from a busy SQLite server (a release racing an increment) is asked again
    # within 50-400 ms (`_post`).
    ROUND_TRIPS.add("decrement")
    try:
        _post(
            _client(limit.api_url), "/v2/concurrency_limits/decrement-with-lease",
            {"lease_id": str(lease)},
        )  # fmt: skip
    except Exception as exc:  # the lease runs out by itself within its duration
        logger.warning("releasing a %r slot failed (%s); it frees when its lease ends",
                       limit.name, exc)  # fmt: skip


@contextmanager
def held(name: str, lease_seconds: float, *, keep_for_next: bool = False) -> Iterator[None]:
    """Hold one slot of `name` for the block (see the module docstring); with
    `keep_for_next`, park it for this process's next step when the block ends well."""
    limit, lease = acquire(name, lease_seconds)
    park = 0.0
    try:
        yield
        park = PARK_SECONDS if keep_for_next else 0.0
    finally:
        release(limit, lease, park_seconds=park)


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
