"""Never pay twice: an idempotency ledger for paid creates.

Legnext has no idempotency key, so we keep our own: for each submit, a record
``key -> job id`` in a small ledger (objects in the S3 bucket, or files in a
local directory), and for each job we hand out, a claim ``_jobs/<job id>`` naming
the one key that holds it. The protocol, in `submit_once`:

0. The conditional create of the key's record is the existence check: a new key
   costs no read. Otherwise the record is read:
1. A record with a job id exists: reuse that job, no POST.
2. A record without a job id exists (a previous attempt died or lost the answer
   after sending): reconcile with the account's active tasks before anything else;
   adopt the job when exactly one candidate fits and its claim is won, else stop
   with `OutcomeUnknownError` (or resubmit, when the caller accepts that risk), until
   the evidence says the create made nothing (below): then the record is released
   (``abandoned``) and the submit POSTs again.
3. No record: write ``submitting`` first (write-ahead), POST, record the job's id
   (and claim the job only when that write failed). A POST refused before acceptance
   (4xx, 429, connection never made) deletes the record: nothing was created, a retry
   may POST again.

Adoption is exclusive. Reconciliation lists the account's active tasks first and
reads the ledger after: a job in that list was created by a POST that came after its
record was written, so its record is seen (unresolved: a job its create could have
made, one created in its creation interval, is adopted by nobody else; resolved: its
job is excluded). A job is adopted only when it is the one candidate created while
the failed POST itself was in flight. The adopter must then win the job's claim (a
conditional create: adopters exclude each other) and read the ledger again: a record
naming the job means its owner was answered meanwhile, and the claim is given back.
The owner's one write after its POST is the record; it claims the job only when that
write failed (then only the claim keeps adopters off it).

When is a create concluded "not created"? Legnext lists no recent jobs, only active
ones (``GET /api/account/active_tasks``, used when it answers, never depended on).
The evidence, every rule of it our decision and not Legnext's:

- What the create's answer was, kept in the record (``create_status``): an HTTP 5xx
  that came back, no answer at all, or none yet (``submitting``: the worker stopped
  during the create). An answered success whose body could not be read made a job:
  it is never concluded "not created" (the caller may still resubmit).
- The record's *creation interval* (`_interval`): from its write to its failure, plus
  how late Legnext may have made the job (`ANSWERED_5XX_SETTLE` after an answer or a
  closed connection, `LATE_AFTER_TIMEOUT` after a timeout; `SEND_WINDOW` after the
  write when the create never reported back), shifted by the clock offset its writer
  measured (core/clock.py) with `CLOCK_MARGIN`, or by `CLOCK_SKEW` unmeasured. Its
  *window*: the interval, plus the job type's longest typical duration (API.md). A job
  the create made is active until then, so reconciliation sees it.
  Past the window, a look at the active tasks (or no answer from them) that finds no
  unclaimed job of the type created in the record's creation interval concludes "not
  created": the record is marked ``abandoned`` and the submit POSTs again.
- An unresolved record blocks the adoption of a job only when the job was created in
  its creation interval, and only while its own window lasts: an old record blocks
  nothing.

Jobs a reconciliation saw but could not adopt (several fitted, or another unresolved
submit overlapped) are remembered in the record (``sightings``) and read again by id
later, after they have left the active tasks: once the others are resolved, the job
left over is adopted even if it has finished. While one is remembered and unclaimed,
the record is never concluded "not created". A submit whose one in-flight job is
kept from it only by other unresolved submits (live ones are waited for first; the
rest are mostly workers killed during their create) waits out their windows, up to
`RIVALS_WAIT`, and adopts it then.

The residual risk: a job that a lost create did make, that finished before anyone
looked (or while the active tasks did not answer, or after a queue in Legnext held it
past the window, or whose worker was killed before the write that records it), is
paid and left behind, and the step pays again. And two lost
creates of one type at once, without callbacks, cannot be told apart: nothing is
adopted, and both stay "outcome unknown", naming the jobs they saw, until one of them
is resolved. docs/reliability.md says the rest.

Why a ledger and not Prefect's result cache: a cached result exists only once the
task has *finished*; a worker that dies between the POST and the end of the task
leaves no result, and the retry would pay again. The write-ahead record survives it.
The S3 ledger lives beside the outputs, is shared by every worker and needs no
Prefect server; the local ledger suits one machine. See docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.exceptions import ClientError
from pydantic import BaseModel

from prefect_legnext.core.callbacks import CALLBACK_TAG, FLOW_RUN_TAG, LEASE_TAG
from prefect_legnext.core.endpoints import CreateEndpoint, endpoint_for
from prefect_legnext.core.endpoints import endpoint as endpoint_named
from prefect_legnext.core.errors import LegnextError, OutcomeUnknownError
from prefect_legnext.core.models import LegnextRequest

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prefect_aws import S3Bucket

    from prefect_legnext.core.client import LegnextClient
    from prefect_legnext.core.responses import ActiveTask, Job

logger = logging.getLogger("prefect_legnext.orchestration.ledger")

# Our decisions, not Legnext's (it publishes no such bounds):
# how far our clocks and Legnext's may disagree when we have not measured it (a
# record carries the writer's measurement, core/clock.py, when there is one),
CLOCK_SKEW = timedelta(minutes=2)
# and, around a measured offset, how far the clocks of Legnext's own servers may
# disagree with the one(s) we measured (the creation interval's margin),
CLOCK_MARGIN = timedelta(seconds=0.5)
# and how long after its write-ahead record a create's POST can still make a job: the
# client retries a create for up to 120 s (never sent, or 429), then waits one 30 s read.
SEND_WINDOW = timedelta(minutes=3)
# A create answers within the client's 30 s read timeout: a "submitting" record older
# than this belongs to a submit that died, and is reconciled rather than waited for.
IN_PROGRESS_GRACE_SECONDS = 60.0
# How long after a create failed its job can still be made: when Legnext answered (a
# 5xx) or closed the connection, it was done with the request (ANSWERED_5XX_SETTLE);
# when we stopped waiting (a timeout), it may still have been working on it.
LATE_AFTER_TIMEOUT = timedelta(seconds=60)
# A create Legnext answered with a 5xx was refused by a server that answered: a job it
# did make (a backend that failed after creating it) is among the active tasks by this
# long after the answer. A look then that finds no candidate concludes "not created"
# without waiting for the whole window; the create is tried again at most this many
# times in one call before the submit gives up with "outcome unknown".
ANSWERED_5XX_SETTLE = timedelta(seconds=5)
ANSWERED_5XX_ROUNDS = 2
IN_PROGRESS_POLL_SECONDS = 0.5
# How long a submit waits, in one call, for the windows of other unresolved submits
# that keep it from adopting the one job made while its own create was in flight
# (past its window a submit blocks nothing): rather than "outcome unknown" for a job
# that is almost surely ours. A never-reported-back rival's window is SEND_WINDOW plus
# the type's longest typical duration.
RIVALS_WAIT = timedelta(minutes=6)
KEY_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
JOBS_DIR = "_jobs"  # the claims, beside the records (never listed as records)
OnUnknown = Literal["raise", "resubmit"]


class LedgerRecord(BaseModel):
    key: str
    endpoint: str
    task_type: str
    body_sha256: str
    state: Literal["submitting", "submitted", "unknown", "abandoned"]
    job_id: str | None = None
    submitted_at: datetime
    updated_at: datetime
    callback: str | None = None
    # Random per written record: when S3's answer to our conditional create is lost and
    # botocore's retry gets 412, the record found is ours if it carries our token.
    # None in records written before tokens existed (they read as another writer's).
    writer: str | None = None
    # The HTTP status of the create's answer when one came back without a job (a 5xx,
    # or a success that could not be read); None when no answer came (or none yet).
    create_status: int | None = None
    # When that 5xx answer came back (see ANSWERED_5XX_SETTLE).
    answered_at: datetime | None = None
    # When the create failed without a job (our clock), and whether it was a timeout
    # (Legnext may then still have made the job a little later): with `clock`, these
    # narrow the creation interval from minutes to the create's own time in flight.
    failed_at: datetime | None = None
    timed_out: bool = False
    # When the failed POST itself was sent (after the record, and after any earlier
    # attempts that were refused before acceptance).
    sent_at: datetime | None = None
    # Legnext's clock minus the writer's, seconds, as the writer had measured it
    # (low, high); None when it had not (then CLOCK_SKEW applies).
    clock: tuple[float, float] | None = None
    # Why an ``abandoned`` record was concluded "not created": the evidence used.
    conclusion: str | None = None
    # Jobs a reconciliation saw among the active tasks that may be this record's but
    # could not adopt then (another unresolved submit overlapped, or several fitted).
    # Legnext lists no finished jobs: these are read again by id once they have left
    # the active tasks, so a job that finishes before it is told apart is not lost.
    sightings: list[str] = []


class JobClaim(BaseModel):
    """``_jobs/<job id>``: the one key that holds a job."""

    job_id: str
    key: str
    claimed_at: datetime


class JobLedger(Protocol):
    """Where ``key -> job id`` records live."""

    def get(self, key: str) -> LedgerRecord | None: ...
    def create(self, record: LedgerRecord) -> bool:
        """Write `record` only if its key has none yet; False when another was first
        (True when the record found is this very one, written by a lost-answer try)."""
        ...

    def put(self, record: LedgerRecord) -> None: ...
    def delete(self, key: str) -> None: ...
    def records_since(self, since: datetime) -> list[LedgerRecord]:
        """Records written at or after `since` (to tell claimed and unresolved jobs)."""
        ...

    def claim_job(self, job_id: str, key: str) -> bool:
        """Make `key` the holder of `job_id` unless another key holds it already: True
        when `key` holds it (also when a lost-answer retry finds our own claim)."""
        ...

    def job_holder(self, job_id: str) -> str | None:
        """The key holding `job_id`, or None when nobody claimed it."""
        ...

    def release_job(self, job_id: str, key: str) -> None:
        """Drop `key`'s claim of `job_id` (an adoption that found the job's owner had
        recorded it meanwhile); nothing when another key holds it."""
        ...


class LocalLedger:
    """Records as JSON files in a directory: for one machine (tests, a laptop)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.claims = self.directory / JOBS_DIR
        self.claims.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalLedger({str(self.directory)!r})"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> LedgerRecord | None:
        try:
            return LedgerRecord.model_validate_json(self._path(key).read_bytes())
        except FileNotFoundError:
            return None

    def _staged(self, document: BaseModel) -> str:
        # Written aside first, then linked or renamed: a reader never sees half a record.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(document.model_dump_json().encode())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def _link(self, document: BaseModel, path: Path) -> bool:
        """Write `document` at `path` only if nothing is there (atomic)."""
        tmp = self._staged(document)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def create(self, record: LedgerRecord) -> bool:
        return self._link(record, self._path(record.key))

    def put(self, record: LedgerRecord) -> None:
        os.replace(self._staged(record), self._path(record.key))

    def _claim_path(self, job_id: str) -> Path:
        return self.claims / f"{check_job_id(job_id)}.json"

    def claim_job(self, job_id: str, key: str) -> bool:
        if self._link(_claim(job_id, key), self._claim_path(job_id)):
            return True
        return self.job_holder(job_id) == key

    def job_holder(self, job_id: str) -> str | None:
        try:
            return JobClaim.model_validate_json(self._claim_path(job_id).read_bytes()).key
        except FileNotFoundError:
            return None

    def release_job(self, job_id: str, key: str) -> None:
        if self.job_holder(job_id) == key:
            self._claim_path(job_id).unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def records_since(self, since: datetime) -> list[LedgerRecord]:
        records = []
        for path in self.directory.glob("*.json"):
            try:
                record = LedgerRecord.model_validate_json(path.read_bytes())
            except FileNotFoundError:  # deleted by another submit meanwhile
                continue
            if record.updated_at >= since:
                records.append(record)
        return records


