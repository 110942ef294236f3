"""Persist a completed job's outputs to S3 before Legnext's temporary URLs expire.

Each output URL is streamed (httpx) through SHA-256 into a spooled temporary file
(memory up to 2 MiB, then disk) and uploaded with boto3's managed transfer
(multipart above 8 MiB, one part in flight). Spooling rather than piping means an S3 retry never
needs the Legnext URL again, which may have expired by then; memory stays bounded.

Downloads keep to `prefect_legnext.core.fetch`'s limits: http(s) only, at most 5
redirects (each target checked), `max_file_bytes` per file (Content-Length up front,
then counted) and `file_timeout` per file; a body shorter or longer than its
Content-Length is a `DownloadError`. An expired URL (403, 404, 410) is replaced once by
a fresh one when a `refresh` reader is given, else its error names the job and file.

Keys, under the bucket's folder::

    {prefix}/{job_id}/{n}.{ext}   one per output file (n = image or video number)
    {prefix}/{job_id}/grid.png    the 2x2 composite of grid jobs
    {prefix}/{job_id}/job.json    sidecar: job metadata and every file's hash

Objects carry their SHA-256 as metadata ``sha256``; an object already there with
the same hash and size is not uploaded again, and a job whose sidecar lists files
that are all present is not downloaded again. A caller that knows nothing can be
stored yet (a job submitted by this very step) passes ``check_existing=False`` and
skips those reads.

A file up to `PART_BYTES` is one PUT carrying its SHA-256 (``ChecksumSHA256``: S3
refuses a body that does not match) and its MD5 (``Content-MD5``); the store's answer
is then checked against our hashes (the checksum it echoes, else a plain-MD5 ETag), so
no HEAD follows. A store that answers with neither is checked with one HEAD (the
size), as is a multipart upload (larger files, streamed from the temporary file).
A mismatch deletes the object and fails the upload (transient: the task retries).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from http.client import HTTPException
from tempfile import SpooledTemporaryFile
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import urllib3.exceptions
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import SSLError as BotoSSLError
from pydantic import BaseModel, Field

from prefect_legnext.core.errors import (
    LegnextError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from prefect_legnext.core.fetch import (
    DEFAULT_FILE_TIMEOUT,
    DEFAULT_MAX_FILE_BYTES,
    REQUEST_HEADERS,
    Deadline,
    FetchLimits,
    file_name,
    length_mismatch,
    length_refusal,
    redact,
    redirect_target,
    scheme_refusal,
)
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.clients import download_client
from prefect_legnext.orchestration.errors import (
    BucketNotFoundError,
    DownloadError,
    DownloadRefusedError,
    OutputExpiredError,
    StorageAccessError,
    StorageError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

logger = logging.getLogger("prefect_legnext.orchestration.storage")

SPOOL_BYTES = 2 * 1024 * 1024  # files up to this stay in memory, larger ones go to disk
PART_BYTES = 8 * 1024 * 1024  # multipart above this, in parts of this size
CHUNK_BYTES = 1024 * 1024
DOWNLOAD_ATTEMPTS = 3
DEFAULT_PREFIX = "legnext"


class PersistedFile(BaseModel):
    """One stored output: where it is and what it is (never its bytes)."""

    uri: str = Field(description="s3://bucket/key")
    bucket: str
    key: str
    sha256: str
    size: int
    content_type: str
    source_url: str
    index: int | None = Field(default=None, description="image/video number; None for the grid")
    reused: bool = Field(default=False, description="already stored with the same hash")


class PersistedJob(BaseModel):
    """A job's stored outputs and sidecar."""

    job_id: str
    task_type: str
    files: list[PersistedFile]
    grid: PersistedFile | None = None
    sidecar_uri: str

    @property
    def uris(self) -> list[str]:
        return [f.uri for f in self.files]


def job_folder(bucket: S3Bucket, prefix: str, job_id: str) -> str:
    """The key folder of a job's outputs, inside the bucket's own folder."""
    return bucket._resolve_path(f"{prefix.strip('/')}/{job_id}")


