"""The receiver's core: one delivery's headers and raw body in, a decision out. No I/O
and no Prefect here, so the ASGI app, a test or a later in-process waiter can use it.

Every rule here is our decision (Legnext documents no signing, API.md "Callbacks"),
except the body's shape, which is the vendor's.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from prefect_legnext.core.callbacks import (
    CALLBACK_TAG,
    FLOW_RUN_TAG,
    LEASE_TAG,
    LISTENING,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WAIT_TAG,
    Delivery,
    DeliveryError,
    callback_tags,
    parse_delivery,
    signature_matches,
)
from prefect_legnext.core.responses import FINISHED_STATUSES

# Our decisions: how old (or how far ahead) a signed timestamp may be, the largest body
# accepted (a task object is a few KiB), and how many deliveries are remembered.
DEFAULT_TOLERANCE_SECONDS = 300.0
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_REMEMBERED = 10_000


@dataclass(frozen=True)
class Arrival:
    """An accepted delivery and where it belongs.

    Attributes:
        key: the idempotency key the callback URL was tagged with (`CALLBACK_TAG`),
            None when the URL carries none (a submit outside the ledger).
        flow_run_id: the flow run that submitted (`FLOW_RUN_TAG`), None outside one.
        lease_id: the ``legnext-account`` slot's lease the job holds (`LEASE_TAG`,
            callback mode), None otherwise.
        listening: the run waits in its process for the notice (`WAIT_TAG`), never
            paused for it.
    """

    delivery: Delivery
    key: str | None
    flow_run_id: str | None
    lease_id: str | None = None
    listening: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.delivery.job.status in FINISHED_STATUSES

    @property
    def remembered_as(self) -> tuple[str, str, str]:
        job = self.delivery.job
        return (job.job_id, str(job.status), self.delivery.digest)


@dataclass(frozen=True)
class Decision:
    """What to answer. `reason` is one line fit for a log and for the answer: it never
    holds the body's URLs.

    Attributes:
        arrival: set when the delivery is accepted and new (its effects are to run).
        duplicate: an accepted delivery already handled: nothing to do.
    """

    status: int
    reason: str
    arrival: Arrival | None = None
    duplicate: bool = False


class CallbackGate:
    """Verifies, reads and de-duplicates deliveries.

    Args:
        secret: when set, a delivery must carry `TIMESTAMP_HEADER` and a matching
            `SIGNATURE_HEADER` (401 otherwise) with a timestamp (unix ms) within
            `tolerance` seconds of now (400 otherwise).
        remembered: how many handled deliveries are kept for de-duplication (the
            oldest are forgotten; effects are idempotent, so a forgotten or restarted
            receiver still changes nothing on a repeat).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(
        self,
        secret: SecretStr | str | None = None,
        *,
        tolerance: float = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
        remembered: int = DEFAULT_REMEMBERED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, str):
            secret = SecretStr(secret)
        if secret is not None and not secret.get_secret_value():
            raise ValueError("the callback secret is empty")
        if tolerance <= 0:
            raise ValueError("the timestamp tolerance must be above 0 seconds")
        self._secret = secret
        self.tolerance = tolerance
        self.max_body_bytes = max_body_bytes
        self._remembered = remembered
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    @property
    def verifies(self) -> bool:
        return self._secret is not None

    def decide(self, headers: Mapping[str, str], body: bytes) -> Decision:
        """The answer to one delivery (`headers` in any case). Our tags are read from the
        callback URL the task object echoes, inside the signed body, never from the
        request's own (unsigned) query."""
        if len(body) > self.max_body_bytes:
            return Decision(413, f"body over {self.max_body_bytes} bytes")
        lowered = {name.lower(): value for name, value in headers.items()}
        refusal = self._verify(lowered, body)
        if refusal is not None:
            return refusal
        try:
            delivery = parse_delivery(body)
        except DeliveryError as exc:
            return Decision(400, str(exc))
        tags = callback_tags(delivery.callback_url)
        arrival = Arrival(
            delivery, tags.get(CALLBACK_TAG), tags.get(FLOW_RUN_TAG), tags.get(LEASE_TAG),
            listening=tags.get(WAIT_TAG) == LISTENING,
        )  # fmt: skip
        if arrival.remembered_as in self._seen:
            self._seen.move_to_end(arrival.remembered_as)
            return Decision(200, "duplicate delivery: nothing to do", arrival, duplicate=True)
        return Decision(200, "accepted", arrival)

    def _verify(self, headers: Mapping[str, str], body: bytes) -> Decision | None:
        if self._secret is None:
            return None
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "").strip()
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        if not timestamp or not signature:
            return Decision(401, "unsigned delivery (a secret is set)")
        if not signature_matches(self._secret.get_secret_value(), timestamp, body, signature):
            return Decision(401, "bad signature")
        # Only a delivery signed with our secret learns that its timestamp is the problem.
        try:
            sent = int(timestamp) / 1000
        except ValueError:
            return Decision(400, "the timestamp is not unix milliseconds")
        if abs(self._clock() - sent) > self.tolerance:
            return Decision(400, f"stale timestamp (tolerance {self.tolerance:g} s)")
        return None

    def remember(self, arrival: Arrival) -> None:
        """Mark a delivery handled (its effects done): a repeat is then a no-op."""
        self._seen[arrival.remembered_as] = None
        self._seen.move_to_end(arrival.remembered_as)
        while len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