def _s3_client(bucket: S3Bucket) -> Any:
    from prefect_legnext.orchestration.storage import s3_client

    return s3_client(bucket)


S3_LEDGER_PREFIX = "legnext/_ledger"  # under the bucket's folder, beside the outputs


class S3Ledger:
    """Records as small JSON objects under ``{bucket_folder}/{prefix}/`` of an S3 bucket:
    shared by every worker, durable, beside the outputs they protect. New records are
    written with ``If-None-Match: *`` so that two workers cannot both claim a key."""

    def __init__(self, bucket: S3Bucket, prefix: str = S3_LEDGER_PREFIX) -> None:
        self.bucket = bucket
        self.prefix = bucket._resolve_path(prefix.strip("/"))
        self._s3 = _s3_client(bucket)

    def __repr__(self) -> str:
        return f"S3Ledger(s3://{self.bucket.bucket_name}/{self.prefix})"

    def __getstate__(self) -> dict[str, Any]:  # sent to process and Dask task runners
        return {k: v for k, v in self.__dict__.items() if k != "_s3"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._s3 = _s3_client(self.bucket)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}.json"

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self._guarded(getattr(self._s3, method), Bucket=self.bucket.bucket_name, **kwargs)

    def _guarded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """`call`, with S3's failures as the package's storage errors (a connection
        closed or reset is `StorageUnavailableError`: the submit task retries it);
        a lost race or a missing key stays a ClientError for the caller to read."""
        from prefect_legnext.orchestration.storage import S3_ERRORS, storage_error

        try:
            return call(*args, **kwargs)
        except S3_ERRORS as exc:
            if isinstance(exc, ClientError) and _code(exc) in _LOST_RACE + _MISSING:
                raise
            raise storage_error(self.bucket, exc) from exc

    def get(self, key: str) -> LedgerRecord | None:
        body = self._read(self._key(key))
        return None if body is None else LedgerRecord.model_validate_json(body)

    def _write(self, record: LedgerRecord, **conditions: str) -> None:
        self._put(self._key(record.key), record, **conditions)

    def _put(self, key: str, document: BaseModel, **conditions: str) -> None:
        self._call(
            "put_object",
            Key=key,
            Body=document.model_dump_json().encode(),
            ContentType="application/json",
            **conditions,
        )

    def _read(self, key: str) -> bytes | None:
        try:
            answer = self._call("get_object", Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        # The body streams after the call returned: a reset here is just as transient.
        body: bytes = self._guarded(answer["Body"].read)
        return body

    def create(self, record: LedgerRecord) -> bool:
        try:
            self._write(record, IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) not in _LOST_RACE:
                raise
            # botocore retries a PUT whose answer was lost; if S3 had stored it, the
            # retry gets 412 for our own record. Taking that for another writer's
            # would leave the submit waiting on itself, then "outcome unknown" forever.
            stored = self.get(record.key)
            if stored is None or record.writer is None:
                return False
            return stored.writer == record.writer
        return True

    def put(self, record: LedgerRecord) -> None:
        self._write(record)

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._key(key))

    def records_since(self, since: datetime) -> list[LedgerRecord]:
        records = []
        for item in self._guarded(self._listing):
            if item["LastModified"] >= since:
                record = self.get(item["Key"].rsplit("/", 1)[-1].removesuffix(".json"))
                if record is not None and record.updated_at >= since:
                    records.append(record)
        return records

    def _listing(self) -> list[dict[str, Any]]:
        # The delimiter keeps the claims (``_jobs/...``) out: records only.
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket.bucket_name, Prefix=f"{self.prefix}/", Delimiter="/"
        )
        return [item for page in pages for item in page.get("Contents", [])]

    def _claim_key(self, job_id: str) -> str:
        return f"{self.prefix}/{JOBS_DIR}/{check_job_id(job_id)}.json"

    def claim_job(self, job_id: str, key: str) -> bool:
        try:
            self._put(self._claim_key(job_id), _claim(job_id, key), IfNoneMatch="*")
        except ClientError as exc:
            if _code(exc) not in _LOST_RACE:
                raise
            # As in `create`: a retried PUT whose first answer was lost finds our claim.
            return self.job_holder(job_id) == key
        return True

    def job_holder(self, job_id: str) -> str | None:
        body = self._read(self._claim_key(job_id))
        return None if body is None else JobClaim.model_validate_json(body).key

    def release_job(self, job_id: str, key: str) -> None:
        if self.job_holder(job_id) == key:
            self._call("delete_object", Key=self._claim_key(job_id))