def persist_job(
    job: Job,
    bucket: S3Bucket,
    prefix: str = DEFAULT_PREFIX,
    *,
    metadata: dict[str, Any] | None = None,
    include_grid: bool = True,
    http: httpx.Client | None = None,
    refresh: Callable[[str], Job] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    file_timeout: float = DEFAULT_FILE_TIMEOUT,
    check_existing: bool = True,
) -> PersistedJob:
    """Store every output of a completed `job` in `bucket` with a JSON sidecar.

    Args:
        job: a completed job (from `wait_for_job`).
        bucket: prefect-aws `S3Bucket` (AWS, MinIO, R2, ... by endpoint URL).
        prefix: key prefix under the bucket's folder.
        metadata: extra sidecar fields (prompt, parent job and image number, ...).
        include_grid: also store the 2x2 composite of grid jobs.
        http: the client to download with (redirects are followed by hand either way).
        refresh: reads a job by id (e.g. `LegnextClient.get_job`, a free call): when an
            output URL has expired, the job is read once more for fresh URLs.
        max_file_bytes: the largest file stored; a larger one is refused (by its
            Content-Length up front, else cut off while streaming).
        file_timeout: seconds one file may take, redirects and retries included.
        check_existing: look for outputs already stored (the sidecar, then each file)
            and keep them; False when nothing can be there yet (a job this step
            submitted): a retry after a partial upload then uploads again, harmlessly.

    Raises:
        OutputExpiredError: an output URL no longer serves its file and no fresh one
            came (names the job and the file).
        DownloadRefusedError: a URL that is not http(s), too many redirects, a file
            over `max_file_bytes`; not transient.
        BucketNotFoundError, StorageAccessError: naming the bucket.
        StorageUnavailableError, DownloadError: transient; retry.
    """
    if not job.is_completed:
        raise StorageError(f"job {job.job_id} is {job.status}, not completed: nothing to persist")
    limits = FetchLimits(max_bytes=max_file_bytes, timeout=file_timeout)
    s3 = s3_client(bucket)
    folder = job_folder(bucket, prefix, job.job_id)
    sidecar_key = f"{folder}/job.json"
    stored = _stored_sidecar(s3, bucket, sidecar_key) if check_existing else None
    if stored is not None:
        logger.info("outputs of job %s already stored under %s", job.job_id, folder)
        return stored

    sources = _Sources(job, refresh)
    store = partial(
        _persist_source, s3, bucket, http or download_client(), sources, limits, check_existing
    )
    files = [store(f"{folder}/{n}", n) for n in range(len(job.output_urls))]
    grid = None
    output = job.output
    if include_grid and output and output.image_url and output.image_url not in job.output_urls:
        grid = store(f"{folder}/grid", None)
    job = sources.job  # the URLs actually read, fresh ones included

    sidecar_uri = f"s3://{bucket.bucket_name}/{sidecar_key}"
    result = PersistedJob(
        job_id=job.job_id,
        task_type=job.task_type,
        files=files,
        grid=grid,
        sidecar_uri=sidecar_uri,
    )
    sidecar = {
        "job_id": job.job_id,
        "task_type": job.task_type,
        "seed": job.output.seed if job.output else None,
        "points": job.points,
        "created_at": _iso(job.meta.created_at),
        "started_at": _iso(job.meta.started_at),
        "ended_at": _iso(job.meta.ended_at),
        "persisted_at": datetime.now(UTC).isoformat(),
        "original_urls": job.output_urls,
        "prompts": job.output.prompts if job.output else None,  # describe and shorten
        "original_grid_url": job.output.image_url if job.output else None,
        **(metadata or {}),
        "files": [f.model_dump(mode="json") for f in files],
        "grid": grid.model_dump(mode="json") if grid else None,
    }
    _s3_call(
        bucket,
        s3.put_object,
        Bucket=bucket.bucket_name,
        Key=sidecar_key,
        Body=json.dumps(sidecar, indent=2).encode(),
        ContentType="application/json",
    )
    return result


def annotate_sidecar(bucket: S3Bucket, sidecar_uri: str, field: str, value: Any) -> None:
    """Set `field` of a stored job's sidecar to `value` (JSON), e.g. a person's review of
    its outputs. Idempotent: writing the same value again changes nothing."""
    s3 = s3_client(bucket)
    key = sidecar_uri.split("/", 3)[3]
    body = _s3_call(bucket, s3.get_object, Bucket=bucket.bucket_name, Key=key)["Body"].read()
    sidecar = json.loads(body)
    sidecar[field] = value
    _s3_call(
        bucket, s3.put_object, Bucket=bucket.bucket_name, Key=key,
        Body=json.dumps(sidecar, indent=2).encode(), ContentType="application/json",
    )  # fmt: skip


