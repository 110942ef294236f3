"""Download limits of persistence and of the simulator's input fetching: http(s) only,
at most 5 redirects, a byte limit, a time limit, Content-Length checked; a refused or
failed download leaves nothing in S3 (moto's server over HTTP, real boto3) and an
endless body is cut off in bounded memory. Expired output URLs are re-read once."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prefect_aws import S3Bucket

from http_sources import HUGE, SourceServer
from prefect_legnext import (
    DownloadError,
    DownloadRefusedError,
    Job,
    JobFailedError,
    OutputExpiredError,
)
from prefect_legnext.core.fetch import FetchLimits, file_name, redact, scheme_refusal
from prefect_legnext.orchestration.storage import persist_job
from prefect_legnext.orchestration.task_options import STORAGE_TRANSIENT_ERRORS
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import legnext_client_for

MiB = 1024 * 1024
SECRET = "X-Amz-Signature=do-not-show-me"


@pytest.fixture
def source() -> Iterator[SourceServer]:
    with SourceServer() as server:
        yield server


@pytest.fixture
def job_with(task_object: Callable[..., dict[str, Any]]) -> Callable[..., Job]:
    """A completed job whose outputs are the given URLs (no grid)."""

    def make(*urls: str, job_id: str = "0c8e4d2a-6b1f-4c3e-9a57-2f1d8b6e4a90") -> Job:
        output = {"image_url": "", "image_urls": list(urls), "seed": "7"}
        return Job.model_validate(task_object(job_id=job_id, status="completed", output=output))

    return make


def assert_nothing_stored(bucket: S3Bucket) -> None:
    s3 = bucket.credentials.get_s3_client()
    assert s3.list_objects_v2(Bucket=bucket.bucket_name).get("KeyCount") == 0
    assert not s3.list_multipart_uploads(Bucket=bucket.bucket_name).get("Uploads")


# -- the rules ----------------------------------------------------------------------------


def test_only_http_and_https_urls_are_fetched() -> None:
    assert scheme_refusal("https://cdn.example/a.png") is None
    assert scheme_refusal("HTTP://cdn.example/a.png") is None
    for url in ("ftp://cdn.example/a.png", "file:///etc/passwd", "gopher://x/", "/a.png"):
        refusal = scheme_refusal(url)
        assert refusal is not None and "only http and https" in refusal and "\n" not in refusal


def test_errors_show_urls_without_query_or_credentials() -> None:
    url = f"https://user:pw@cdn.example:8443/mj/abc_0.png?{SECRET}#frag"
    assert redact(url) == "https://cdn.example:8443/mj/abc_0.png"
    assert file_name(url) == "abc_0.png"


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FetchLimits(max_bytes=0)
    with pytest.raises(ValueError, match="positive"):
        FetchLimits(timeout=0)


def test_refusals_are_not_retried_and_cut_downloads_are() -> None:
    assert not isinstance(DownloadRefusedError("too big"), STORAGE_TRANSIENT_ERRORS)
    assert not isinstance(OutputExpiredError("gone"), STORAGE_TRANSIENT_ERRORS)
    assert isinstance(DownloadError("cut"), STORAGE_TRANSIENT_ERRORS)


# -- persistence ------------------------------------------------------------------------


def test_an_endless_body_is_cut_off_in_bounded_memory(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    limit = 64 * MiB
    job = job_with(source.url("/endless"))
    tracemalloc.start()
    try:
        with pytest.raises(DownloadRefusedError, match=f"more than the limit of {limit} bytes"):
            persist_job(job, legnext_s3_bucket, max_file_bytes=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 64 MiB went through; the heap held a few reads and the 2 MiB spool at most.
    assert peak < 20 * MiB < limit, f"peak {peak} bytes while cutting off {limit}"
    assert source.requests["/endless"] == 1  # a refusal is not tried again
    assert_nothing_stored(legnext_s3_bucket)


def test_a_huge_content_length_is_refused_before_the_body(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url("/huge"))
    with pytest.raises(DownloadRefusedError, match=f"announces {HUGE} bytes"):
        persist_job(job, legnext_s3_bucket)  # the default limit: 512 MiB
    assert source.requests["/huge"] == 1
    assert_nothing_stored(legnext_s3_bucket)


def test_a_body_shorter_than_its_content_length_is_a_download_error(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url("/short"))
    with pytest.raises(DownloadError) as caught:
        persist_job(job, legnext_s3_bucket)
    assert not isinstance(caught.value, DownloadRefusedError)
    assert source.requests["/short"] == 3  # tried again within the file, then given up
    assert_nothing_stored(legnext_s3_bucket)


def test_a_slow_body_fails_at_the_file_timeout(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url("/drip"))
    with pytest.raises(DownloadError, match=r"longer than 1s \(file_timeout\)"):
        persist_job(job, legnext_s3_bucket, file_timeout=1.0)
    assert_nothing_stored(legnext_s3_bucket)


def test_five_redirects_are_followed_and_a_sixth_is_refused(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    stored = persist_job(job_with(source.url("/hops/5")), legnext_s3_bucket, "five")
    (item,) = stored.files
    assert item.sha256 == hashlib.sha256(source.png).hexdigest()
    with pytest.raises(DownloadRefusedError, match="more than 5 redirects"):
        persist_job(job_with(source.url("/hops/6")), legnext_s3_bucket, "six")
    assert source.requests["/hops/0"] == 1  # only the first chain reached the file


@pytest.mark.parametrize("scheme", ["ftp", "file"])
def test_a_redirect_to_another_scheme_is_refused_before_any_request(
    scheme: str, source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    with pytest.raises(DownloadRefusedError, match=f"refusing {scheme}: URL.*only http and https"):
        persist_job(job_with(source.url(f"/to/{scheme}")), legnext_s3_bucket)
    assert source.requests[f"/to/{scheme}"] == 1 and source.requests["/ok.png"] == 0
    assert_nothing_stored(legnext_s3_bucket)


def test_an_output_url_of_another_scheme_is_refused_at_once(
    legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    with pytest.raises(DownloadRefusedError, match="only http and https"):
        persist_job(job_with("ftp://cdn.example/a.png"), legnext_s3_bucket)
    assert_nothing_stored(legnext_s3_bucket)


# -- expired output URLs -----------------------------------------------------------------


def test_an_expired_url_names_the_job_and_file_never_the_query(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url("/ok.png"), source.url(f"/gone.png?{SECRET}"))
    with pytest.raises(OutputExpiredError) as caught:
        persist_job(job, legnext_s3_bucket)
    message = str(caught.value)
    assert f"output 1 of job {job.job_id} (gone.png)" in message and "404" in message
    assert "Signature" not in message and "do-not-show-me" not in message
    assert source.requests["/gone.png"] == 1  # 404 is not tried again


def test_an_expired_url_is_replaced_by_the_jobs_fresh_one(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url("/gone.png?old"), source.url("/hops/1?old"))
    fresh = job_with(source.url("/ok.png?new"), source.url("/hops/2?new"))
    reads: list[str] = []

    def refresh(job_id: str) -> Job:
        reads.append(job_id)
        return fresh

    stored = persist_job(job, legnext_s3_bucket, refresh=refresh)
    assert reads == [job.job_id]  # read once, for the first expired file
    assert [f.source_url for f in stored.files] == fresh.output_urls
    assert {f.sha256 for f in stored.files} == {hashlib.sha256(source.png).hexdigest()}


def test_a_refresh_with_the_same_urls_gives_the_clear_error(
    source: SourceServer, legnext_s3_bucket: S3Bucket, job_with: Callable[..., Job]
) -> None:
    job = job_with(source.url(f"/gone.png?{SECRET}"))
    reads: list[str] = []

    def refresh(job_id: str) -> Job:
        reads.append(job_id)
        return job

    with pytest.raises(OutputExpiredError, match=f"of job {job.job_id} \\(gone.png\\)") as caught:
        persist_job(job, legnext_s3_bucket, refresh=refresh)
    assert reads == [job.job_id] and "do-not-show-me" not in str(caught.value)
    assert_nothing_stored(legnext_s3_bucket)


# -- the simulator's input fetching ------------------------------------------------------


def failed_describe(sim: LegnextSimulator, url: str) -> str:
    with legnext_client_for(sim) as client, pytest.raises(JobFailedError) as caught:
        client.wait_for_job(client.describe(img_url=url))
    assert caught.value.code == 10002
    assert caught.value.job is not None
    return caught.value.job.error.raw_message


@pytest.fixture
def sim(legnext_simulator_factory: Callable[..., LegnextSimulator]) -> LegnextSimulator:
    return legnext_simulator_factory(input_timeout=1.0)


def test_the_simulator_cuts_off_an_endless_input(
    sim: LegnextSimulator, source: SourceServer
) -> None:
    assert "larger than 10485760 bytes" in failed_describe(sim, source.url("/endless"))
    assert f"announces {HUGE} bytes" in failed_describe(sim, source.url("/huge"))


def test_the_simulator_gives_up_on_a_slow_input(
    sim: LegnextSimulator, source: SourceServer
) -> None:
    assert "took longer than 1s" in failed_describe(sim, source.url("/drip"))


def test_the_simulator_follows_five_redirects_of_http_only(
    sim: LegnextSimulator, source: SourceServer
) -> None:
    with legnext_client_for(sim) as client:
        assert client.wait_for_job(client.describe(img_url=source.url("/hops/5"))).is_completed
    assert "more than 5 redirects" in failed_describe(sim, source.url("/hops/6"))
    refused = failed_describe(sim, source.url("/to/file"))
    assert "only http and https" in refused and source.requests["/ok.png"] == 0


def test_the_simulator_checks_an_inputs_content_length(
    sim: LegnextSimulator, source: SourceServer
) -> None:
    # httpx notices the early close (RemoteProtocolError) before our own count does.
    message = failed_describe(sim, source.url("/short"))
    assert "RemoteProtocolError" in message or "bytes it announced" in message