_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_MISSING = ("NoSuchKey", "404")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def default_ledger_dir() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()) / "legnext" / "ledger"


def resolve_ledger(ledger: JobLedger | S3Bucket | str | Path | None) -> JobLedger:
    """An S3Bucket gives an `S3Ledger`, a path a `LocalLedger`, None the local default."""
    from prefect_aws import S3Bucket

    if ledger is None:
        return LocalLedger(default_ledger_dir())
    if isinstance(ledger, S3Bucket):
        return S3Ledger(ledger)
    if isinstance(ledger, str | Path):
        return LocalLedger(ledger)
    return ledger


def body_sha256(endpoint: CreateEndpoint, request: LegnextRequest) -> str:
    """What a submit is, for keys and conflict checks: endpoint and body, callback aside,
    and image URLs without their query: a presigned URL's signature and expiry change
    on every run, but it still names the same object."""
    wire = request.to_wire()
    wire.pop("callback", None)
    for field in ("imgUrl", "imgUrls"):
        if field in wire:
            wire[field] = _unsigned(wire[field])
    if isinstance(wire.get("mask"), dict) and "url" in wire["mask"]:
        wire["mask"] = {**wire["mask"], "url": _unsigned(wire["mask"]["url"])}
    canonical = json.dumps([endpoint.name, wire], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unsigned(value: str | list[str]) -> str | list[str]:
    if isinstance(value, list):
        return [str(_unsigned(item)) for item in value]
    return urlunsplit(urlsplit(value)._replace(query="", fragment=""))


def derive_key(endpoint: CreateEndpoint, request: LegnextRequest, scope: list[str]) -> str:
    """A key from the run (flow run id, task position) and the request's content."""
    basis = json.dumps([*scope, body_sha256(endpoint, request)])
    return hashlib.sha256(basis.encode()).hexdigest()[:40]


def check_job_id(job_id: str) -> str:
    """A job id fit for a claim's name (Legnext's are UUIDs)."""
    if not JOB_ID_PATTERN.match(job_id):
        raise ValueError(f"job id {job_id!r} is not a Legnext job id")
    return job_id


def _claim(job_id: str, key: str) -> JobClaim:
    return JobClaim(job_id=job_id, key=key, claimed_at=_now())


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise ValueError(
            f"idempotency_key {key!r} must be 1-128 characters of letters, digits, '.', '_', '-'"
        )
    return key


_SUBMIT_TAGS = (CALLBACK_TAG, FLOW_RUN_TAG, LEASE_TAG)


def tag_callback(
    request: LegnextRequest,
    key: str,
    flow_run_id: str | None = None,
    lease_id: str | None = None,
) -> LegnextRequest:
    """Add the key to the callback URL, which Legnext echoes in the task object, so that
    reconciliation can recognise our job exactly; for a submit inside a flow run, that
    run's id, so that a callback receiver can resume the run waiting for the job; and
    the lease of the account slot the job holds (callback mode), so that whoever learns
    that the job finished can release it."""
    if request.callback is None:
        return request
    parts = urlsplit(request.callback)
    # Tags set here replace any stale ones; `WAIT_TAG` is the flow's own (`notices`).
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _SUBMIT_TAGS]
    query.append((CALLBACK_TAG, key))
    if flow_run_id is not None:
        query.append((FLOW_RUN_TAG, flow_run_id))
    if lease_id is not None:
        query.append((LEASE_TAG, lease_id))
    return request.model_copy(
        update={"callback": urlunsplit(parts._replace(query=urlencode(query)))}
    )


