"""Helpers for tests of the Prefect layer (the `prefect_server` fixture is in conftest)."""

from __future__ import annotations

from prefect_aws import S3Bucket

from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.simulator import LegnextSimulator


def credentials_for(sim: LegnextSimulator) -> LegnextCredentials:
    """A credentials block pointed at `sim`, polling on its clock."""
    return LegnextCredentials(
        api_key=sim.api_key, base_url=sim.base_url, poll_scale=sim.config.time_scale
    )


def save_blocks(bucket: S3Bucket, sim: LegnextSimulator) -> dict[str, str]:
    """`bucket` (e.g. reached through a proxy) and `sim`, saved as blocks for a flow;
    the flow's block-name arguments."""
    suffix = bucket.bucket_name.removeprefix("legnext-")
    names = {"credentials_block": f"legnext-{suffix}", "storage_block": f"outputs-{suffix}"}
    credentials_for(sim).save(names["credentials_block"], overwrite=True)
    bucket.save(names["storage_block"], overwrite=True)
    return names
