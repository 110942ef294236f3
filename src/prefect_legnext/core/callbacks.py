"""The callback wire: what Legnext POSTs to a callback URL, how it is signed, and the
tags we add to the URL. Shared by the simulator (the sender) and the receiver, so that
both sides speak one definition; no Prefect here.

The body ``{"timestamp": <unix ms>, "data": <task object>}`` is the vendor's (API.md,
"Callbacks"). Signing is not documented by Legnext: the headers and the HMAC below are
the simulator's decision, which the receiver verifies when it has a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import ValidationError

from prefect_legnext.core.responses import Job

TIMESTAMP_HEADER = "X-Legnext-Timestamp"
SIGNATURE_HEADER = "X-Legnext-Signature"
# Tags we add to the callback URL's query, which Legnext echoes in the task object
# (`config.webhook_config.endpoint`). Our decisions, not Legnext's.
CALLBACK_TAG = "legnext_idempotency_key"
FLOW_RUN_TAG = "legnext_flow_run"
# The lease of the ``legnext-account`` slot a job holds (callback mode): whoever learns
# that the job finished (the receiver, the sweeper) releases it.
LEASE_TAG = "legnext_lease"
# "listen": the flow run waits for the job in its process (it cannot be suspended), so
# the receiver's notice is its event; there is no pause to resume.
WAIT_TAG = "legnext_wait"
LISTENING = "listen"
OUR_TAGS = (CALLBACK_TAG, FLOW_RUN_TAG, LEASE_TAG, WAIT_TAG)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body`` (API.md)."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison of `signature` with the one `secret` gives."""
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


class DeliveryError(ValueError):
    """A callback body that is not ``{"timestamp", "data": <task object>}``."""


@dataclass(frozen=True)
class Delivery:
    """One callback, read: the task object as a `Job`, the raw task object (handed on
    as it came, unknown keys included) and a digest of it (for repeated deliveries).

    Attributes:
        timestamp: the body's ``timestamp`` (unix ms), None when absent.
    """

    job: Job
    data: dict[str, Any]
    digest: str
    timestamp: int | None

    @property
    def callback_url(self) -> str:
        hook = self.job.config.webhook_config if self.job.config else None
        return (hook.endpoint if hook else None) or ""


def parse_delivery(body: bytes) -> Delivery:
    """Read a callback body leniently (unknown keys ignored, as API.md says of every
    response) but refuse anything that is not a task object with a job id and a status.

    Raises:
        DeliveryError: not JSON, not an object, no ``data`` object, or a ``data``
            without a textual ``job_id`` and ``status``.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise DeliveryError("the body is not JSON") from None
    if not isinstance(document, dict):
        raise DeliveryError("the body is not a JSON object")
    data = document.get("data")
    if not isinstance(data, dict):
        raise DeliveryError('the body has no "data" object (a task object)')
    for field in ("job_id", "status"):
        if not isinstance(data.get(field), str) or not data[field].strip():
            raise DeliveryError(f'"data" is not a task object: no textual {field!r}')
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()}))
        raise DeliveryError(f'"data" is not a task object: bad {fields}') from None
    timestamp = document.get("timestamp")
    stamp = timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None
    # The task object's digest, not the whole body's: a re-delivery may carry a new
    # timestamp for the same status change (our decision).
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Delivery(job=job, data=data, digest=digest, timestamp=stamp)


def listening_url(url: str) -> str:
    """`url` tagged for a run that waits in its process (`WAIT_TAG`)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != WAIT_TAG]
    return urlunsplit(parts._replace(query=urlencode([*query, (WAIT_TAG, LISTENING)])))


def callback_tags(url: str) -> dict[str, str]:
    """Our tags (`OUR_TAGS`) found in a callback URL's query."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    return {k: v for k, v in parse_qsl(query) if k in OUR_TAGS}