def _now() -> datetime:
    return datetime.now(UTC)


def submit_once(
    client: LegnextClient,
    ledger: JobLedger,
    request: LegnextRequest,
    key: str,
    *,
    on_unknown: OnUnknown = "raise",
    fingerprint: str | None = None,
    in_progress_grace: float = IN_PROGRESS_GRACE_SECONDS,
    window_scale: float = 1.0,
    flow_run_id: str | None = None,
    lease_id: str | None = None,
) -> tuple[Job, bool]:
    """Submit `request` at most once per `key`. Returns the job and whether it was
    reused (True) rather than created by this call.

    Args:
        fingerprint: what makes two submits the same, for the conflict check;
            default the request body (image URLs without their query).
        in_progress_grace: how long a ``submitting`` record is taken for a live
            submit elsewhere (waited for) before it is taken for a dead one
            (reconciled).
        window_scale: scales every record's window (see the module docstring); for
            tests against a faster simulator, 1.0 for Legnext.
        flow_run_id: the flow run submitting, tagged on the callback URL (if any) for
            the callback receiver.
        lease_id: the account slot's lease the job will hold (callback mode), tagged
            on the callback URL too.

    Raises:
        OutcomeUnknownError: a previous or this attempt may have created a job that
            reconciliation could not identify; nothing new was submitted.
        ValueError: `key` was used before for a different request.
    """
    endpoint = endpoint_for(request)
    digest = fingerprint or body_sha256(endpoint, request)
    request = tag_callback(request, key, flow_run_id, lease_id)
    # The conditional create is the existence check: a new key costs one write and no
    # read; a key that has a record costs a refused create and then the read.
    record: LedgerRecord | None = None
    read = False
    while True:
        if read:
            record = ledger.get(key)
        read = True
        if record is None:
            fresh = _record(
                key, endpoint.name, endpoint.task_type, digest, request.callback, _clock(client)
            )
            if ledger.create(fresh):
                return _post(client, ledger, request, fresh, window_scale)
            continue  # another submit claimed the key first: read its record
        if record.body_sha256 != digest:
            raise ValueError(
                f"idempotency key {key} was used for a different {record.endpoint} request"
            )
        if record.job_id is not None:
            job = client.get_job(record.job_id)
            if not job.is_failed:
                logger.info(
                    "reusing job %s for idempotency key %s: no new submit", record.job_id, key
                )
                return job, True
            # A failed job released its points: submitting again cannot pay twice.
            logger.warning("job %s for key %s failed; submitting again", job.job_id, key)
            return _resubmit(client, ledger, request, record, window_scale)
        if record.state == "abandoned":  # concluded "not created" by an earlier attempt
            return _resubmit(client, ledger, request, record, window_scale)
        age = (_now() - record.updated_at).total_seconds()
        if record.state == "submitting" and age < in_progress_grace:
            # Probably a live submit elsewhere (same key): wait for its job id.
            time.sleep(min(IN_PROGRESS_POLL_SECONDS, in_progress_grace - age))
            continue
        return _settle(client, ledger, request, record, on_unknown, window_scale)


def _settle(
    client: LegnextClient,
    ledger: JobLedger,
    request: LegnextRequest,
    record: LedgerRecord,
    on_unknown: OnUnknown,
    window_scale: float,
) -> tuple[Job, bool]:
    """An unresolved record: adopt its job, or conclude it made none and submit again,
    or stop (or resubmit, at the caller's request) while neither can be told."""
    # A retry moments after a 5xx would otherwise look before a job it made could show,
    # and stop with "outcome unknown" for want of a few seconds.
    _wait_until_settled(record, window_scale)
    seen = _look(client, ledger, record, window_scale)
    if seen.job is not None:
        return seen.job, True
    evidence = _not_created(record, seen, window_scale)
    if evidence is not None:
        _abandon(ledger, record, evidence)
    elif on_unknown == "raise":
        expires = _settled_at(record, window_scale) or _expires_at(record, window_scale)
        reason = (
            f"an earlier attempt's outcome could not be reconciled; jobs that may be its: "
            f"{', '.join(seen.ids)} (none adopted: they cannot be told apart from another "
            "submit's)"
            if seen.ids
            else "an earlier attempt's outcome could not be reconciled; unless its job turns "
            f"up, it counts as not created from {expires:%Y-%m-%d %H:%M:%S} UTC"
        )
        raise _unknown(record, reason)
    else:
        logger.warning("resubmitting %s for key %s at the caller's request", record.endpoint,
                       record.key)  # fmt: skip
    return _resubmit(client, ledger, request, record, window_scale)


