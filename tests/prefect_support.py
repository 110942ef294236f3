"""Helpers for tests of the Prefect layer (the `prefect_server` fixture is in conftest)."""

from __future__ import annotations

from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.simulator import LegnextSimulator


def credentials_for(sim: LegnextSimulator) -> LegnextCredentials:
    """A credentials block pointed at `sim`, polling on its clock."""
    return LegnextCredentials(
        api_key=sim.api_key, base_url=sim.base_url, poll_scale=sim.config.time_scale
    )
