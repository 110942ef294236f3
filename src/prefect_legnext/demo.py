"""``prefect-legnext demo``: the `legnext_chain` flow, end to end.

With nothing configured it runs offline: the embedded simulator, moto's S3 server on
loopback and Prefect's ephemeral server in a temporary home, all stopped on exit.
With ``LEGNEXT_API_KEY`` set (and a saved ``legnext-outputs`` S3Bucket block, or
``LEGNEXT_S3_BUCKET``) the same command runs against Legnext and your bucket.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from prefect_legnext.extras import require_simulator

if TYPE_CHECKING:
    from PIL import Image
    from prefect_aws import S3Bucket

    from prefect_legnext.orchestration.flows import ChainResult, StepResult

DEMO_TIME_SCALE = 0.01
DEMO_PROMPT = "a lighthouse on a cliff at dawn, volumetric light"
THUMB = 192


@dataclass(frozen=True)
class OfflineServices:
    """What `offline_environment` started: run the flows with these block names."""

    credentials_block: str
    storage_block: str
    bucket: S3Bucket
    legnext_url: str
    s3_url: str
    prefect_home: Path
    prefect_api_url: str | None


@contextmanager
def offline_environment(time_scale: float = DEMO_TIME_SCALE) -> Iterator[OfflineServices]:
    """The embedded simulator, a local S3 server and Prefect's temporary server in a
    temporary home, with a `LegnextCredentials` block and an `S3Bucket` block saved in
    it under the default names: flows run here exactly as in production, on saved
    blocks. Nothing is read from or written to the environment (the user's own
    LEGNEXT_* and AWS_* variables are neither used nor changed); every service and
    setting is undone on exit.

    Raises:
        MissingExtraError: the ``simulator`` extra is not installed.
        PrefectServerError: Prefect's temporary server did not start.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_UI_URL,
        temporary_settings,
    )

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.orchestration.resolve import (
        DEFAULT_CREDENTIALS_BLOCK,
        DEFAULT_STORAGE_BLOCK,
    )
    from prefect_legnext.prefect_api import prefect_api

    require_simulator("the offline mode")  # before anything is imported or started
    from prefect_legnext.simulator.s3 import LocalS3Server

    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="legnext-demo-")))
        from prefect_legnext.simulator import LegnextSimulator

        sim = stack.enter_context(LegnextSimulator(time_scale=time_scale))
        s3 = stack.enter_context(LocalS3Server())
        bucket = s3.create_bucket("legnext-demo")
        stack.enter_context(
            temporary_settings(
                updates={
                    PREFECT_HOME: str(home),
                    PREFECT_SERVER_DATABASE_CONNECTION_URL: (
                        f"sqlite+aiosqlite:///{home / 'prefect.db'}"
                    ),
                    PREFECT_SERVER_EPHEMERAL_ENABLED: True,
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                },
                # Prefect's temporary server, never a profile's server or its UI.
                restore_defaults={PREFECT_API_URL, PREFECT_UI_URL},
            )
        )
        api_url = stack.enter_context(prefect_api())
        credentials = LegnextCredentials(
            api_key=sim.api_key, base_url=sim.base_url, poll_scale=time_scale
        )
        credentials.save(DEFAULT_CREDENTIALS_BLOCK, overwrite=True)
        bucket.save(DEFAULT_STORAGE_BLOCK, overwrite=True)
        yield OfflineServices(
            credentials_block=DEFAULT_CREDENTIALS_BLOCK,
            storage_block=DEFAULT_STORAGE_BLOCK,
            bucket=bucket,
            legnext_url=sim.base_url,
            s3_url=s3.endpoint_url,
            prefect_home=home,
            prefect_api_url=api_url,
        )


def quiet_logs() -> None:
    """Keep a command's terminal output to its own lines: Prefect's console handler
    shows nothing (a user mistake must not end in a traceback), while run logs still
    reach the Prefect API and its UI. Nothing is written to the environment: Prefect
    configures logging once, when `prefect.main` is first imported (done here first,
    so that it cannot undo this later), and its temporary server's output goes to a
    log file of its own (`prefect_api`), where its errors stay readable."""
    import prefect.main  # noqa: F401 - Prefect configures logging here, once: before us
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL)


