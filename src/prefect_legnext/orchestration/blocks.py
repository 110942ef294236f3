"""Prefect blocks. Only credentials live here: storage is prefect-aws's `S3Bucket`
(with `AwsCredentials` or `MinIOCredentials` for any S3-compatible endpoint)."""

from __future__ import annotations

from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import ConfigDict, Field, SecretStr, field_validator

from prefect_legnext.core.client import (
    DEFAULT_BASE_URL,
    AsyncLegnextClient,
    LegnextClient,
    clean_api_key,
)
from prefect_legnext.core.polling import PollPolicy

# Only addresses that exist: Legnext's own API documentation, which describes the key,
# the endpoints and the account's limits this block holds.
DOCS_URL = "https://docs.legnext.ai"


class LegnextCredentials(CredentialsBlock):
    """Credentials and connection settings for a Legnext account.

    Example:
        Load saved credentials in a flow and read the balance:
        ```python
        from prefect_legnext import LegnextCredentials

        legnext_credentials = LegnextCredentials.load("BLOCK_NAME")
        with legnext_credentials.get_client() as client:
            print(client.balance().available_points)
        ```

    A pickled block (process and Dask task runners pickle what they ship) holds the
    key, as it must to call Legnext there; its repr, str and logs never do.
    """

    # A refused value must not be echoed in the validation error (it may be the key).
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "Legnext Credentials"
    _block_type_slug = "legnext-credentials"
    # No `_logo_url`: no public address serves a logo of ours, so the Prefect UI shows
    # its default icon rather than a broken image.
    _documentation_url = DOCS_URL  # type: ignore[assignment]
    _description = "Legnext (Midjourney API) key, endpoint and account limits."

    api_key: SecretStr = Field(
        default=...,
        title="API key",
        description="The Legnext API key, sent as the x-api-key header. Never logged.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        title="Base URL",
        description="Legnext's address; point it at a simulator for offline runs.",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        title="Request timeout (s)",
        description="Read timeout of each HTTP request to Legnext.",
    )
    concurrent_jobs: int = Field(
        default=6,
        ge=1,
        title="Concurrent jobs",
        description="Jobs the account runs at once (Legnext's cap is 6); sizes the "
        "legnext-account concurrency limit.",
    )
    poll_scale: float = Field(
        default=1.0,
        gt=0,
        title="Poll timing scale",
        description="Multiplies poll intervals: 1.0 for Legnext, the simulator's "
        "time scale when pointed at a simulator.",
    )

    callback_url: str | None = Field(
        default=None,
        title="Callback receiver URL",
        description="The public URL of your `prefect-legnext receiver`. When set, flows "
        "run from deployments wait for Legnext's callback while suspended (no worker "
        "held) instead of polling.",
    )

    @field_validator("callback_url")
    @classmethod
    def _check_callback_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        # Legnext must reach it; only http(s), at most 1024 characters like imgUrl
        # (our decision: the tags we add need room too).
        if not value.startswith(("http://", "https://")) or len(value) > 800:
            raise ValueError("callback_url must be an http(s) URL of at most 800 characters")
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _clean_api_key(cls, value: Any) -> Any:
        # Strip the newline a key pasted from a file or a mounted secret ends in, also
        # for blocks saved before this check or through the UI (validated on load).
        if isinstance(value, str | SecretStr):
            return clean_api_key(value, "api_key")
        return value

    def _options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "timeout": self.timeout_seconds,
            "poll": PollPolicy(scale=self.poll_scale),
        }

    def get_client(self) -> LegnextClient:
        """A synchronous client; use it as a context manager to close its connections."""
        return LegnextClient(self.api_key, **self._options())

    def get_async_client(self) -> AsyncLegnextClient:
        """An asynchronous client; use it as an async context manager."""
        return AsyncLegnextClient(self.api_key, **self._options())
