"""Never pay twice: an idempotency ledger for paid creates.

Legnext has no idempotency key, so we keep our own: for each submit, a record
``key -> job id`` in a small ledger (objects in the S3 bucket, or files in a
local directory). The protocol, in `submit_once`:

1. A record with a job id exists: reuse that job, no POST.
2. A record without a job id exists (a previous attempt died or lost the answer
   after sending): reconcile with the account's active tasks before anything else;
   adopt the job when exactly one candidate fits, else stop with
   `OutcomeUnknownError` (or resubmit, when the caller accepts that risk).
3. No record: write ``submitting`` first (write-ahead), POST, then record the job
   id. A POST refused before acceptance (4xx, 429, connection never made) deletes
   the record: nothing was created, a retry may POST again.

Why a ledger and not Prefect's result cache: a cached result exists only once the
task has *finished*; a worker that dies between the POST and the end of the task
leaves no result, and the retry would pay again. The write-ahead record survives it.
The S3 ledger lives beside the outputs, is shared by every worker and needs no
Prefect server; the local ledger suits one machine.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from botocore.exceptions import ClientError
from pydantic import BaseModel

from prefect_legnext.core.endpoints import CreateEndpoint, endpoint_for
from prefect_legnext.core.errors import LegnextError, OutcomeUnknownError
from prefect_legnext.core.models import LegnextRequest

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

    from prefect_legnext.core.client import LegnextClient
    from prefect_legnext.core.responses import Job

logger = logging.getLogger("prefect_legnext.orchestration.ledger")

CLOCK_SKEW = timedelta(minutes=2)
# A create answers within the client's 30 s read timeout: a "submitting" record older
# than this belongs to a submit that died, and is reconciled rather than waited for.
IN_PROGRESS_GRACE_SECONDS = 60.0
IN_PROGRESS_POLL_SECONDS = 0.5
KEY_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CALLBACK_TAG = "legnext_idempotency_key"
OnUnknown = Literal["raise", "resubmit"]


class LedgerRecord(BaseModel):
    key: str
    endpoint: str
    task_type: str
    body_sha256: str
    state: Literal["submitting", "submitted", "unknown"]
    job_id: str | None = None
    submitted_at: datetime
    updated_at: datetime
    callback: str | None = None
    # Random per written record: when S3's answer to our conditional create is lost and
    # botocore's retry gets 412, the record found is ours if it carries our token.
    # None in records written before tokens existed (they read as another writer's).
    writer: str | None = None


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


class LocalLedger:
    """Records as JSON files in a directory: for one machine (tests, a laptop)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalLedger({str(self.directory)!r})"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> LedgerRecord | None:
        try:
            return LedgerRecord.model_validate_json(self._path(key).read_bytes())
        except FileNotFoundError:
            return None

    def _staged(self, record: LedgerRecord) -> str:
        # Written aside first, then linked or renamed: a reader never sees half a record.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(record.model_dump_json().encode())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def create(self, record: LedgerRecord) -> bool:
        tmp = self._staged(record)
        try:
            os.link(tmp, self._path(record.key))  # atomic, and fails if the key exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def put(self, record: LedgerRecord) -> None:
        os.replace(self._staged(record), self._path(record.key))

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


class S3Ledger:
    """Records as small JSON objects under ``{bucket_folder}/{prefix}/`` of an S3 bucket:
    shared by every worker, durable, beside the outputs they protect. New records are
    written with ``If-None-Match: *`` so that two workers cannot both claim a key."""

    def __init__(self, bucket: S3Bucket, prefix: str = "legnext/_ledger") -> None:
        self.bucket = bucket
        self.prefix = bucket._resolve_path(prefix.strip("/"))
        self._s3 = bucket.credentials.get_s3_client()

    def __repr__(self) -> str:
        return f"S3Ledger(s3://{self.bucket.bucket_name}/{self.prefix})"

    def __getstate__(self) -> dict[str, Any]:  # sent to process and Dask task runners
        return {k: v for k, v in self.__dict__.items() if k != "_s3"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._s3 = self.bucket.credentials.get_s3_client()

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
        try:
            answer = self._call("get_object", Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        # The body streams after the call returned: a reset here is just as transient.
        return LedgerRecord.model_validate_json(self._guarded(answer["Body"].read))

    def _write(self, record: LedgerRecord, **conditions: str) -> None:
        self._call(
            "put_object",
            Key=self._key(record.key),
            Body=record.model_dump_json().encode(),
            ContentType="application/json",
            **conditions,
        )

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
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket.bucket_name, Prefix=f"{self.prefix}/"
        )
        return [item for page in pages for item in page.get("Contents", [])]


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


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise ValueError(
            f"idempotency_key {key!r} must be 1-128 characters of letters, digits, '.', '_', '-'"
        )
    return key


def tag_callback(request: LegnextRequest, key: str) -> LegnextRequest:
    """Add the key to the callback URL, which Legnext echoes in the task object, so that
    reconciliation can recognise our job exactly."""
    if request.callback is None:
        return request
    parts = urlsplit(request.callback)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != CALLBACK_TAG]
    query.append((CALLBACK_TAG, key))
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
) -> tuple[Job, bool]:
    """Submit `request` at most once per `key`. Returns the job and whether it was
    reused (True) rather than created by this call.

    Args:
        fingerprint: what makes two submits the same, for the conflict check;
            default the request body (image URLs without their query).
        in_progress_grace: how long a ``submitting`` record is taken for a live
            submit elsewhere (waited for) before it is taken for a dead one
            (reconciled).

    Raises:
        OutcomeUnknownError: a previous or this attempt may have created a job that
            reconciliation could not identify; nothing new was submitted.
        ValueError: `key` was used before for a different request.
    """
    endpoint = endpoint_for(request)
    digest = fingerprint or body_sha256(endpoint, request)
    request = tag_callback(request, key)
    while True:
        record = ledger.get(key)
        if record is None:
            fresh = _record(key, endpoint.name, endpoint.task_type, digest, request.callback)
            if ledger.create(fresh):
                return _post(client, ledger, request, fresh)
            continue  # another submit claimed the key first: read its record
        if record.body_sha256 != digest:
            raise ValueError(
                f"idempotency key {key} was used for a different {record.endpoint} request"
            )
        if record.job_id is not None:
            job = client.get_job(record.job_id)
            if not job.is_failed:
                logger.info("reusing job %s for key %s: no new submit", record.job_id, key)
                return job, True
            # A failed job released its points: submitting again cannot pay twice.
            logger.warning("job %s for key %s failed; submitting again", job.job_id, key)
            retry = _record(key, endpoint.name, endpoint.task_type, digest, request.callback)
            ledger.put(retry)
            return _post(client, ledger, request, retry)
        age = (_now() - record.updated_at).total_seconds()
        if record.state == "submitting" and age < in_progress_grace:
            # Probably a live submit elsewhere (same key): wait for its job id.
            time.sleep(min(IN_PROGRESS_POLL_SECONDS, in_progress_grace - age))
            continue
        adopted = reconcile(client, ledger, record)
        if adopted is not None:
            return adopted, True
        if on_unknown == "raise":
            raise _unknown(record, "an earlier attempt's outcome could not be reconciled")
        logger.warning("resubmitting %s for key %s at the caller's request", endpoint.name, key)
        retry = _record(key, endpoint.name, endpoint.task_type, digest, request.callback)
        ledger.put(retry)
        return _post(client, ledger, request, retry)


