"""Memory of persisting large outputs (issue 12, target 4): 4 x 200 MB outputs persisted
by ``persist_job`` (streamed through a spooled temporary file, multipart above 8 MiB)
against the naive anchor (``httpx.get(url).content`` then one ``put_object``).

Each side runs in a fresh interpreter of its own, after a small warm-up persist (so
imports and clients are in place), and reports its peak RSS growth: the kernel's peak
(``VmHWM``, reset through ``/proc/self/clear_refs`` right before) minus the RSS before.
Ours is measured for one file, then (peak reset again) for all of them, both against the
RSS before the first: the growth must not depend on the number of files.
The files come from a small HTTP server and go to moto's S3 server, each in a process of
its own, so neither holds the bytes in the measured process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.benchkit import Outcome, Target
from benchmarks.cost_stack import moto_server
from benchmarks.fleet import ROOT

MB = 1024 * 1024
TARGET_MB = 64.0
TIMEOUT = 900.0  # seconds per measured side on a loaded machine


def run(*, quick: bool, workdir: Path) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    files, size_mb = 4, (12 if quick else 200)
    with _servers() as (s3_url, files_url):
        ours = _measure("ours", files, size_mb, s3_url, files_url)
        naive = _measure("naive", files, size_mb, s3_url, files_url)
    figures = {
        "stream_peak_rss_growth_mb": ours["growth_mb"],
        "stream_peak_rss_growth_mb_one_file": ours["one_file_growth_mb"],
        "naive_peak_rss_growth_mb": naive["growth_mb"],
        "stream_persist_seconds": ours["seconds"],
        "naive_persist_seconds": naive["seconds"],
        "memory_file_mb": size_mb,
    }
    return Outcome(
        figures=figures,
        targets=[
            Target(
                f"persisting {files} x {size_mb} MB grows peak RSS by <= {TARGET_MB:g} MB",
                f"+{ours['growth_mb']:.0f} MB (1 file: +{ours['one_file_growth_mb']:.0f} MB; naive "
                f"+{naive['growth_mb']:.0f} MB)",
                ours["growth_mb"] <= TARGET_MB,
            )
        ],
        notes=[
            f"{files} files of {size_mb} MB, each side in a fresh interpreter: ours "
            f"+{ours['growth_mb']:.1f} MB in {ours['seconds']:.1f} s, naive "
            f"+{naive['growth_mb']:.1f} MB in {naive['seconds']:.1f} s."
        ],
    )


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    """moto's S3 server and the file server, each in its own process."""
    files = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_memory", "--serve-files"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert files.stdout is not None
        files_url = files.stdout.readline().strip()
        with moto_server() as s3_url:
            yield s3_url, files_url
    finally:
        files.terminate()
        files.wait(timeout=60)


def _measure(side: str, files: int, size_mb: int, s3_url: str, files_url: str) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 - this module
        [sys.executable, "-m", "benchmarks.bench_memory", "--measure", side, "--files",
         str(files), "--size-mb", str(size_mb), "--s3", s3_url, "--files-url", files_url],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"memory side {side} failed:\n{result.stderr[-4000:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


# -- the file server ---------------------------------------------------------------------


class _Files(BaseHTTPRequestHandler):
    """``GET /<n>-<bytes>.mp4``: that many deterministic bytes, streamed 1 MiB at a time."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        match = re.fullmatch(r"/(\d+)-(\d+)\.mp4", self.path)
        if match is None:
            self.send_error(404)
            return
        seed, size = int(match.group(1)), int(match.group(2))
        block = random.Random(seed).randbytes(MB)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        left = size
        while left > 0:
            self.wfile.write(block[: min(left, MB)])
            left -= MB


def serve_files() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


# -- one measured side -------------------------------------------------------------------


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _job(files_url: str, files: int, size: int, tag: str) -> Any:
    from prefect_legnext.core.responses import Job

    urls = [f"{files_url}/{n}-{size}.mp4" for n in range(files)]
    return Job.model_validate(
        {
            "job_id": f"memory-{tag}",
            "task_type": "video_diffusion",
            "status": "completed",
            "output": {"image_url": "", "image_urls": None, "video_urls": urls},
            "meta": {"usage": {"type": "point", "frozen": 0, "consume": 0}},
        }
    )


def measure(side: str, files: int, size_mb: int, s3_url: str, files_url: str) -> dict[str, Any]:
    import httpx

    from prefect_legnext.orchestration.storage import persist_job
    from prefect_legnext.simulator.s3 import LocalS3Server

    bucket = LocalS3Server()
    bucket.endpoint_url = s3_url
    block = bucket.create_bucket()
    s3 = block.credentials.get_s3_client()

    def ours(job: Any) -> None:
        persist_job(job, block, "memory", include_grid=False, check_existing=False)

    def naive(job: Any) -> None:
        for n, url in enumerate(job.output_urls):
            body = httpx.get(url, timeout=300).content
            s3.put_object(Bucket=block.bucket_name, Key=f"naive/{n}.mp4", Body=body)
            del body

    persist = ours if side == "ours" else naive
    persist(_job(files_url, 1, MB, "warm-up"))  # imports, clients, thread pools

    before = _rss_kb("VmRSS")  # both growths are from here, after the warm-up

    def peak_growth_mb(job: Any) -> tuple[float, float]:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        started = time.perf_counter()
        persist(job)
        return (_rss_kb("VmHWM") - before) / 1024, time.perf_counter() - started

    one_file, _ = peak_growth_mb(_job(files_url, 1, size_mb * MB, f"{side}-one"))
    growth, seconds = peak_growth_mb(_job(files_url, files, size_mb * MB, side))
    return {"growth_mb": growth, "one_file_growth_mb": one_file, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-files", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--s3", default="")
    parser.add_argument("--files-url", default="")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.serve_files:
        serve_files()
    elif args.measure:
        print(json.dumps(measure(args.measure, args.files, args.size_mb, args.s3, args.files_url)))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            print(run(quick=args.quick, workdir=Path(tmp)))


if __name__ == "__main__":
    main()