# How patiently boto3 retries an S3 call itself (our decision): standard mode over 10
# attempts, jittered backoff growing to 20 s, rides out an outage of about a minute
# (legacy mode's 5 quick attempts gave up within seconds, and a persist that gives up
# loses a paid result once Legnext's URLs expire). The block's own `retries` wins.
S3_RETRIES: dict[str, Any] = {"mode": "standard", "total_max_attempts": 10}


def s3_client(bucket: S3Bucket) -> Any:
    """The bucket's S3 client, with `S3_RETRIES` unless its block sets retries; one per
    credentials and process (prefect-aws caches clients by credentials)."""
    credentials = bucket.credentials
    parameters = credentials.aws_client_parameters
    config = parameters.config or {}
    if "retries" not in config:
        patient = parameters.model_copy(update={"config": {**config, "retries": S3_RETRIES}})
        credentials = credentials.model_copy(update={"aws_client_parameters": patient})
    return credentials.get_s3_client()


def presigned_url(bucket: S3Bucket, key: str, expires_seconds: int = 3600) -> str:
    """A temporary HTTPS URL of a stored object (e.g. to hand our copy to retexture)."""
    s3 = s3_client(bucket)
    url: str = _s3_call(
        bucket,
        s3.generate_presigned_url,
        "get_object",
        Params={"Bucket": bucket.bucket_name, "Key": key},
        ExpiresIn=expires_seconds,
    )
    return url


def _stored_sidecar(s3: Any, bucket: S3Bucket, key: str) -> PersistedJob | None:
    """The job's record when its sidecar and every file it lists are already stored."""
    try:
        body = s3.get_object(Bucket=bucket.bucket_name, Key=key)["Body"].read()
    except ClientError as exc:
        if _code(exc) in ("NoSuchKey", "404"):
            return None
        raise storage_error(bucket, exc) from exc
    except S3_ERRORS as exc:  # e.g. the connection reset while the body was read
        raise storage_error(bucket, exc) from exc
    sidecar = json.loads(body)
    files = [PersistedFile.model_validate({**f, "reused": True}) for f in sidecar["files"]]
    grid = sidecar.get("grid")
    every = files + ([PersistedFile.model_validate(grid)] if grid else [])
    for item in every:
        head = _head(s3, bucket, item.key)
        if head is None or head["ContentLength"] != item.size:
            return None
    return PersistedJob(
        job_id=sidecar["job_id"],
        task_type=sidecar["task_type"],
        files=files,
        grid=PersistedFile.model_validate({**grid, "reused": True}) if grid else None,
        sidecar_uri=f"s3://{bucket.bucket_name}/{key}",
    )


class _Sources:
    """A job's output URLs; when one has expired, the job is read once more (a free
    call) in case Legnext hands out fresh URLs."""

    def __init__(self, job: Job, refresh: Callable[[str], Job] | None) -> None:
        self.job = job
        self._refresh = refresh
        self._refreshed = False

    def url(self, index: int | None) -> str | None:
        """Output `index`'s URL, the grid's for None."""
        if index is None:
            return self.job.output.image_url if self.job.output else None
        urls = self.job.output_urls
        return urls[index] if index < len(urls) else None

    def fresh(self, index: int | None) -> str | None:
        """A new URL for output `index` after reading the job once more, or None when
        there is no reader, it was read already, or its URL did not change."""
        old = self.url(index)
        if self._refresh is None or self._refreshed:
            return None
        self._refreshed = True
        logger.info("an output URL of job %s has expired; reading the job again", self.job.job_id)
        try:
            job = self._refresh(self.job.job_id)
        except (TransportError, ServerError, RateLimitedError) as exc:
            raise DownloadError(
                f"re-reading job {self.job.job_id} for fresh output URLs failed "
                f"({type(exc).__name__}); safe to retry"
            ) from exc
        except LegnextError as exc:  # e.g. the key was revoked: no fresh URL to be had
            logger.warning("re-reading job %s failed: %s", self.job.job_id, type(exc).__name__)
            return None
        if job.is_completed:
            self.job = job
        new = self.url(index)
        return new if new and new != old else None


