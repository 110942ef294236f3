"""What the cost scenarios (``bench_overhead``, ``bench_utilisation``) run against: the
Legnext simulator on loopback, moto's S3 server behind a counting proxy (every S3 call
of a run is counted by HTTP method at a real endpoint), and a running ``prefect server
start``. A scenario runs its measured part in a child interpreter (`run_child`) whose
environment points at that server and at the stack, so Prefect is configured before
it is imported and nothing leaks into the runner's process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_s3 import S3ChaosProxy
from benchmarks.fleet import ROOT, Processes, fleet_env, free_port, start_server

# A running server given from outside (the test session's, or one a person keeps up).
ENV_PREFECT_API = "LEGNEXT_BENCH_PREFECT_API_URL"
CHILD_TIMEOUT = 1500.0  # seconds; a loaded 2-core machine, never a library default


@contextlib.contextmanager
def prefect_server(workdir: Path) -> Iterator[str]:
    """The API URL of a running Prefect server: ``LEGNEXT_BENCH_PREFECT_API_URL`` when
    set, else a ``prefect server start`` (SQLite) of our own for the scenario, stopped
    after it (health waited for up to 300 s)."""
    given = os.environ.get(ENV_PREFECT_API)
    if given:
        yield given
        return
    logs = workdir / "prefect-server"
    logs.mkdir(parents=True, exist_ok=True)
    processes = Processes(logs, fleet_env(logs / "home", free_port(), None))
    try:
        start_server(processes)
        yield processes.env["PREFECT_API_URL"]
    finally:
        processes.stop_all()


def run_child(module: str, api_url: str, workdir: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m module --child ARGS`` against the server at `api_url`; its last
    stdout line is the JSON it measured."""
    home = workdir / f"{module.rsplit('.', 1)[-1]}-home"
    env = fleet_env(home, 0, None) | {"PREFECT_API_URL": api_url}
    result = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", module, "--child", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
    )  # fmt: skip
    (workdir / f"{module.rsplit('.', 1)[-1]}.log").write_text(result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@dataclass
class Stack:
    """The simulator, moto's S3 server and the counting proxy in front of it."""

    sim: Any
    s3: Any
    proxy: S3ChaosProxy
    bucket: Any

    def flow_env(self) -> dict[str, str]:
        """What the flows resolve their credentials and bucket from (the default block
        names, not saved: the environment)."""
        from prefect_legnext.simulator.s3 import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY

        return {
            "LEGNEXT_API_KEY": self.sim.api_key,
            "LEGNEXT_BASE_URL": self.sim.base_url,
            "LEGNEXT_POLL_SCALE": str(self.sim.config.time_scale),
            "LEGNEXT_CONCURRENT_JOBS": str(self.sim.config.concurrency),
            "LEGNEXT_S3_BUCKET": self.bucket.bucket_name,
            "LEGNEXT_S3_ENDPOINT_URL": self.proxy.endpoint_url,
            "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_KEY,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
        }


@contextlib.contextmanager
def stack(time_scale: float, concurrency: int = 6) -> Iterator[Stack]:
    """Start the simulator (a random key, points for any run) and S3 behind the proxy."""
    from prefect_legnext.simulator import LegnextSimulator
    from prefect_legnext.simulator.s3 import LocalS3Server

    with (
        LegnextSimulator(
            api_key=secrets.token_hex(16), time_scale=time_scale, concurrency=concurrency,
            points=10**9,
        ) as sim,
        LocalS3Server() as s3,
    ):  # fmt: skip
        proxy = S3ChaosProxy(s3.endpoint_url)
        try:
            created = s3.create_bucket()
            bucket = s3.bucket_block(created.bucket_name)
            bucket.credentials.aws_client_parameters.endpoint_url = proxy.endpoint_url
            yield Stack(sim=sim, s3=s3, proxy=proxy, bucket=bucket)
        finally:
            proxy.stop()