def _abandon(ledger: JobLedger, record: LedgerRecord, evidence: str) -> None:
    logger.warning("key %s: concluded not created (%s); submitting again", record.key, evidence)
    ledger.put(
        record.model_copy(
            update={"state": "abandoned", "conclusion": evidence, "updated_at": _now()}
        )
    )


def _record(
    key: str,
    endpoint: str,
    task_type: str,
    digest: str,
    callback: str | None,
    clock: tuple[float, float] | None,
) -> LedgerRecord:
    now = _now()
    return LedgerRecord(
        key=key,
        endpoint=endpoint,
        task_type=task_type,
        body_sha256=digest,
        state="submitting",
        submitted_at=now,
        updated_at=now,
        callback=callback,
        writer=uuid.uuid4().hex,
        clock=clock,
    )


def _resubmit(
    client: LegnextClient,
    ledger: JobLedger,
    request: LegnextRequest,
    old: LedgerRecord,
    window_scale: float,
    rounds: int = 0,
) -> tuple[Job, bool]:
    """A new write-ahead record over `old` (whose job failed or was never made), then
    the POST."""
    retry = _record(
        old.key, old.endpoint, old.task_type, old.body_sha256, request.callback, _clock(client)
    )
    ledger.put(retry)
    return _post(client, ledger, request, retry, window_scale, rounds)


def _post(
    client: LegnextClient,
    ledger: JobLedger,
    request: LegnextRequest,
    record: LedgerRecord,
    window_scale: float,
    rounds: int = 0,
) -> tuple[Job, bool]:
    """The paid POST, after its write-ahead record, and what its outcome means for it.
    `rounds`: creates already answered with a 5xx and concluded "not created" in this
    call."""
    try:
        job = client.create(request)
    except OutcomeUnknownError as exc:
        # What the answer was (a 5xx, or none) is evidence for a later conclusion.
        answered = exc.status_code is not None and exc.status_code >= 500
        failed = _now()
        record = record.model_copy(
            update={
                "state": "unknown",
                "create_status": exc.status_code,
                "answered_at": failed if answered else None,
                "failed_at": failed,
                "timed_out": exc.timed_out,
                "sent_at": exc.submitted_at,
                "clock": _clock(client) or record.clock,
                "updated_at": failed,
            }
        )
        # The jobs that may be ours go into this very write: a worker killed while it
        # reconciles leaves them for its retry, which reads them by id even after they
        # left the active tasks (a short job is gone within seconds).
        record = record.model_copy(update={"sightings": _early_sightings(client, record)})
        ledger.put(record)
        seen = _look(client, ledger, record, window_scale)
        if seen.job is not None:
            return seen.job, True
        if not answered or seen.candidates != 0 or rounds >= ANSWERED_5XX_ROUNDS:
            raise
        # A 5xx: look again once a job it made would show, then decide (our decision).
        _wait_until_settled(record, window_scale)
        seen = _look(client, ledger, record, window_scale)
        if seen.job is not None:
            return seen.job, True
        evidence = _not_created(record, seen, window_scale)
        if evidence is None:
            raise
        _abandon(ledger, record, evidence)
        return _resubmit(client, ledger, request, record, window_scale, rounds + 1)
    except LegnextError:
        ledger.delete(record.key)  # refused before acceptance: nothing exists, nothing is owed
        raise
    # One write: the record. A worker killed right after it leaves the job to its
    # retry. (The owner used to claim the job first: a kill between the two writes
    # left a record without its job, and once the job had left the active tasks the
    # retry concluded "not created" and paid again; the 200-chain run of 2026-12-01.)
    # A recorded job needs no claim of its owner: an adopter excludes it when it reads
    # the ledger, before and after winning the claim (`_adopt`).
    if not _record_job(ledger, record, job.job_id):
        _claim_own(ledger, record, job.job_id)  # unrecorded, only a claim says whose it is
    return job, False


def _clock(client: LegnextClient) -> tuple[float, float] | None:
    """The offset between Legnext's clock and ours as measured so far (core/clock.py)."""
    offset = client.clock.offset()
    return None if offset is None else (offset.low, offset.high)


def _claim_own(ledger: JobLedger, record: LedgerRecord, job_id: str) -> None:
    """Claim the job our POST made when it could not be recorded, so that no
    reconciliation adopts it. The job is ours whatever happens here (Legnext said so):
    a failure is logged loudly, never raised."""
    try:
        if not ledger.claim_job(job_id, record.key):
            logger.error(
                "job %s of key %s was claimed first by key %s; keeping it for %s",
                job_id, record.key, ledger.job_holder(job_id), record.key,
            )  # fmt: skip
    except Exception:
        logger.exception("could not claim job %s for key %s in %r", job_id, record.key, ledger)


@dataclass(frozen=True)
class Sighting:
    """What one reconciliation saw.

    Attributes:
        job: the job adopted, if any.
        candidates: the unclaimed jobs of the record's type created in its creation
            interval among the active tasks; None when the active tasks did not answer.
        looked_at: when the active tasks were read.
        ids: the candidates' job ids, when none was adopted.
    """

    job: Job | None
    candidates: int | None
    looked_at: datetime
    ids: tuple[str, ...] = ()
    # When only other unresolved submits' windows kept the one job made while our
    # create was in flight from being adopted: the end of the last of those windows.
    blocked_until: datetime | None = None