def _persist_source(
    s3: Any,
    bucket: S3Bucket,
    http: httpx.Client,
    sources: _Sources,
    limits: FetchLimits,
    check_existing: bool,
    stem: str,
    index: int | None,
) -> PersistedFile:
    """Store output `index`; an expired URL is replaced once by a fresh one, else the
    error names the job and the file (never the URL's query: it may be a signature)."""
    what = "the grid" if index is None else f"output {index}"
    url = sources.url(index)
    if url is None:  # the job as read again lists fewer outputs
        raise OutputExpiredError(f"{what} of job {sources.job.job_id} has no URL any more")
    try:
        return _persist_url(s3, bucket, http, url, stem, index, limits, check_existing)
    except OutputExpiredError as exc:
        expired = exc
    fresh = sources.fresh(index)
    if fresh is not None:
        try:
            return _persist_url(s3, bucket, http, fresh, stem, index, limits, check_existing)
        except OutputExpiredError as exc:
            expired, url = exc, fresh
    raise OutputExpiredError(
        f"{what} of job {sources.job.job_id} ({file_name(url)}) is no longer served "
        f"and reading the job gave no fresh URL: {expired}"
    ) from expired


def _persist_url(
    s3: Any,
    bucket: S3Bucket,
    http: httpx.Client,
    url: str,
    stem: str,
    index: int | None,
    limits: FetchLimits,
    check_existing: bool = True,
) -> PersistedFile:
    # Nothing is uploaded before the whole file is here, checked and hashed: a refused,
    # cut or mismatched download never leaves an object (or a multipart upload) behind.
    with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        hashes, size, content_type = _download(http, url, spool, limits)
        digest = hashes.sha256.hexdigest()
        key = f"{stem}{_extension(url, content_type)}"
        head = _head(s3, bucket, key) if check_existing else None
        reused = (
            head is not None
            and head["ContentLength"] == size
            and head.get("Metadata", {}).get("sha256") == digest
        )
        if not reused:
            spool.seek(0)
            _upload(s3, bucket, spool, key, hashes, size, content_type)
    return PersistedFile(
        uri=f"s3://{bucket.bucket_name}/{key}",
        bucket=bucket.bucket_name,
        key=key,
        sha256=digest,
        size=size,
        content_type=content_type,
        source_url=url,
        index=index,
        reused=reused,
    )


class _Hashes:
    """The hashes of one download: SHA-256 (ours, kept) and MD5 (what S3's ETag of a
    single PUT is, so the upload's answer proves what was stored)."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)


def _download(
    http: httpx.Client, url: str, sink: IO[bytes], limits: FetchLimits
) -> tuple[_Hashes, int, str]:
    """Stream `url` into `sink`, hashing as it goes, within `limits` (one deadline for
    every attempt); a failure that may pass is tried again while time is left."""
    deadline = Deadline(limits.timeout)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        sink.seek(0)
        sink.truncate()
        try:
            return _fetch_once(http, url, sink, limits, deadline)
        except DownloadError as exc:
            if attempt == DOWNLOAD_ATTEMPTS or deadline.expired:
                raise
            logger.warning("download of %s failed (%s); retrying", redact(url), exc)
            time.sleep(min(0.5 * attempt, max(deadline.remaining(), 0.0)))
    raise AssertionError("unreachable")


def _fetch_once(
    http: httpx.Client, url: str, sink: IO[bytes], limits: FetchLimits, deadline: Deadline
) -> tuple[_Hashes, int, str]:
    """One attempt: the transport's failures become `DownloadError` (transient)."""
    try:
        with _open(http, url, limits, deadline) as response:
            if response.status_code in (403, 404, 410):
                raise OutputExpiredError(
                    f"output URL {redact(url)} answered HTTP {response.status_code}: it has "
                    "expired or never existed; Legnext's URLs are temporary, persist at completion"
                )
            if response.status_code != 200:
                raise DownloadError(
                    f"output URL {redact(url)} answered HTTP {response.status_code}"
                )
            hashes, size = _read_body(response, sink, url, limits, deadline)
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
    except httpx.InvalidURL as exc:
        raise DownloadRefusedError(f"refusing {redact(url)}: {exc}") from exc
    except httpx.RequestError as exc:  # connect, read, protocol, decoding
        if deadline.expired:
            raise _too_slow(url, limits) from exc
        raise DownloadError(f"downloading {redact(url)} failed: {type(exc).__name__}") from exc
    return hashes, size, content_type or _guess_type(url)


