"""Where a flow gets its Legnext credentials and its bucket: a saved block by name,
else the environment. So one command runs against saved blocks in production and
against environment settings (the demo, a quick try) without code changes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, cast

from prefect.blocks.core import Block

from prefect_legnext.blocks import LegnextCredentials
from prefect_legnext.client import DEFAULT_BASE_URL
from prefect_legnext.errors import LegnextError

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

ENV_API_KEY = "LEGNEXT_API_KEY"
ENV_BASE_URL = "LEGNEXT_BASE_URL"
ENV_POLL_SCALE = "LEGNEXT_POLL_SCALE"
ENV_CONCURRENT_JOBS = "LEGNEXT_CONCURRENT_JOBS"
ENV_BUCKET = "LEGNEXT_S3_BUCKET"
ENV_BUCKET_FOLDER = "LEGNEXT_S3_FOLDER"
ENV_S3_ENDPOINT = "LEGNEXT_S3_ENDPOINT_URL"


class ConfigurationError(LegnextError, ValueError):
    """Neither a saved block nor the environment says how to connect."""


def _saved(block_type: type[Block], name: str | None) -> Block | None:
    if not name:
        return None
    try:
        block = cast(Block, block_type.load(name))
    except ValueError:  # Prefect's "Unable to find block document named ..."
        return None
    return block


def load_credentials(block_name: str | None) -> LegnextCredentials:
    """The saved `LegnextCredentials` named `block_name`, else LEGNEXT_API_KEY,
    LEGNEXT_BASE_URL, LEGNEXT_POLL_SCALE and LEGNEXT_CONCURRENT_JOBS."""
    saved = _saved(LegnextCredentials, block_name)
    if isinstance(saved, LegnextCredentials):
        return saved
    api_key = os.environ.get(ENV_API_KEY, "").strip()
    if not api_key:
        raise ConfigurationError(
            f"no Legnext credentials: save a LegnextCredentials block named {block_name!r} "
            f"or set {ENV_API_KEY}"
        )
    return LegnextCredentials(
        api_key=api_key,
        base_url=os.environ.get(ENV_BASE_URL, DEFAULT_BASE_URL),
        poll_scale=float(os.environ.get(ENV_POLL_SCALE, "1.0")),
        concurrent_jobs=int(os.environ.get(ENV_CONCURRENT_JOBS, "6")),
    )


def load_bucket(block_name: str | None) -> S3Bucket:
    """The saved `S3Bucket` named `block_name`, else LEGNEXT_S3_BUCKET (with
    LEGNEXT_S3_FOLDER, LEGNEXT_S3_ENDPOINT_URL and the usual AWS_* variables)."""
    from prefect_aws import AwsCredentials, S3Bucket

    saved = _saved(S3Bucket, block_name)
    if isinstance(saved, S3Bucket):
        return saved
    bucket_name = os.environ.get(ENV_BUCKET, "").strip()
    if not bucket_name:
        raise ConfigurationError(
            f"no S3 bucket: save an S3Bucket block named {block_name!r} or set {ENV_BUCKET}"
        )
    endpoint = os.environ.get(ENV_S3_ENDPOINT) or None
    credentials = AwsCredentials(aws_client_parameters={"endpoint_url": endpoint})
    return S3Bucket(
        bucket_name=bucket_name,
        credentials=credentials,
        bucket_folder=os.environ.get(ENV_BUCKET_FOLDER, ""),
    )
