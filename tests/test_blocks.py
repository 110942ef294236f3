"""The credentials block: Prefect's standard block suite, clients it builds, and
registration with ``prefect block register -m prefect_legnext`` on a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import prefect_legnext
from prefect_legnext import LegnextClient, LegnextCredentials
from prefect_legnext.orchestration.blocks import DOCS_URL


class TestLegnextCredentialsBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return LegnextCredentials

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        """Replaces the suite's check: no public address serves our logo, and a block
        names only addresses that exist, so it has none (the UI shows its default)."""
        assert block._logo_url is None


def test_documentation_url_is_legnexts_own() -> None:
    assert DOCS_URL == "https://docs.legnext.ai"
    assert str(LegnextCredentials._documentation_url) == DOCS_URL


def test_clients_use_the_block_settings() -> None:
    credentials = LegnextCredentials(
        api_key="lgx-block-secret", base_url="http://127.0.0.1:9", timeout_seconds=5,
        poll_scale=0.01,
    )  # fmt: skip
    with credentials.get_client() as client:
        assert isinstance(client, LegnextClient)
        assert client.base_url == "http://127.0.0.1:9"
        assert client.poll.scale == 0.01
        assert "lgx-block-secret" not in repr(client)
    assert "lgx-block-secret" not in repr(credentials)
    assert credentials.get_async_client().base_url == "http://127.0.0.1:9"


@pytest.mark.usefixtures("prefect_server")
def test_block_saves_and_loads_with_secret() -> None:
    LegnextCredentials(api_key="lgx-saved-secret", concurrent_jobs=4).save(
        "test-legnext", overwrite=True
    )
    loaded = LegnextCredentials.load("test-legnext")
    assert loaded.api_key.get_secret_value() == "lgx-saved-secret"
    assert loaded.concurrent_jobs == 4


@pytest.mark.usefixtures("prefect_server")
def test_block_register_command() -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "block", "register", "-m",
         "prefect_legnext"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Legnext Credentials" in result.stdout
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("legnext-credentials")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert block_type.name == "Legnext Credentials"
    assert block_type.logo_url is None
    assert str(block_type.documentation_url).rstrip("/") == DOCS_URL
    # The schema carries the package's version (Prefect reads `prefect_legnext.__version__`).
    assert schema is not None and schema.version == prefect_legnext.__version__


def test_collections_entry_point_names_the_package() -> None:
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="prefect.collections") if e.name == "prefect_legnext"]
    assert entry.load().LegnextCredentials is LegnextCredentials


def test_the_client_floor_imports_no_prefect() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from prefect_legnext import LegnextClient; "
        "import prefect_legnext.simulator; print('prefect' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
