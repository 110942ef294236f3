"""``prefect-legnext demo``: the chain generate -> enhance -> inpaint -> retexture on
the embedded simulator, with a summary table and a contact sheet of every step."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from prefect_legnext.client import LegnextClient
from prefect_legnext.models import Mask, Polygon
from prefect_legnext.polling import PollPolicy
from prefect_legnext.responses import Job
from prefect_legnext.simulator import LegnextSimulator

DEMO_TIME_SCALE = 0.01
THUMB = 192


def run_demo(console: Console, output_dir: str, _env: Mapping[str, str]) -> list[Job]:
    """Run the chain on a fresh simulator; returns the completed job of each step."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (
        LegnextSimulator(time_scale=DEMO_TIME_SCALE) as sim,
        LegnextClient(
            sim.api_key, base_url=sim.base_url, poll=PollPolicy(scale=DEMO_TIME_SCALE)
        ) as client,
        console.status("running the chain on the embedded simulator") as status,
    ):
        steps: list[Job] = []

        def run(label: str, job: Job) -> Job:
            status.update(f"{label}: {job.job_id}")
            done = client.wait_for_job(job)
            steps.append(done)
            return done

        generated = run("diffusion", client.diffusion(text="a lighthouse at dawn --v 7 --draft"))
        enhanced = run("enhance", client.enhance(job_id=generated.job_id, image_no=0))
        square = Polygon(width=1024, height=1024, points=[256, 256, 768, 256, 768, 768, 256, 768])
        inpainted = run(
            "inpaint",
            client.inpaint(
                job_id=enhanced.job_id,
                image_no=0,
                mask=Mask(areas=[square]),
                remix_prompt="a red sailboat",
            ),
        )
        run(
            "retexture",
            client.retexture(
                img_url=inpainted.output_urls[0], remix_prompt="as a watercolour painting"
            ),
        )
        sheet = contact_sheet([[_download(url) for url in job.output_urls] for job in steps])
    sheet_path = out / "contact-sheet.png"
    sheet.save(sheet_path)
    table = Table(title="prefect-legnext demo (embedded simulator)")
    for column in ("step", "job id", "points", "outputs"):
        table.add_column(column)
    for job in steps:
        table.add_row(job.task_type, job.job_id, str(job.points), str(len(job.output_urls)))
    console.print(table)
    console.print(f"total points: {sum(j.points for j in steps)}", highlight=False)
    console.print(
        f"contact sheet: {sheet_path} ({time.monotonic() - started:.1f}s)", highlight=False
    )
    return steps


def _download(url: str) -> Image.Image:
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def contact_sheet(rows: list[list[Image.Image]]) -> Image.Image:
    """One row of thumbnails per step."""
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * THUMB, len(rows) * THUMB), "white")
    draw = ImageDraw.Draw(sheet)
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            thumb = image.copy()
            thumb.thumbnail((THUMB, THUMB))
            sheet.paste(thumb, (x * THUMB, y * THUMB))
            draw.text((x * THUMB + 4, y * THUMB + 4), f"{y}.{x}", fill="white")
    return sheet
