"""Persistence to S3 over HTTP (moto's standalone server through real boto3), with the
simulator serving the outputs: bytes, hashes, keys, sidecar, idempotency, errors."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import urllib3.exceptions
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from prefect_aws import S3Bucket

from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.errors import (
    BucketNotFoundError,
    OutputExpiredError,
    StorageAccessError,
    StorageError,
    StorageUnavailableError,
)
from prefect_legnext.orchestration.storage import (
    PART_BYTES,
    persist_job,
    presigned_url,
    s3_client,
    storage_error,
)
from prefect_legnext.orchestration.task_options import STORAGE_TRANSIENT_ERRORS
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from prefect_legnext.testing import legnext_client_for
from s3_faults import FaultPlan, S3FaultProxy, bucket_through

VIDEO_BYTES = 48 * 1024 * 1024


def completed(sim: LegnextSimulator, name: str = "diffusion", **fields: object) -> Job:
    fields = fields or {"text": "a harbour at noon"}
    with legnext_client_for(sim) as client:
        return client.wait_for_job(getattr(client, name)(**fields))


def stored_bytes(bucket: S3Bucket, key: str) -> bytes:
    s3 = bucket.credentials.get_s3_client()
    body: bytes = s3.get_object(Bucket=bucket.bucket_name, Key=key)["Body"].read()
    return body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_outputs_stored_with_hashes_keys_and_sidecar(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.create_bucket(folder="team-a")
    job = completed(legnext_simulator)
    result = persist_job(job, bucket, "renders", metadata={"prompt": "a harbour at noon"})

    folder = f"team-a/renders/{job.job_id}"
    assert [f.key for f in result.files] == [f"{folder}/{n}.png" for n in range(4)]
    assert result.grid is not None and result.grid.key == f"{folder}/grid.png"
    assert result.sidecar_uri == f"s3://{bucket.bucket_name}/{folder}/job.json"
    for item, url in zip(result.files, job.output_urls, strict=True):
        original = httpx.get(url).content
        assert item.sha256 == sha(original) == sha(stored_bytes(bucket, item.key))
        assert item.size == len(original)
        assert item.content_type == "image/png" and item.source_url == url
        assert item.uri == f"s3://{bucket.bucket_name}/{item.key}"
        head = bucket.credentials.get_s3_client().head_object(
            Bucket=bucket.bucket_name, Key=item.key
        )
        assert head["Metadata"]["sha256"] == item.sha256 and head["ContentType"] == "image/png"
    assert sha(stored_bytes(bucket, result.grid.key)) == sha(
        httpx.get(job.output.image_url).content
    )

    sidecar = json.loads(stored_bytes(bucket, f"{folder}/job.json"))
    assert sidecar["job_id"] == job.job_id and sidecar["task_type"] == "diffusion"
    assert sidecar["prompt"] == "a harbour at noon"
    assert sidecar["seed"] == job.output.seed and sidecar["points"] == 80
    assert sidecar["original_urls"] == job.output_urls
    assert [f["sha256"] for f in sidecar["files"]] == [f.sha256 for f in result.files]
    assert sidecar["ended_at"] is not None


def test_persisting_again_uploads_nothing(
    legnext_simulator: LegnextSimulator, legnext_s3_bucket: S3Bucket
) -> None:
    bucket = legnext_s3_bucket
    job = completed(legnext_simulator)
    first = persist_job(job, bucket)
    s3 = bucket.credentials.get_s3_client()

    def modified() -> list[object]:
        return [
            s3.head_object(Bucket=bucket.bucket_name, Key=f.key)["LastModified"]
            for f in first.files
        ]

    before = modified()
    gets_before = legnext_simulator.stats()["requests"]["GET file"]
    time.sleep(1.1)  # S3 timestamps have one-second resolution
    again = persist_job(job, bucket)
    assert all(f.reused for f in again.files)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]
    assert legnext_simulator.stats()["requests"]["GET file"] == gets_before  # no download
    # Without the sidecar, files are downloaded again but not re-uploaded.
    s3.delete_object(Bucket=bucket.bucket_name, Key=first.sidecar_uri.split("/", 3)[3])
    third = persist_job(job, bucket)
    assert all(f.reused for f in third.files)
    assert modified() == before


def test_expired_output_url_names_the_url(
    legnext_simulator_factory: Callable[..., LegnextSimulator], legnext_s3_bucket: S3Bucket
) -> None:
    sim = legnext_simulator_factory(output_ttl=0.2)
    job = completed(sim)
    time.sleep(0.3)
    with pytest.raises(OutputExpiredError, match=re.escape(job.output_urls[0])):
        persist_job(job, legnext_s3_bucket)


def test_missing_bucket_names_the_bucket(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.bucket_block("no-such-bucket-here")
    with pytest.raises(BucketNotFoundError, match="'no-such-bucket-here' does not exist"):
        persist_job(completed(legnext_simulator), bucket)


def test_unfinished_job_is_refused(
    legnext_simulator: LegnextSimulator, legnext_s3_bucket: S3Bucket
) -> None:
    with legnext_client_for(legnext_simulator) as client:
        job = client.diffusion(text="not yet")
    with pytest.raises(StorageError, match="not completed"):
        persist_job(job, legnext_s3_bucket)


def test_presigned_url_serves_our_copy(
    legnext_simulator: LegnextSimulator, legnext_s3_bucket: S3Bucket
) -> None:
    job = completed(legnext_simulator)
    result = persist_job(job, legnext_s3_bucket)
    url = presigned_url(legnext_s3_bucket, result.files[2].key, expires_seconds=60)
    assert sha(httpx.get(url).content) == result.files[2].sha256


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_process(**env: str) -> Iterator[LocalS3Server]:
    """moto's server as its own process (its memory is not ours; its settings are its own)."""
    port = _free_port()
    server = LocalS3Server(port=port)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        server.endpoint_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            # Only a refused connection is tried again: a probe that reached the server
            # counts as one of its INITIAL_NO_AUTH_ACTION_COUNT actions (a loaded machine
            # once timed a probe out, probed again and locked the bucket's creation out).
            try:
                httpx.get(server.endpoint_url, timeout=60)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def s3_in_own_process() -> Iterator[S3Bucket]:
    """A bucket on a moto server whose received bytes tracemalloc does not count here."""
    with moto_process() as server:
        yield server.create_bucket()