def reconcile(
    client: LegnextClient, ledger: JobLedger, record: LedgerRecord, *, window_scale: float = 1.0
) -> Job | None:
    """The job an unanswered submit created, adopted (claimed and recorded), or None
    when it cannot be told (see `_reconcile`)."""
    return _reconcile(client, ledger, record, window_scale).job


def _reconcile(
    client: LegnextClient,
    ledger: JobLedger,
    record: LedgerRecord,
    window_scale: float,
    *,
    wait_for_live: bool = False,
) -> Sighting:
    """Find the job an unanswered submit created, among the account's active tasks:
    same task type, created in the record's creation interval, claimed by no other
    key and recorded in no other record, and, when we sent a callback, echoing our key
    in it. While another unresolved submit of the type overlaps ours, its job and ours
    cannot be told apart: nothing is adopted.

    The active tasks are read *before* the ledger: a job among them was created after
    its record was written, so that record is seen here (the adoption race of issue
    11, defect 1). The adoption itself is the won claim of the job id.

    With `wait_for_live`, an overlap that comes only from live submits (POSTed, their
    answer still due) is waited out: each records its own job within moments, which
    then is no longer a candidate, and what is left can be told apart. Our decision:
    without it, a busy account turned most lost answers into "outcome unknown"."""
    looked_at = _now()
    tasks = _active_tasks(client, record)
    if tasks is None and not record.sightings:
        return Sighting(None, None, looked_at)
    # The active ones first, then those seen before (read by id: they may have finished).
    ids = list(dict.fromkeys([t.job_id for t in tasks or []] + record.sightings))
    if not ids:
        return Sighting(None, 0, looked_at)
    while True:
        others = [r for r in ledger.records_since(_lookback(record)) if r.key != record.key]
        jobs = _candidates(client, ledger, record, ids, others)
        if not jobs:
            return Sighting(None, 0 if tasks is not None else None, looked_at)
        if len(jobs) == 1 and _holder(ledger, jobs[0]) == record.key:
            mine, ambiguous = jobs, False  # claimed by us already (died before recording)
            break
        start, end = _in_flight(record)
        mine = [job for job in jobs if _made_within(job, (start, end))]
        rivals = _rivals(record, mine or jobs, others, looked_at, window_scale)
        ambiguous = len(mine) != 1 or bool(rivals)
        if not (ambiguous and wait_for_live and rivals and all(map(_live, rivals))):
            break
        time.sleep(IN_PROGRESS_POLL_SECONDS)
    if ambiguous:
        logger.warning(
            "reconciling key %s: %d candidate jobs of type %s (%d made while its create was "
            "in flight), %d other unresolved submits that could have made them%s; not "
            "adopting", record.key, len(jobs), record.task_type, len(mine), len(rivals),
            _described(rivals),
        )  # fmt: skip
        _remember(ledger, record, jobs)
        blocked = len(mine) == 1 and bool(rivals)
        until = max(_expires_at(r, window_scale) for r in rivals) if blocked else None
        return Sighting(None, len(jobs), looked_at, tuple(job.job_id for job in jobs), until)
    if not _adopt(ledger, record, mine[0]):
        return Sighting(None, 1, looked_at)
    logger.warning(
        "reconciled key %s with job %s created by a lost submit", record.key, mine[0].job_id
    )
    _record_job(ledger, record, mine[0].job_id)
    return Sighting(mine[0], 1, looked_at)


def _look(
    client: LegnextClient, ledger: JobLedger, record: LedgerRecord, window_scale: float
) -> Sighting:
    """Reconcile, waiting out live submits, and, when the one job made while our create
    was in flight is kept from us only by other submits' windows, those windows too
    (up to `RIVALS_WAIT`): then look again. The job is among our sightings by then, read
    by id even after it has left the active tasks."""
    seen = _reconcile(client, ledger, record, window_scale, wait_for_live=True)
    limit = _now() + RIVALS_WAIT * window_scale
    while seen.job is None and seen.blocked_until is not None and seen.blocked_until <= limit:
        logger.warning(
            "reconciling key %s: one job was made while its create was in flight; waiting "
            "until %s UTC, when the other submits that could have made it no longer count",
            record.key, f"{seen.blocked_until:%H:%M:%S}",
        )  # fmt: skip
        time.sleep(max(0.0, (seen.blocked_until - _now()).total_seconds()) + 0.1)
        record = _with_sightings(record, seen.ids)
        seen = _reconcile(client, ledger, record, window_scale, wait_for_live=True)
    return seen


def _adopt(ledger: JobLedger, record: LedgerRecord, job: Job) -> bool:
    """Win the job's claim (adopters exclude each other), then make sure no other
    record names the job: its owner records it right after its answer, so a record
    naming it now means the owner was answered while we looked (the claim is given
    back)."""
    if not ledger.claim_job(job.job_id, record.key):
        logger.warning("reconciling key %s: job %s was claimed first by another submit",
                       record.key, job.job_id)  # fmt: skip
        return False
    others = ledger.records_since(_lookback(record))
    owner = next((r.key for r in others if r.job_id == job.job_id and r.key != record.key), None)
    if owner is not None:
        logger.warning("reconciling key %s: job %s is recorded by key %s; not adopting",
                       record.key, job.job_id, owner)  # fmt: skip
        ledger.release_job(job.job_id, record.key)
        return False
    return True


CallbackOutcome = Literal["recorded", "already", "no-record", "conflict", "outside-window"]


