"""Where a flow gets its Legnext credentials and its bucket: a saved block by name,
else, for the default names only, the environment. So one command runs against saved
blocks in production and against environment settings (a quick try) without code
changes, while a misspelt block name is an error, never a silent switch to whatever
account LEGNEXT_API_KEY holds on that worker."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from prefect_legnext.core.client import DEFAULT_BASE_URL, clean_api_key
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect.blocks.core import Block
    from prefect_aws import S3Bucket

DEFAULT_CREDENTIALS_BLOCK = "legnext"
DEFAULT_STORAGE_BLOCK = "legnext-outputs"
ENV_API_KEY = "LEGNEXT_API_KEY"
ENV_BASE_URL = "LEGNEXT_BASE_URL"
ENV_POLL_SCALE = "LEGNEXT_POLL_SCALE"
ENV_CONCURRENT_JOBS = "LEGNEXT_CONCURRENT_JOBS"
ENV_BUCKET = "LEGNEXT_S3_BUCKET"
ENV_BUCKET_FOLDER = "LEGNEXT_S3_FOLDER"
ENV_S3_ENDPOINT = "LEGNEXT_S3_ENDPOINT_URL"

BlockT = TypeVar("BlockT", bound="Block")


def _saved(block_type: type[BlockT], name: str, default: str) -> BlockT | None:
    """The saved block `name`; None when the environment may stand in for it: no name
    (``""`` asks for the environment) or the default name with no block saved."""
    if not name:
        return None
    kind = block_type.get_block_type_name()
    try:
        return block_type.load(name)  # type: ignore[return-value]
    except RuntimeError as exc:  # Prefect's "Unable to load ... due to failed validation"
        if not isinstance(exc.__cause__, ValidationError):
            raise
        # e.g. a key saved through the UI with a space inside; the messages show no input.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.__cause__.errors()
        )
        raise ConfigurationError(f"saved {kind} block {name!r} is invalid: {problems}") from None
    except ValueError:  # Prefect's "Unable to find block document named ..."
        if name == default:
            return None
        raise ConfigurationError(
            f"no saved {kind} block named {name!r}: save one under that name or pass "
            f"an existing one (only {default!r} falls back to the environment)"
        ) from None


def resolve_credentials(block_name: str | None) -> tuple[LegnextCredentials, str]:
    """The credentials and where they came from (for the run log; never the key).

    The saved `LegnextCredentials` named `block_name`; for the default name when no such
    block is saved, or for ``""``, LEGNEXT_API_KEY with LEGNEXT_BASE_URL,
    LEGNEXT_POLL_SCALE and LEGNEXT_CONCURRENT_JOBS.

    Raises:
        ConfigurationError: a named block that does not exist, or no key anywhere.
    """
    name = DEFAULT_CREDENTIALS_BLOCK if block_name is None else block_name
    saved = _saved(LegnextCredentials, name, DEFAULT_CREDENTIALS_BLOCK)
    if saved is not None:
        return saved, f"saved block {name!r}"
    raw_key = os.environ.get(ENV_API_KEY, "")
    if not raw_key.strip():
        wanted = f"save a LegnextCredentials block named {name!r} or " if name else ""
        raise ConfigurationError(f"no Legnext credentials: {wanted}set {ENV_API_KEY}")
    try:
        api_key = clean_api_key(raw_key, ENV_API_KEY)
    except ValueError as exc:  # one line naming the variable, never the key
        raise ConfigurationError(str(exc)) from None
    base_url = os.environ.get(ENV_BASE_URL, DEFAULT_BASE_URL)
    credentials = LegnextCredentials(
        api_key=api_key,
        base_url=base_url,
        poll_scale=float(os.environ.get(ENV_POLL_SCALE, "1.0")),
        concurrent_jobs=int(os.environ.get(ENV_CONCURRENT_JOBS, "6")),
    )
    return credentials, f"environment ({ENV_API_KEY}, {base_url})"


def load_credentials(block_name: str | None) -> LegnextCredentials:
    """`resolve_credentials` without the source."""
    return resolve_credentials(block_name)[0]


def resolve_bucket(block_name: str | None) -> tuple[S3Bucket, str]:
    """The bucket and where it came from: the saved `S3Bucket` named `block_name`; for
    the default name when no such block is saved, or for ``""``, LEGNEXT_S3_BUCKET (with
    LEGNEXT_S3_FOLDER, LEGNEXT_S3_ENDPOINT_URL and the usual AWS_* variables).

    Raises:
        ConfigurationError: a named block that does not exist, or no bucket anywhere.
    """
    from prefect_aws import AwsCredentials, S3Bucket

    name = DEFAULT_STORAGE_BLOCK if block_name is None else block_name
    saved = _saved(S3Bucket, name, DEFAULT_STORAGE_BLOCK)
    if saved is not None:
        return saved, f"saved block {name!r}"
    bucket_name = os.environ.get(ENV_BUCKET, "").strip()
    if not bucket_name:
        wanted = f"save an S3Bucket block named {name!r} or " if name else ""
        raise ConfigurationError(f"no S3 bucket: {wanted}set {ENV_BUCKET}")
    endpoint = os.environ.get(ENV_S3_ENDPOINT) or None
    credentials = AwsCredentials(aws_client_parameters={"endpoint_url": endpoint})
    bucket = S3Bucket(
        bucket_name=bucket_name,
        credentials=credentials,
        bucket_folder=os.environ.get(ENV_BUCKET_FOLDER, ""),
    )
    return bucket, f"environment ({ENV_BUCKET}={bucket_name})"


def load_bucket(block_name: str | None) -> S3Bucket:
    """`resolve_bucket` without the source."""
    return resolve_bucket(block_name)[0]
