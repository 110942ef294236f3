"""What callback mode keeps on the flow run itself, as Prefect flow run inputs (our
decision: stored by the server the runs already use, readable by any worker):

- ``legnext-delivered-<job id>``: the finished task object, written by the receiver
  (or the sweeper) for every terminal delivery naming the run, whether or not the run
  was resumed for it. A re-executed run reads it instead of GETting the job, and a
  batch learns of its other chains' jobs this way.
- ``legnext-wait-<job id>``: a `WaitNote`, written by the step when it submits: when
  the job's callback is overdue, and the lease of the slot it holds. The sweeper
  reads it.

Writes are create-only: a repeat finds the input there and changes nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel

from prefect_legnext.core.responses import Job

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient

DELIVERED_PREFIX = "legnext-delivered-"
WAIT_PREFIX = "legnext-wait-"
CONFLICT = 409


def delivered_key(job_id: str) -> str:
    """Flow run input keys take lowercase letters, digits and dashes (job ids are UUIDs)."""
    return f"{DELIVERED_PREFIX}{job_id.lower()}"


def wait_key(job_id: str) -> str:
    return f"{WAIT_PREFIX}{job_id.lower()}"


class WaitNote(BaseModel):
    """A job a flow run waits for in callback mode.

    Attributes:
        due_at: when its callback is overdue (the sweeper GETs it from then on).
        lease_id: the ``legnext-account`` slot the job holds, None when not enforced.
        lease_seconds: that lease's duration (the sweeper renews it by as much).
        scale: the credentials' timing scale (1.0 for Legnext).
    """

    job_id: str
    task_type: str
    submitted_at: datetime
    due_at: datetime
    lease_id: str | None = None
    lease_seconds: float = 60.0
    scale: float = 1.0
    credentials_block: str | None = None


def kept(data: dict[str, Any]) -> dict[str, Any]:
    """The task object as it is kept on a flow run (run input, delivery): without the
    webhook's secret and without the callback URL's query other than our tags (it may
    hold a proxy's token). Prefect shows flow run inputs to anyone who reads the run.
    Our decision; the output URLs stay (the step downloads them)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from prefect_legnext.core.callbacks import OUR_TAGS

    config = data.get("config")
    hook = config.get("webhook_config") if isinstance(config, dict) else None
    if not isinstance(hook, dict):
        return data
    endpoint = hook.get("endpoint")
    cleaned = dict(hook, secret="")
    if isinstance(endpoint, str) and endpoint:
        try:
            parts = urlsplit(endpoint)
            ours = [(k, v) for k, v in parse_qsl(parts.query) if k in OUR_TAGS]
            cleaned["endpoint"] = urlunsplit(parts._replace(query=urlencode(ours)))
        except ValueError:
            cleaned["endpoint"] = ""
    return {**data, "config": {**config, "webhook_config": cleaned}}  # type: ignore[dict-item]


def _created(exc: BaseException) -> bool:
    """A create refused because the input exists: a repeat, nothing to do."""
    import httpx

    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == CONFLICT


def save_delivery(client: SyncPrefectClient, flow_run_id: UUID, data: dict[str, Any]) -> None:
    try:
        client.create_flow_run_input(
            flow_run_id, delivered_key(str(data["job_id"])), json.dumps(kept(data))
        )
    except Exception as exc:
        if not _created(exc):
            raise


async def asave_delivery(client: PrefectClient, flow_run_id: UUID, data: dict[str, Any]) -> None:
    try:
        await client.create_flow_run_input(
            flow_run_id, delivered_key(str(data["job_id"])), json.dumps(kept(data))
        )
    except Exception as exc:
        if not _created(exc):
            raise


def read_deliveries(client: SyncPrefectClient, flow_run_id: UUID) -> dict[str, Job]:
    """Every finished job delivered to the run, by job id (lowercase): one request."""
    found: dict[str, Job] = {}
    for item in client.filter_flow_run_input(flow_run_id, DELIVERED_PREFIX, 1000, set()):
        job = Job.model_validate(json.loads(item.value))
        found[job.job_id.lower()] = job
    return found


def save_wait_note(client: SyncPrefectClient, flow_run_id: UUID, note: WaitNote) -> None:
    try:
        client.create_flow_run_input(flow_run_id, wait_key(note.job_id), note.model_dump_json())
    except Exception as exc:
        if not _created(exc):
            raise


def replace_wait_note(client: SyncPrefectClient, flow_run_id: UUID, note: WaitNote) -> None:
    """The sweeper's update (a new due time): inputs cannot be changed, only replaced."""
    import httpx

    try:
        client.delete_flow_run_input(flow_run_id, wait_key(note.job_id))
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise
    save_wait_note(client, flow_run_id, note)


def read_wait_note(client: SyncPrefectClient, flow_run_id: UUID, job_id: str) -> WaitNote | None:
    items = client.filter_flow_run_input(flow_run_id, wait_key(job_id), 1, set())
    return WaitNote.model_validate_json(items[0].value) if items else None