def record_from_callback(ledger: JobLedger, key: str, job: Job) -> CallbackOutcome:
    """Record the job a callback names under the key it echoes (`CALLBACK_TAG`), when
    the key's record has no job yet: the callback receiver's adoption. The echo is
    exact evidence (only our submit tagged the URL with this key), so the job is claimed
    and recorded as a reconciliation would, and never over a different job id.

    Outcomes, each idempotent (a repeated callback changes nothing): ``recorded``;
    ``already`` (the record holds this job); ``no-record`` (nothing to attach to: the
    key is not in this ledger); ``conflict`` (the record holds another job, or another
    key claimed this one: logged as an error, nothing written); ``outside-window`` (the
    job was created outside the record's creation interval: a job of an earlier,
    abandoned attempt, not this record's).

    Raises:
        ValueError: `key` or the job id is malformed.
        StorageError: the ledger could not be read or written (the caller answers so
            that the sender retries).
    """
    check_key(key)
    check_job_id(job.job_id)
    record = ledger.get(key)
    if record is None:
        logger.warning("callback for job %s: key %s has no record in %r; nothing recorded",
                       job.job_id, key, ledger)  # fmt: skip
        return "no-record"
    if record.job_id == job.job_id:
        return "already"
    if record.job_id is not None:
        logger.error(
            "callback for job %s echoes key %s, but the ledger records job %s for that key; "
            "keeping the recorded job", job.job_id, key, record.job_id,
        )  # fmt: skip
        return "conflict"
    if job.meta.created_at is not None and not _made_within(job, _interval(record)):
        logger.warning("callback for job %s (idempotency key %s): created outside the "
                       "record's interval; not recorded", job.job_id, key)  # fmt: skip
        return "outside-window"
    if not ledger.claim_job(job.job_id, key):
        logger.error("callback for job %s echoes key %s, but key %s claimed the job; not recorded",
                     job.job_id, key, ledger.job_holder(job.job_id))  # fmt: skip
        return "conflict"
    ledger.put(
        record.model_copy(update={"state": "submitted", "job_id": job.job_id, "updated_at": _now()})
    )
    logger.info("callback: recorded job %s for key %s", job.job_id, key)
    return "recorded"


def _remember(ledger: JobLedger, record: LedgerRecord, jobs: list[Job]) -> None:
    """Keep the candidates in the record, so that a later reconciliation still finds
    them after they leave the active tasks. Best effort: the record is unresolved
    either way."""
    updated = _with_sightings(record, [job.job_id for job in jobs])
    if updated.sightings == record.sightings:
        return
    try:
        ledger.put(updated.model_copy(update={"updated_at": _now()}))
    except Exception:
        logger.warning("could not remember the candidates of key %s in %r", record.key, ledger)


def _with_sightings(record: LedgerRecord, ids: Iterable[str]) -> LedgerRecord:
    """The record with `ids` added to its sightings, in first-seen order."""
    return record.model_copy(update={"sightings": list(dict.fromkeys([*record.sightings, *ids]))})


def _active_tasks(client: LegnextClient, record: LedgerRecord) -> list[ActiveTask] | None:
    """The active tasks of the record's type; None when Legnext did not answer (the
    endpoint is loosely specified: used when it answers, never depended on)."""
    try:
        tasks = client.active_tasks().tasks
    except LegnextError as exc:
        logger.warning("reconciling key %s: the account's active tasks did not answer (%s)",
                       record.key, type(exc).__name__)  # fmt: skip
        return None
    return [task for task in tasks if task.task_type == record.task_type]


def _candidates(
    client: LegnextClient,
    ledger: JobLedger,
    record: LedgerRecord,
    job_ids: list[str],
    others: list[LedgerRecord],
) -> list[Job]:
    """The jobs among `job_ids` that may be the record's. One it claimed already (a
    crash between claim and record) is the answer alone."""
    recorded = {r.job_id for r in others if r.job_id}
    jobs = []
    for job_id in job_ids:
        if job_id in recorded:
            continue
        job = client.get_job(job_id)
        if job.task_type and job.task_type != record.task_type:
            continue  # (the active tasks were filtered by type: this guards a sighting)
        if not _made_within(job, _interval(record)):
            continue
        if record.callback and not _echoes(job, record.key):
            continue
        holder = _holder(ledger, job)
        if holder == record.key:
            return [job]
        if holder is None:
            jobs.append(job)
    return jobs


def _live(other: LedgerRecord) -> bool:
    """A submit whose POST is still awaiting its answer: written moments ago, before the
    create's read timeout (a dead submitter's record stops counting after that)."""
    age = (_now() - other.updated_at).total_seconds()
    return other.state == "submitting" and age < IN_PROGRESS_GRACE_SECONDS


def _holder(ledger: JobLedger, job: Job) -> str | None:
    return ledger.job_holder(job.job_id)


def _skew(record: LedgerRecord) -> tuple[timedelta, timedelta]:
    """Legnext's clock minus the writer's: as measured, else +-`CLOCK_SKEW`."""
    if record.clock is None:
        return -CLOCK_SKEW, CLOCK_SKEW
    low, high = record.clock
    return timedelta(seconds=low), timedelta(seconds=high)


def _interval(record: LedgerRecord) -> tuple[datetime, datetime]:
    """When (on Legnext's clock) the record's create could have made its job. Our
    decision: from its write-ahead record to its failure plus how late Legnext may
    still have been working on it (`ANSWERED_5XX_SETTLE`, or `LATE_AFTER_TIMEOUT`
    after a timeout), or to `SEND_WINDOW` after the record when the create never
    reported back; shifted by the measured clock offset (widened by `CLOCK_MARGIN`)."""
    low, high = _skew(record)
    if record.failed_at is None:
        last = record.submitted_at + SEND_WINDOW
    else:
        late = LATE_AFTER_TIMEOUT if record.timed_out else ANSWERED_5XX_SETTLE
        last = record.failed_at + late
    margin = CLOCK_MARGIN if record.clock is not None else timedelta(0)
    return record.submitted_at + low - margin, last + high + margin


def _in_flight(record: LedgerRecord) -> tuple[datetime, datetime]:
    """The part of `_interval` while the failed POST was in flight (sent to failed):
    where its job is when Legnext made it while answering us."""
    low, high = _skew(record)
    if record.failed_at is None:
        return record.submitted_at + low, record.submitted_at + SEND_WINDOW + high
    return (record.sent_at or record.submitted_at) + low, record.failed_at + high


def _early_sightings(client: LegnextClient, record: LedgerRecord) -> list[str]:
    """The account's active jobs of the record's type created in its interval (claimed
    or not: reconciliation sorts them out later); none when the list does not answer."""
    tasks = _active_tasks(client, record) or []
    interval = _interval(record)
    return [task.job_id for task in tasks if _placed(task.created_at, interval)]