def run_demo(console: Console, output_dir: str, offline: bool) -> None:
    """Run the chain and show what it did: offline (embedded simulator, local S3, saved
    blocks in a temporary Prefect home) or against Legnext with the default blocks (or
    LEGNEXT_API_KEY and LEGNEXT_S3_BUCKET)."""
    from prefect_legnext.orchestration.resolve import (
        DEFAULT_CREDENTIALS_BLOCK,
        DEFAULT_STORAGE_BLOCK,
    )
    from prefect_legnext.prefect_api import prefect_api

    started = time.monotonic()
    where = "the embedded simulator and a local S3 server" if offline else "Legnext"
    console.print(f"running legnext_chain on {where}", highlight=False)
    quiet_logs()
    with ExitStack() as stack:
        with console.status("starting Prefect and the services the demo needs"):
            if offline:
                services = stack.enter_context(offline_environment())
                blocks = (services.credentials_block, services.storage_block)
            else:
                stack.enter_context(prefect_api())
                blocks = (DEFAULT_CREDENTIALS_BLOCK, DEFAULT_STORAGE_BLOCK)
        result, sheet = _run_chain(*blocks)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet_path = out / "contact-sheet.png"
    sheet.save(sheet_path)
    console.print(steps_table(result.steps, outputs=True))
    for step in result.steps:
        for uri in step.s3_uris:
            console.print(f"  {uri}", highlight=False, soft_wrap=True)
    console.print(f"total points: {result.total_points}", highlight=False)
    console.print(
        f"contact sheet: {sheet_path}  ({time.monotonic() - started:.1f}s in all)",
        highlight=False,
    )


def steps_table(
    steps: list[StepResult], *, outputs: bool = False, chain: int | None = None
) -> Table:
    """One row per step, narrow enough for an 80-column terminal: full action names,
    job ids shortened to their first characters (the full ids are in the sidecars)."""
    from prefect_legnext.orchestration.flows import SHORT_ID

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ["step", "action", "job", "points", "seconds"]
    if chain is not None:
        columns.insert(0, "chain")
    if outputs:
        columns.append("outputs")
    for column in columns:
        right = column in ("chain", "step", "points", "seconds", "outputs")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for step in steps:
        row = [
            str(step.index), step.action, step.job_id[:SHORT_ID], str(step.points),
            f"{step.duration_seconds:.1f}",
        ]  # fmt: skip
        if chain is not None:
            row.insert(0, str(chain))
        if outputs:
            row.append(str(len(step.s3_uris)))
        table.add_row(*row)
    return table


def _run_chain(credentials_block: str, storage_block: str) -> tuple[ChainResult, Image.Image]:
    from PIL import Image

    from prefect_legnext.orchestration.flows import legnext_chain
    from prefect_legnext.orchestration.resolve import load_bucket

    result: ChainResult = legnext_chain(
        prompt=DEMO_PROMPT, credentials_block=credentials_block, storage_block=storage_block
    )
    bucket = load_bucket(storage_block)
    s3 = bucket.credentials.get_s3_client()

    def fetch(uri: str) -> Image.Image:
        key = uri.split("/", 3)[3]
        data = s3.get_object(Bucket=bucket.bucket_name, Key=key)["Body"].read()
        return Image.open(io.BytesIO(data)).convert("RGB")

    rows = [[fetch(uri) for uri in step.s3_uris] for step in result.steps]
    return result, contact_sheet(rows, [f"{s.index}. {s.action}" for s in result.steps])


def copy_outputs(storage_block: str, prefix: str, out_dir: Path) -> int:
    """Copy every object under `prefix` in the bucket but the ledger's (an offline run's
    outputs, grids and sidecars: its local S3 stops with its command) into `out_dir`
    under their keys, whether the run ended well or not; the number of files copied."""
    from prefect_legnext.orchestration.ledger import S3_LEDGER_PREFIX
    from prefect_legnext.orchestration.resolve import load_bucket
    from prefect_legnext.orchestration.storage import s3_client

    bucket = load_bucket(storage_block)
    s3 = s3_client(bucket)
    folder = "/".join(p for p in (bucket.bucket_folder.strip("/"), prefix.strip("/")) if p)
    root = out_dir.resolve()
    copied = 0
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.bucket_name, Prefix=f"{folder}/" if folder else ""
    )
    for page in pages:
        for item in page.get("Contents", []):
            if f"{S3_LEDGER_PREFIX}/" in item["Key"]:  # the submits' records, not outputs
                continue
            target = (root / item["Key"]).resolve()
            if not target.is_relative_to(root):  # a key with "..": not ours, not copied
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket.bucket_name, item["Key"], str(target))
            copied += 1
    return copied


def contact_sheet(rows: list[list[Image.Image]], labels: list[str]) -> Image.Image:
    """One row of thumbnails per step, labelled."""
    from PIL import Image, ImageDraw

    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * THUMB, len(rows) * THUMB), "white")
    draw = ImageDraw.Draw(sheet)
    for y, (row, label) in enumerate(zip(rows, labels, strict=True)):
        for x, image in enumerate(row):
            thumb = image.copy()
            thumb.thumbnail((THUMB, THUMB))
            sheet.paste(thumb, (x * THUMB, y * THUMB))
            draw.text((x * THUMB + 6, y * THUMB + 6), f"{label} #{x}", fill="white")
    return sheet
