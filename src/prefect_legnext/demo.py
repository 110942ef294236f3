"""``prefect-legnext demo``: the `legnext_chain` flow, end to end.

With nothing configured it runs offline: the embedded simulator, moto's S3 server on
loopback and Prefect's ephemeral server in a temporary home, all stopped on exit.
With ``LEGNEXT_API_KEY`` set (and a saved ``legnext-outputs`` S3Bucket block, or
``LEGNEXT_S3_BUCKET``) the same command runs against Legnext and your bucket.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from prefect_legnext.flows import ChainResult

DEMO_TIME_SCALE = 0.01
DEMO_PROMPT = "a lighthouse on a cliff at dawn, volumetric light"
THUMB = 192


@contextmanager
def offline_environment(time_scale: float = DEMO_TIME_SCALE) -> Iterator[dict[str, str]]:
    """Simulator, local S3 and an isolated Prefect home, exposed through the environment
    variables the flows read when no block is saved; everything is undone on exit."""
    from prefect_legnext.local_s3 import (
        LOCAL_ACCESS_KEY,
        LOCAL_REGION,
        LOCAL_SECRET_KEY,
        LocalS3Server,
    )
    from prefect_legnext.simulator import LegnextSimulator

    with (
        tempfile.TemporaryDirectory(prefix="legnext-demo-") as home,
        LegnextSimulator(time_scale=time_scale) as sim,
        LocalS3Server() as s3,
    ):
        bucket = s3.create_bucket("legnext-demo")
        settings = {
            "LEGNEXT_API_KEY": sim.api_key,
            "LEGNEXT_BASE_URL": sim.base_url,
            "LEGNEXT_POLL_SCALE": str(time_scale),
            "LEGNEXT_S3_BUCKET": bucket.bucket_name,
            "LEGNEXT_S3_ENDPOINT_URL": s3.endpoint_url,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_KEY,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        saved = {name: os.environ.get(name) for name in [*settings, "PREFECT_API_URL"]}
        os.environ.update(settings)
        os.environ.pop("PREFECT_API_URL", None)  # Prefect's ephemeral server, not a profile's
        try:
            yield settings
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def quiet_logs() -> None:
    """Keep a command's terminal output to its own lines: Prefect's console handler
    shows nothing (a user mistake must not end in a traceback), while run logs still
    reach the Prefect API and its UI. The environment variable keeps it so when Prefect
    reconfigures logging, and in the ephemeral server's process."""
    from prefect.logging.handlers import PrefectConsoleHandler

    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.CRITICAL)


def run_demo(console: Console, output_dir: str, env: Mapping[str, str]) -> None:
    """Run the chain and show what it did; offline unless LEGNEXT_API_KEY is set."""
    offline = not env.get("LEGNEXT_API_KEY")
    started = time.monotonic()
    where = "the embedded simulator and a local S3 server" if offline else "Legnext"
    quiet_logs()
    with console.status(f"running generate -> enhance -> inpaint -> retexture on {where}"):
        if offline:
            with offline_environment():
                result, sheet = _run_chain(credentials_block="", storage_block="")
        else:
            result, sheet = _run_chain(credentials_block="legnext", storage_block="legnext-outputs")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet_path = out / "contact-sheet.png"
    sheet.save(sheet_path)
    table = Table(title=f"legnext_chain on {where}")
    for column in ("step", "action", "job id", "points", "seconds", "outputs"):
        table.add_column(column, no_wrap=True, min_width=36 if column == "job id" else None)
    for step in result.steps:
        table.add_row(
            str(step.index), step.action, step.job_id, str(step.points),
            f"{step.duration_seconds:.1f}", str(len(step.s3_uris)),
        )  # fmt: skip
    console.print(table)
    for step in result.steps:
        for uri in step.s3_uris:
            console.print(f"  {uri}", highlight=False, soft_wrap=True)
    console.print(f"total points: {result.total_points}", highlight=False)
    console.print(
        f"contact sheet: {sheet_path}  ({time.monotonic() - started:.1f}s in all)",
        highlight=False,
    )


def _run_chain(credentials_block: str, storage_block: str) -> tuple[ChainResult, Image.Image]:
    from prefect_legnext.flows import legnext_chain
    from prefect_legnext.resolve import load_bucket

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


def contact_sheet(rows: list[list[Image.Image]], labels: list[str]) -> Image.Image:
    """One row of thumbnails per step, labelled."""
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