def _made_within(job: Job, interval: tuple[datetime, datetime]) -> bool:
    return _placed(job.meta.created_at, interval)


def _placed(created: datetime | None, interval: tuple[datetime, datetime]) -> bool:
    """Whether a job created at `created` can fall in `interval`. A ``created_at``
    without a fraction of a second (as in Legnext's samples) means any time within
    that second."""
    if created is None:
        return False  # it cannot be placed: never a candidate
    last = created + timedelta(seconds=1) if created.microsecond == 0 else created
    return interval[0] <= last and created <= interval[1]


def _lookback(record: LedgerRecord) -> datetime:
    """The oldest write (our clocks) of a record whose job could fall in our interval:
    its create may have failed up to `SEND_WINDOW` after its record, and made a job up
    to `LATE_AFTER_TIMEOUT` after that; either writer's clock may be off."""
    return record.submitted_at - SEND_WINDOW - LATE_AFTER_TIMEOUT - 2 * CLOCK_SKEW


def _settled_at(record: LedgerRecord, window_scale: float) -> datetime | None:
    """When a job made by a create answered with a 5xx would show among the active
    tasks (ANSWERED_5XX_SETTLE after that answer); None when no 5xx answered it."""
    if record.answered_at is None:
        return None
    return record.answered_at + ANSWERED_5XX_SETTLE * window_scale


def _wait_until_settled(record: LedgerRecord, window_scale: float) -> None:
    """Sleep until `_settled_at` (at most ANSWERED_5XX_SETTLE), when it is still ahead."""
    settled = _settled_at(record, window_scale)
    if settled is not None:
        # Capped: `answered_at` may come from another machine's clock.
        longest = ANSWERED_5XX_SETTLE.total_seconds() * window_scale
        time.sleep(min(longest, max(0.0, (settled - _now()).total_seconds())))


def _expires_at(record: LedgerRecord, window_scale: float = 1.0) -> datetime:
    """The end of the record's window: its interval, then the longest typical duration of
    its job type (API.md), by which a job it made has left the active tasks. Our
    decision: Legnext states typical durations, not limits."""
    longest = timedelta(seconds=endpoint_named(record.endpoint).typical_seconds[1])
    end = _interval(record)[1]
    return record.submitted_at + (end - record.submitted_at + longest) * window_scale


def _rivals(
    record: LedgerRecord,
    jobs: list[Job],
    others: list[LedgerRecord],
    now: datetime,
    window_scale: float,
) -> list[LedgerRecord]:
    """Other unresolved submits of the type that could have made one of `jobs`: the
    job was created in their interval, and their window has not passed (our decision:
    past it, their job has finished, or is a risk we accept)."""
    rivals = []
    for other in others:
        if other.job_id is not None or other.state == "abandoned":
            continue
        if other.task_type != record.task_type or now >= _expires_at(other, window_scale):
            continue
        if any(_made_within(job, _interval(other)) for job in jobs):
            rivals.append(other)
    return rivals


def _described(rivals: list[LedgerRecord]) -> str:
    """The rivals for the log: their keys and what their interval rests on."""
    if not rivals:
        return ""
    return (
        " ("
        + "; ".join(
            f"{r.key[:12]}: {'failed' if r.failed_at else 'never reported back'}, clock "
            f"{'measured' if r.clock is not None else 'not measured'}"
            for r in rivals
        )
        + ")"
    )


def _not_created(record: LedgerRecord, seen: Sighting, window_scale: float) -> str | None:
    """The evidence that the record's create made no job, or None while there is none.
    Every rule here is our decision (see the module docstring)."""
    if record.create_status is not None and record.create_status < 500:
        return None  # an answered success we could not read: a job was made
    if seen.candidates:
        return None  # a job that may be its own is (or was seen) active
    start, end = _interval(record)
    looked = (
        "the account's active tasks did not answer"
        if seen.candidates is None
        else f"no unclaimed {record.task_type} job created between {start:%H:%M:%S} and "
        f"{end:%H:%M:%S} UTC among the account's active tasks"
    )
    at = f"{seen.looked_at:%Y-%m-%d %H:%M:%S} UTC"
    settled = _settled_at(record, window_scale)
    answered = record.answered_at
    if (
        settled is not None
        and answered is not None
        and seen.candidates == 0
        and seen.looked_at >= settled
    ):
        after = (seen.looked_at - answered).total_seconds()
        return f"{_answer(record)}; {looked} at {at}, {after:.0f} s after that answer"
    expires = _expires_at(record, window_scale)
    if seen.looked_at < expires:
        return None  # its job may still turn up
    return f"{_answer(record)}; {looked} at {at}, after the window ending {expires:%H:%M:%S} UTC"


def _answer(record: LedgerRecord) -> str:
    if record.state == "submitting":
        return "its create never returned (the submit stopped during it)"
    if record.create_status is not None:
        return f"Legnext answered its create with HTTP {record.create_status}"
    return "its create got no answer"


def _echoes(job: Job, key: str) -> bool:
    hook = job.config.webhook_config if job.config else None
    return hook is not None and f"{CALLBACK_TAG}={key}" in (hook.endpoint or "")


def _record_job(ledger: JobLedger, record: LedgerRecord, job_id: str) -> bool:
    """Record the job id; False when the write failed. The job exists and is paid for
    whatever happens here: a failure to record is logged loudly and the job is still
    handed back."""
    try:
        ledger.put(
            record.model_copy(update={"state": "submitted", "job_id": job_id, "updated_at": _now()})
        )
    except Exception:
        logger.exception(
            "could not record job %s for key %s in %r; a later retry may not find it",
            job_id, record.key, ledger,
        )  # fmt: skip
        return False
    return True


def _unknown(record: LedgerRecord, reason: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        endpoint=record.endpoint,
        task_type=record.task_type,
        body={"idempotency_key": record.key},
        submitted_at=record.submitted_at,
        reason=reason,
        status_code=record.create_status,
    )