def test_rejected_credentials_name_the_bucket(legnext_simulator: LegnextSimulator) -> None:
    # After two actions (the readiness probe, creating the bucket) this server checks keys.
    with moto_process(INITIAL_NO_AUTH_ACTION_COUNT="2") as server:
        bucket = server.create_bucket("locked-bucket")
        with pytest.raises(StorageAccessError, match=r"'locked-bucket'.*check the credentials"):
            persist_job(completed(legnext_simulator), bucket)


class FlakyProxy:
    """A TCP proxy on loopback that cuts its first `drops` connections at once."""

    def __init__(self, target: tuple[str, int], drops: int) -> None:
        self.target, self.drops, self.dropped = target, drops, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dropped < self.drops:
                self.dropped += 1
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.running = False
        self.listener.close()


def test_transient_s3_connection_errors_are_retried(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.create_bucket()
    host, port = local_s3_server.endpoint_url.removeprefix("http://").split(":")
    proxy = FlakyProxy((host, int(port)), drops=2)
    try:
        flaky = LocalS3Server()
        flaky.endpoint_url = f"http://127.0.0.1:{proxy.port}"
        result = persist_job(completed(legnext_simulator), flaky.bucket_block(bucket.bucket_name))
    finally:
        proxy.close()
    assert proxy.dropped == 2  # two connections cut, then botocore's retries got through
    assert [sha(stored_bytes(bucket, f.key)) for f in result.files] == [
        f.sha256 for f in result.files
    ]


def test_a_persist_rides_out_a_twenty_second_s3_outage_by_itself(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    # S3 refuses every connection for 20 s from the persist's first request (the
    # "s3-outage" chaos scenario, without Prefect's task retries): boto3's own patient
    # retries (storage.S3_RETRIES) get through. Legacy mode gave up within 15 s.
    # Nothing can be stored before S3 is back: success means the retries waited.
    from benchmarks.chaos_local import _bucket_via
    from benchmarks.chaos_s3 import S3ChaosProxy

    job = completed(legnext_simulator)
    bucket = local_s3_server.create_bucket()
    with S3ChaosProxy(local_s3_server.endpoint_url, seed=1) as proxy:
        proxy.stop()
        restart = threading.Timer(20.0, proxy.start)
        restart.start()
        try:
            result = persist_job(job, _bucket_via(proxy, bucket.bucket_name))
        finally:
            restart.join()
    assert proxy.counts["requests"] > 0
    assert [sha(stored_bytes(bucket, f.key)) for f in result.files] == [
        f.sha256 for f in result.files
    ]


@pytest.fixture
def big_video_simulator() -> Iterator[tuple[str, str]]:
    """A simulator in its own process, so that its 48 MiB videos are not counted by
    tracemalloc in this one."""
    cli = str(Path(sys.executable).with_name("prefect-legnext"))
    env = {**os.environ, "LEGNEXT_SIMULATOR_API_KEY": "video-key"}
    process = subprocess.Popen(
        [cli, "simulator", "--port", "0", "--time-scale", "0.001",
         "--video-bytes", str(VIDEO_BYTES)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
        assert match
        yield match.group(0), "video-key"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def test_large_video_streams_multipart_in_bounded_memory(
    big_video_simulator: tuple[str, str], s3_in_own_process: S3Bucket
) -> None:
    bucket = s3_in_own_process
    from prefect_legnext import LegnextClient, PollPolicy

    base_url, key = big_video_simulator
    with LegnextClient(key, base_url=base_url, poll=PollPolicy(scale=0.001)) as client:
        image = client.wait_for_job(client.diffusion(text="to animate"))
        video = client.wait_for_job(
            client.video_upscale(
                job_id=client.wait_for_job(
                    client.video_diffusion(job_id=image.job_id, image_no=0)
                ).job_id,
                video_no=0,
            )
        )
    s3_client(bucket)  # built once per process (its service model is ~10 MB): not counted
    tracemalloc.start()
    try:
        result = persist_job(video, bucket)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (item,) = result.files
    assert item.size == VIDEO_BYTES and item.key.endswith("/0.mp4")
    assert item.content_type == "video/mp4"
    # Memory is bounded by a few 8 MiB parts in flight, not by the 48 MiB file.
    assert peak < 4 * PART_BYTES < item.size, f"peak {peak} bytes while storing {item.size}"
    s3 = bucket.credentials.get_s3_client()
    head = s3.head_object(Bucket=bucket.bucket_name, Key=item.key)
    assert head["ETag"].strip('"').endswith("-6")  # 6 parts of 8 MiB: a multipart upload
    assert sha(stored_bytes(bucket, item.key)) == item.sha256
    assert sha(httpx.get(video.output_urls[0]).content) == item.sha256


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


URL = "http://127.0.0.1:40312/bucket/key"  # a port with "403" in it is no access error


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionClosedError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        EndpointConnectionError(endpoint_url=URL),
        ResponseStreamingError(error="Connection broken"),
        IncompleteReadError(actual_bytes=1, expected_bytes=2),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104)),
        ConnectionResetError(104, "Connection reset by peer"),
        http.client.IncompleteRead(b"x", 10),
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("503", 503),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_closed_reset_and_busy_s3_is_transient(exc: Exception, legnext_s3_bucket: S3Bucket) -> None:
    error = storage_error(legnext_s3_bucket, exc)
    assert isinstance(error, StorageUnavailableError) and isinstance(
        error, STORAGE_TRANSIENT_ERRORS
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("NoSuchBucket", 404), BucketNotFoundError),
        (_client_error("AccessDenied", 403), StorageAccessError),
        (_client_error("InvalidAccessKeyId", 403), StorageAccessError),
        (_client_error("403", 403), StorageAccessError),
        (_client_error("InvalidArgument", 400), StorageError),
    ],
)
def test_permanent_s3_errors_stay_permanent(
    exc: Exception, kind: type[StorageError], legnext_s3_bucket: S3Bucket
) -> None:
    error = storage_error(legnext_s3_bucket, exc)
    assert type(error) is kind and not isinstance(error, STORAGE_TRANSIENT_ERRORS)


