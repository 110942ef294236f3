"""The process's shared clients: one `LegnextClient` per credentials and one httpx
client for output downloads, reused by every task run of the process (threads
included) instead of one per task run. Async task runs keep their own clients:
an httpx.AsyncClient belongs to the event loop that made it."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from prefect_legnext.core.client import LegnextClient
from prefect_legnext.core.pool import ClientPool, settings_digest
from prefect_legnext.orchestration.blocks import LegnextCredentials

LEGNEXT_CLIENTS: ClientPool[LegnextClient] = ClientPool(LegnextClient.close)
DOWNLOAD_CLIENTS: ClientPool[httpx.Client] = ClientPool(httpx.Client.close)
# Output downloads: a slow CDN gets a minute per read; each file has its own deadline
# (`file_timeout`) on top.
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def legnext_client(credentials: LegnextCredentials) -> LegnextClient:
    """The shared client of `credentials` in this process; never close it (the pool
    does, at exit)."""
    api_key: SecretStr | str = credentials.api_key  # a str after an unvalidated model_copy
    secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    key = settings_digest(
        secret,
        credentials.base_url,
        credentials.timeout_seconds,
        credentials.poll_scale,
    )
    return LEGNEXT_CLIENTS.get(key, credentials.get_client)


def download_client() -> httpx.Client:
    """The shared client for output downloads (no credentials: output URLs are public)."""
    return DOWNLOAD_CLIENTS.get("downloads", lambda: httpx.Client(timeout=DOWNLOAD_TIMEOUT))


def clients_built() -> int:
    """HTTP clients built by this process's pools (a benchmark figure)."""
    return LEGNEXT_CLIENTS.built + DOWNLOAD_CLIENTS.built