def _record(
    key: str, endpoint: str, task_type: str, digest: str, callback: str | None
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
    )


def _post(
    client: LegnextClient, ledger: JobLedger, request: LegnextRequest, record: LedgerRecord
) -> tuple[Job, bool]:
    """The paid POST, after its write-ahead record, and what its outcome means for it."""
    try:
        job = client.create(request)
    except OutcomeUnknownError:
        record = record.model_copy(update={"state": "unknown", "updated_at": _now()})
        ledger.put(record)
        adopted = reconcile(client, ledger, record)
        if adopted is None:
            raise
        return adopted, True
    except LegnextError:
        ledger.delete(record.key)  # refused before acceptance: nothing exists, nothing is owed
        raise
    _record_job(ledger, record, job.job_id)
    return job, False


def reconcile(client: LegnextClient, ledger: JobLedger, record: LedgerRecord) -> Job | None:
    """Find the job an unanswered submit created, among the account's active tasks:
    same task type, created since the submit (minus clock skew), not claimed by
    another ledger record, and, when we sent a callback, echoing our key in it. While
    another submit of the same type is unresolved, its job and ours cannot be told
    apart: nothing is adopted."""
    since = record.submitted_at - CLOCK_SKEW
    others = [r for r in ledger.records_since(since) if r.key != record.key]
    if any(r.job_id is None and r.task_type == record.task_type for r in others):
        logger.warning(
            "reconciling key %s: another %s submit is unresolved; not adopting any job",
            record.key, record.task_type,
        )  # fmt: skip
        return None
    claimed = {r.job_id for r in others if r.job_id}
    candidates = [
        task.job_id
        for task in client.active_tasks().tasks
        if task.task_type == record.task_type and task.job_id not in claimed
    ]
    jobs = [client.get_job(job_id) for job_id in candidates]
    # A job without a creation time cannot be placed in the window: never adopt it.
    jobs = [j for j in jobs if j.meta.created_at is not None and j.meta.created_at >= since]
    if record.callback:
        jobs = [job for job in jobs if _echoes(job, record.key)]
    if len(jobs) != 1:
        logger.warning(
            "reconciling key %s: %d candidate jobs of type %s; not adopting any",
            record.key, len(jobs), record.task_type,
        )  # fmt: skip
        return None
    job = jobs[0]
    logger.warning("reconciled key %s with job %s created by a lost submit", record.key, job.job_id)
    _record_job(ledger, record, job.job_id)
    return job


def _echoes(job: Job, key: str) -> bool:
    hook = job.config.webhook_config if job.config else None
    return hook is not None and f"{CALLBACK_TAG}={key}" in (hook.endpoint or "")


def _record_job(ledger: JobLedger, record: LedgerRecord, job_id: str) -> None:
    """Record the job id. The job exists and is paid for whatever happens here: a
    failure to record is logged loudly and the job is still handed back."""
    try:
        ledger.put(
            record.model_copy(update={"state": "submitted", "job_id": job_id, "updated_at": _now()})
        )
    except Exception:
        logger.exception(
            "could not record job %s for key %s in %r; a later retry may not find it",
            job_id, record.key, ledger,
        )  # fmt: skip


def _unknown(record: LedgerRecord, reason: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        endpoint=record.endpoint,
        task_type=record.task_type,
        body={"idempotency_key": record.key},
        submitted_at=record.submitted_at,
        reason=reason,
    )