def test_an_upload_reset_is_retried_and_leaves_no_partial_object(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.create_bucket()
    job = completed(legnext_simulator)
    # The third file's upload is reset mid-request more often than botocore retries.
    plan = FaultPlan("reset", times=2, method="PUT", path="/2.png")
    with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
        flaky = bucket_through(proxy, bucket, total_attempts=2)
        with pytest.raises(StorageUnavailableError):
            persist_job(job, flaky)
        assert plan.broken == 2, plan.seen
        # What the task's retry does: persist again once S3 answers.
        result = persist_job(job, flaky)
    assert [f.reused for f in result.files] == [True, True, False, False]
    originals = [sha(httpx.get(url).content) for url in job.output_urls]
    assert [f.sha256 for f in result.files] == originals
    s3 = bucket.credentials.get_s3_client()
    listed = s3.list_objects_v2(Bucket=bucket.bucket_name)["Contents"]
    stored = {item["Key"]: sha(stored_bytes(bucket, item["Key"])) for item in listed}
    expected = {f.key: f.sha256 for f in [*result.files, result.grid] if f is not None}
    assert {key: digest for key, digest in stored.items() if key in expected} == expected
    assert set(stored) == {*expected, result.sidecar_uri.split("/", 3)[3]}


def test_a_truncated_sidecar_read_is_transient(
    legnext_simulator: LegnextSimulator, local_s3_server: LocalS3Server
) -> None:
    bucket = local_s3_server.create_bucket()
    job = completed(legnext_simulator)
    persist_job(job, bucket)
    plan = FaultPlan("cut", times=1000, method="GET", path="/job.json")
    with (
        S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy,
        pytest.raises(StorageUnavailableError),
    ):
        persist_job(job, bucket_through(proxy, bucket, total_attempts=2))
    assert plan.broken >= 1
