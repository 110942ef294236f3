"""Pytest fixtures for testing flows offline against the Legnext simulator.

Installed as a pytest plugin (entry point ``pytest11``), so any project that
depends on prefect-legnext can use them::

    def test_my_flow(legnext_simulator):
        client = legnext_client_for(legnext_simulator)
        ...

Every simulator started here is stopped at teardown, also when the test fails.
`legnext_s3_bucket` gives a fresh bucket on moto's S3 server, run over HTTP on
loopback for the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

    from prefect_legnext.core.client import AsyncLegnextClient, LegnextClient
    from prefect_legnext.simulator import LegnextSimulator
    from prefect_legnext.simulator.s3 import LocalS3Server

TEST_TIME_SCALE = 0.001


def legnext_client_for(sim: LegnextSimulator, **options: Any) -> LegnextClient:
    """A sync client pointed at `sim`, polling on the simulator's clock."""
    from prefect_legnext.core.client import LegnextClient
    from prefect_legnext.core.polling import PollPolicy

    options.setdefault("poll", PollPolicy(scale=sim.config.time_scale))
    return LegnextClient(sim.api_key, base_url=sim.base_url, **options)


def async_legnext_client_for(sim: LegnextSimulator, **options: Any) -> AsyncLegnextClient:
    """An async client pointed at `sim`, polling on the simulator's clock."""
    from prefect_legnext.core.client import AsyncLegnextClient
    from prefect_legnext.core.polling import PollPolicy

    options.setdefault("poll", PollPolicy(scale=sim.config.time_scale))
    return AsyncLegnextClient(sim.api_key, base_url=sim.base_url, **options)


@pytest.fixture
def legnext_simulator_factory() -> Iterator[Callable[..., LegnextSimulator]]:
    """Start simulators with any `SimulatorConfig` overrides; all stop at teardown."""
    from prefect_legnext.simulator import LegnextSimulator

    started: list[LegnextSimulator] = []

    def start(**overrides: Any) -> LegnextSimulator:
        overrides.setdefault("time_scale", TEST_TIME_SCALE)
        sim = LegnextSimulator(**overrides)
        sim.start()
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            sim.stop()


@pytest.fixture
def legnext_simulator(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> LegnextSimulator:
    """A fresh simulator at 1/1000 of Legnext's speed, on a free loopback port."""
    return legnext_simulator_factory()


@pytest.fixture(scope="session")
def local_s3_server() -> Iterator[LocalS3Server]:
    """moto's S3 server on loopback for the whole session (needs the ``simulator`` extra)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    from prefect_legnext.simulator.s3 import LocalS3Server

    with LocalS3Server() as server:
        yield server


@pytest.fixture
def legnext_s3_bucket(local_s3_server: LocalS3Server) -> S3Bucket:
    """A fresh, empty bucket on the local S3 server, as a prefect-aws `S3Bucket` block."""
    return local_s3_server.create_bucket()