@contextmanager
def _open(
    http: httpx.Client, url: str, limits: FetchLimits, deadline: Deadline
) -> Iterator[httpx.Response]:
    """The streamed answer at the end of at most `limits.max_redirects` redirects,
    followed by hand so that each target is checked to be http(s) before it is asked."""
    for _ in range(limits.max_redirects + 1):
        refusal = scheme_refusal(url)
        if refusal is not None:
            raise DownloadRefusedError(refusal)
        if deadline.expired:
            raise _too_slow(url, limits)
        with http.stream(
            "GET", url, headers=REQUEST_HEADERS, follow_redirects=False,
            timeout=deadline.timeout(http.timeout),
        ) as response:  # fmt: skip
            target = redirect_target(response)
            if target is None:
                yield response
                return
        url = target
    raise DownloadRefusedError(
        f"refusing {redact(url)}: more than {limits.max_redirects} redirects"
    )


def _read_body(
    response: httpx.Response, sink: IO[bytes], url: str, limits: FetchLimits, deadline: Deadline
) -> tuple[_Hashes, int]:
    """Hash and write the body, cutting it off past the byte or time limit."""
    refusal = length_refusal(response, limits.max_bytes)
    if refusal is not None:
        raise DownloadRefusedError(f"refusing {redact(url)}: it {refusal} (max_file_bytes)")
    hasher = _Hashes()
    size = 0
    # Chunks as they arrive (no chunk size), so the limits are checked after every read.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise DownloadRefusedError(
                f"cut off {redact(url)}: more than the limit of {limits.max_bytes} bytes "
                "(max_file_bytes)"
            )
        if deadline.expired:
            raise _too_slow(url, limits)
        hasher.update(chunk)
        sink.write(chunk)
    mismatch = length_mismatch(response)
    if mismatch is not None:
        raise DownloadError(f"output URL {redact(url)} {mismatch}")
    return hasher, size


def _too_slow(url: str, limits: FetchLimits) -> DownloadError:
    return DownloadError(
        f"downloading {redact(url)} took longer than {limits.timeout:g}s (file_timeout)"
    )


def _upload(
    s3: Any,
    bucket: S3Bucket,
    body: IO[bytes],
    key: str,
    hashes: _Hashes,
    size: int,
    content_type: str,
) -> None:
    """Upload `body` under `key` and prove what the store holds (see the module
    docstring): one PUT for a file up to `PART_BYTES`, else multipart and a HEAD."""
    digest = hashes.sha256.hexdigest()
    extra = {"ContentType": content_type, "Metadata": {"sha256": digest}}
    if size <= PART_BYTES:
        answer = _s3_call(
            bucket, s3.put_object, Bucket=bucket.bucket_name, Key=key, Body=body,
            ContentLength=size, ContentMD5=base64.b64encode(hashes.md5.digest()).decode(),
            ChecksumSHA256=base64.b64encode(hashes.sha256.digest()).decode(), **extra,
        )  # fmt: skip
        proof = _proof(answer, hashes)
        if proof is True:
            return
        if proof is False:
            _s3_call(bucket, s3.delete_object, Bucket=bucket.bucket_name, Key=key)
            raise StorageUnavailableError(
                f"s3://{bucket.bucket_name}/{key}: the store holds other bytes than were "
                "sent (damaged on the way); removed, safe to retry"
            )
    else:
        _upload_multipart(s3, bucket, body, key, extra)
    head = _head(s3, bucket, key)
    if head is None or head["ContentLength"] != size:
        raise StorageError(
            f"s3://{bucket.bucket_name}/{key} holds "
            f"{head['ContentLength'] if head else 'no'} bytes after upload, expected {size}"
        )


def _proof(answer: dict[str, Any], hashes: _Hashes) -> bool | None:
    """Whether a single PUT's answer proves the store holds our bytes: True (its SHA-256
    checksum, else its plain-MD5 ETag, matches), False (either differs), None (it says
    neither, e.g. an ETag of an encrypted object: a HEAD decides)."""
    checksum = answer.get("ChecksumSHA256")
    if checksum:
        return bool(checksum == base64.b64encode(hashes.sha256.digest()).decode())
    etag = str(answer.get("ETag", "")).strip('"')
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag == hashes.md5.hexdigest()
    return None


