"""Where a flow's credentials and bucket come from: a saved block by name, and the
environment only for the default names, so that a misspelt block never silently runs on
whatever account LEGNEXT_API_KEY holds on that worker."""

from __future__ import annotations

import uuid

import pytest
from prefect_aws import S3Bucket

from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.errors import ConfigurationError
from prefect_legnext.orchestration.resolve import (
    DEFAULT_CREDENTIALS_BLOCK,
    DEFAULT_STORAGE_BLOCK,
    resolve_bucket,
    resolve_credentials,
)
from prefect_legnext.simulator.s3 import LocalS3Server

pytestmark = pytest.mark.usefixtures("prefect_server")
ENV_KEY = "env-key-9f2c"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGNEXT_API_KEY", ENV_KEY)
    monkeypatch.setenv("LEGNEXT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LEGNEXT_S3_BUCKET", "env-bucket")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_named_credentials_block_that_does_not_exist_is_an_error(environment: None) -> None:
    name = unique("legnxt")
    with pytest.raises(ConfigurationError) as caught:
        resolve_credentials(name)
    assert str(caught.value) == (
        f"no saved Legnext Credentials block named {name!r}: save one under that name or "
        "pass an existing one (only 'legnext' falls back to the environment)"
    )
    assert ENV_KEY not in str(caught.value)


def test_a_named_bucket_block_that_does_not_exist_is_an_error(environment: None) -> None:
    name = unique("outputs")
    with pytest.raises(ConfigurationError, match=f"no saved S3 Bucket block named '{name}'"):
        resolve_bucket(name)


def test_a_saved_block_is_used_and_named_as_the_source(environment: None) -> None:
    name = unique("legnext")
    LegnextCredentials(api_key="saved-key", base_url="http://127.0.0.1:8").save(name)
    credentials, source = resolve_credentials(name)
    assert credentials.api_key.get_secret_value() == "saved-key"
    assert source == f"saved block {name!r}"


def test_the_default_name_falls_back_to_the_environment(environment: None) -> None:
    from prefect.exceptions import ObjectNotFound

    with pytest.raises((ValueError, ObjectNotFound)):  # the premise: no such block saved
        LegnextCredentials.load(DEFAULT_CREDENTIALS_BLOCK)
    credentials, source = resolve_credentials(DEFAULT_CREDENTIALS_BLOCK)
    assert credentials.api_key.get_secret_value() == ENV_KEY
    assert credentials.base_url == "http://127.0.0.1:9"
    assert source == "environment (LEGNEXT_API_KEY, http://127.0.0.1:9)"
    assert ENV_KEY not in source
    bucket, bucket_source = resolve_bucket(DEFAULT_STORAGE_BLOCK)
    assert bucket.bucket_name == "env-bucket"
    assert bucket_source == "environment (LEGNEXT_S3_BUCKET=env-bucket)"


def test_an_empty_name_asks_for_the_environment(environment: None) -> None:
    assert resolve_credentials("")[1].startswith("environment")
    assert resolve_bucket("")[1].startswith("environment")


def test_nothing_anywhere_names_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEGNEXT_API_KEY", raising=False)
    monkeypatch.delenv("LEGNEXT_S3_BUCKET", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        resolve_credentials(DEFAULT_CREDENTIALS_BLOCK)
    assert str(caught.value) == (
        "no Legnext credentials: save a LegnextCredentials block named 'legnext' "
        "or set LEGNEXT_API_KEY"
    )
    with pytest.raises(ConfigurationError, match=r"^no S3 bucket: set LEGNEXT_S3_BUCKET$"):
        resolve_bucket("")


def test_a_saved_bucket_block(local_s3_server: LocalS3Server) -> None:
    bucket = local_s3_server.create_bucket()
    name = unique("outputs")
    bucket.save(name)
    loaded, source = resolve_bucket(name)
    assert isinstance(loaded, S3Bucket) and loaded.bucket_name == bucket.bucket_name
    assert source == f"saved block {name!r}"
