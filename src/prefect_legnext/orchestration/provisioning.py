"""What a Prefect server needs before the flows run there: the blocks' types, the
``legnext-account`` global concurrency limit and a process work pool. Idempotent."""

from __future__ import annotations

from contextlib import suppress

ACCOUNT_LIMIT = "legnext-account"
# The lease of a slot of ACCOUNT_LIMIT, in seconds. Prefect renews it in the background
# (every 3/4 of it) while the step holds the slot, so a live step keeps its slot however
# long it waits; a killed holder stops renewing and the server frees the slot once the
# lease has run out (and its repossessor, every 15 s by default, has noticed). 60 s is
# the shortest lease Prefect's server accepts.
ACCOUNT_LEASE_SECONDS = 60.0
DEFAULT_WORK_POOL = "legnext-process"


def register_blocks() -> list[str]:
    """Register our block and the prefect-aws blocks the flows use, for UI forms."""
    from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    registered = []
    for block in (LegnextCredentials, S3Bucket, AwsCredentials, MinIOCredentials):
        block.register_type_and_schema()
        registered.append(block.get_block_type_name())
    return registered


# Servers on which this process has seen ``legnext-account``: it is checked once per
# process, not once per run (a round trip each). Our decision: a limit deleted while a
# worker runs is not re-created by it (the slots then go unenforced, with a warning).
_LIMIT_SEEN: set[str] = set()


def ensure_account_limit(limit: int) -> None:
    """Create ``legnext-account`` when missing; an existing limit is the operator's
    setting and is left as it is (`upsert_account_limit` changes it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    server = str(PREFECT_API_URL.value() or "")
    if server and server in _LIMIT_SEEN:
        return
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(ACCOUNT_LIMIT)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it meanwhile
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=ACCOUNT_LIMIT, limit=limit)
                )
    if server:
        _LIMIT_SEEN.add(server)


def upsert_account_limit(limit: int) -> None:
    """Create ``legnext-account`` or set it to `limit` (and make it active)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(ACCOUNT_LIMIT, limit)
        client.update_global_concurrency_limit(
            ACCOUNT_LIMIT, GlobalConcurrencyLimitUpdate(active=True)
        )


def ensure_process_pool(name: str = DEFAULT_WORK_POOL) -> bool:
    """Create a process work pool called `name` unless it exists. True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            return True
    return False