def _upload_multipart(
    s3: Any, bucket: S3Bucket, body: IO[bytes], key: str, extra: dict[str, Any]
) -> None:
    from boto3.s3.transfer import TransferConfig

    # Parts are read and sent by the calling thread, one at a time (our decision): with
    # s3transfer's threads each upload's new threads took fresh malloc arenas, whose freed
    # parts stayed resident, so peak memory grew with the number of files persisted.
    config = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, use_threads=False
    )
    # s3transfer buffers up to this many parts of a file object in memory (default 10,
    # i.e. 80 MiB): keep it to the part in flight so memory does not grow with the file.
    config.max_in_memory_upload_chunks = 1
    _s3_call(
        bucket,
        s3.upload_fileobj,
        body,
        bucket.bucket_name,
        key,
        ExtraArgs=extra,
        Config=config,
    )


def _head(s3: Any, bucket: S3Bucket, key: str) -> dict[str, Any] | None:
    try:
        head: dict[str, Any] = s3.head_object(Bucket=bucket.bucket_name, Key=key)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise storage_error(bucket, exc) from exc
    except S3_ERRORS as exc:
        raise storage_error(bucket, exc) from exc
    return head


def _s3_call(bucket: S3Bucket, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except S3_ERRORS as exc:
        raise storage_error(bucket, exc) from exc


# What an S3 call can raise: service answers (ClientError), botocore's own errors, and
# the transport's (sockets, http.client, urllib3) when they escape botocore, e.g. while
# a response body is read after the call returned.
S3_ERRORS: tuple[type[Exception], ...] = (
    ClientError,
    BotoCoreError,
    S3UploadFailedError,
    OSError,
    HTTPException,
    urllib3.exceptions.HTTPError,
)
_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
     "InvalidToken", "ExpiredToken", "AccountProblem", "403"}
)  # fmt: skip
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "OperationAborted"}
)  # fmt: skip
# A connection refused, closed or reset, a timeout, a body cut short or garbled on the
# way: the request may not have reached S3, or its answer did not come back whole.
_TRANSIENT_TRANSPORT: tuple[type[Exception], ...] = (
    HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    BotoConnectionError,  # EndpointConnectionError, ConnectTimeoutError
    IncompleteReadError,
    ChecksumError,  # a body damaged on the way
    FlexibleChecksumError,
    OSError,
    HTTPException,  # IncompleteRead, RemoteDisconnected
    urllib3.exceptions.HTTPError,  # ProtocolError
)


def storage_error(bucket: S3Bucket, exc: Exception) -> StorageError:
    """The package's error for a failed S3 call: permanent ones (no bucket, no access)
    name what to fix; transient ones are `StorageUnavailableError`, which the tasks
    retry, because a persist that gives up loses a paid result once Legnext's URLs
    expire."""
    name = bucket.bucket_name
    endpoint = bucket.credentials.aws_client_parameters.endpoint_url or "AWS"
    for cause in _causes(exc):  # boto3's S3UploadFailedError carries its ClientError
        if isinstance(cause, ClientError):
            code = _code(cause)
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code == "NoSuchBucket":
                return BucketNotFoundError(f"S3 bucket {name!r} does not exist at {endpoint}")
            if code in _ACCESS_CODES or status == 403:
                return StorageAccessError(
                    f"S3 refused access to bucket {name!r} at {endpoint} ({code}): "
                    "check the credentials block"
                )
            if code in _TRANSIENT_CODES or status in (408, 429) or status >= 500:
                return _unavailable(endpoint, name, exc)
            break
        if isinstance(cause, _TRANSIENT_TRANSPORT) and not _bad_certificate(cause):
            return _unavailable(endpoint, name, exc)
    return StorageError(f"S3 operation on bucket {name!r} failed: {exc}")


def _unavailable(endpoint: str, name: str, exc: Exception) -> StorageUnavailableError:
    return StorageUnavailableError(
        f"S3 at {endpoint} unavailable for bucket {name!r} "
        f"({type(exc).__name__}: {exc}); safe to retry"
    )


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _bad_certificate(exc: BaseException) -> bool:
    # A certificate that does not verify will not verify on the next attempt either.
    return isinstance(exc, BotoSSLError | ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(exc)
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _extension(url: str, content_type: str) -> str:
    suffix = "." + urlsplit(url).path.rsplit(".", 1)[-1] if "." in urlsplit(url).path else ""
    if suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".mp4", ".gif"):
        return suffix.lower()
    return mimetypes.guess_extension(content_type) or ".bin"


def _guess_type(url: str) -> str:
    return mimetypes.guess_type(urlsplit(url).path)[0] or "application/octet-stream"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
