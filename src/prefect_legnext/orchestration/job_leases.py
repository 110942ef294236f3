"""Slots of ``legnext-account`` that follow the job, not the process (callback mode).

A step in callback mode takes a slot at submit on a lease long enough for the job
(`job_lease_seconds`), tags the lease id on the callback URL (`LEASE_TAG`) and then
suspends: its process exits and renews nothing. The lease is released by whoever
learns that the job finished (the receiver on a terminal delivery, the sweeper after
its GET) and renewed by the sweeper while the job runs. If everything dies, the slot
frees when the lease runs out: never held forever.

Unlike `slots.held`, nothing here is handed over inside a process or renewed in the
background (our decision: a process about to exit must not hold what others release).
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect_legnext.core.endpoints import endpoint as endpoint_named
from prefect_legnext.orchestration import slots

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

logger = logging.getLogger("prefect_legnext.orchestration.job_leases")

# Prefect's server accepts leases of 60 s to 1 day.
MIN_LEASE_SECONDS = 60.0
MAX_LEASE_SECONDS = 24 * 3600.0
# Our decisions: a job's lease covers twice its longest typical duration plus a minute
# (scaled like the job's timing), so a sweeper running every minute renews it in time.
LEASE_FACTOR = 2.0
LEASE_EXTRA_SECONDS = 60.0


def job_lease_seconds(task_type: str, scale: float = 1.0) -> float:
    """The lease of the slot of a job of `task_type` (e.g. ``"diffusion"``); `scale` is
    the credentials' timing scale (1.0 for Legnext)."""
    try:
        high = endpoint_named(task_type).typical_seconds[1]
    except (KeyError, ValueError):
        high = 360.0  # the longest typical duration of any task type (video)
    wanted = (LEASE_FACTOR * high + LEASE_EXTRA_SECONDS) * scale
    return min(max(wanted, MIN_LEASE_SECONDS), MAX_LEASE_SECONDS)


def take(name: str, lease_seconds: float, *, sleep: Any = time.sleep) -> UUID | None:
    """Take one slot of limit `name` on a lease of `lease_seconds`, waiting as long as
    the limit is full (asking again after 0.1 s, then longer, at most 1 s apart,
    jittered). None when the limit does not exist or is inactive (not enforced)."""
    import httpx

    client = slots._client(_api_url())
    request = {"names": [name], "slots": 1, "mode": "concurrency",
               "lease_duration": lease_seconds}  # fmt: skip
    delay = slots.FIRST_RETRY_SECONDS
    while True:
        slots.ROUND_TRIPS.add("increment")
        try:
            response = slots._post(client, "/v2/concurrency_limits/increment-with-lease", request)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != slots.LOCKED:
                raise
            sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, slots.MAX_RETRY_SECONDS)
            continue
        body: dict[str, Any] = response.json()
        if not body.get("limits"):
            logger.warning("concurrency limit %r does not exist: not enforced", name)
            return None
        return UUID(body["lease_id"])


def release(lease_id: UUID | str | None) -> None:
    """Give a job's slot back (from this process, synchronously). Releasing a lease the
    server no longer knows (released before, or run out) does nothing: idempotent."""
    if lease_id is None:
        return
    slots.ROUND_TRIPS.add("decrement")
    try:
        slots._post(
            slots._client(_api_url()), "/v2/concurrency_limits/decrement-with-lease",
            {"lease_id": str(lease_id)},
        )  # fmt: skip
    except Exception as exc:  # the lease runs out by itself
        logger.warning("releasing a job's slot failed (%s); it frees when its lease ends",
                       type(exc).__name__)  # fmt: skip


def renew(lease_id: UUID | str, lease_seconds: float) -> bool:
    """Renew a job's lease for `lease_seconds` from now; False when the server no longer
    knows it (released, or run out)."""
    import httpx

    slots.ROUND_TRIPS.add("renew")
    try:
        slots._client(_api_url()).renew_concurrency_lease(
            lease_id=UUID(str(lease_id)), lease_duration=lease_seconds
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True


async def arelease(client: PrefectClient, lease_id: UUID | str) -> None:
    """`release` for async callers (the receiver), through their client. Raises on
    failure, so that the delivery is retried."""
    await client.release_concurrency_slots_with_lease(UUID(str(lease_id)))


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")
