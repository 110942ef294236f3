"""What the cost scenarios (``bench_overhead``, ``bench_utilisation``, ``bench_callbacks``)
run against: the Legnext simulator on loopback, moto's S3 server behind a counting proxy
(every S3 call of a run is counted by HTTP method at a real endpoint), and a running
``prefect server start``. A scenario runs its measured part in a child interpreter
(`run_child`, its command line `child_main`) whose environment points at that server and
at the stack, so Prefect is configured before it is imported and nothing leaks into the
runner's process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.benchkit import Outcome
from benchmarks.chaos_s3 import S3ChaosProxy
from benchmarks.fleet import BIN, ROOT, Processes, fleet_env, free_port, start_server

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


def child_main(
    doc: str,
    run: Callable[..., Outcome],
    child: Callable[[argparse.Namespace], dict[str, Any]],
    **options: float | Path | None,
) -> None:
    """The command line of a scenario measured in a child interpreter: ``--child``
    measures and prints its JSON (`run_child` reads it), otherwise the scenario runs
    whole (``--quick`` for its short form). Each of `options` becomes ``--name`` with
    that default (a None default takes a path)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    for name, default in options.items():
        kind = Path if default is None else type(default)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(run(quick=args.quick, workdir=Path(tmp)), file=sys.stdout)


@dataclass(frozen=True)
class SimulatorSettings:
    time_scale: float
    concurrency: int


@dataclass
class RemoteSimulator:
    """The simulator in a process of its own (``prefect-legnext simulator``)."""

    base_url: str
    api_key: str
    config: SimulatorSettings

    def stats(self) -> dict[str, Any]:
        import httpx

        answer: dict[str, Any] = httpx.get(f"{self.base_url}/_sim/stats", timeout=60).json()
        return answer

    def jobs(self) -> list[dict[str, Any]]:
        import httpx

        answer: list[dict[str, Any]] = httpx.get(f"{self.base_url}/_sim/jobs", timeout=60).json()
        return answer


@dataclass
class Stack:
    """The simulator and moto's S3 server (each in a process of its own, as Legnext and
    S3 are elsewhere: they take no CPU time from the measured interpreter's threads)
    and the counting proxy in front of S3 (in the measured process, for both sides)."""

    sim: RemoteSimulator
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


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own console scripts
        list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def _simulator(time_scale: float, concurrency: int) -> tuple[subprocess.Popen[str], str, str]:
    key = secrets.token_hex(16)
    process = _popen(
        str(BIN / "prefect-legnext"), "simulator", "--port", "0", "--api-key", key,
        "--time-scale", str(time_scale), "--concurrency", str(concurrency),
        "--points", str(10**9),
    )  # fmt: skip
    assert process.stdout is not None
    for _ in range(20):  # the address is on one of its first lines
        found = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
        if found:
            return process, found.group(0), key
    _stop(process)
    raise RuntimeError("the simulator did not say its address")


@contextlib.contextmanager
def stack(time_scale: float, concurrency: int = 6) -> Iterator[Stack]:
    """Start the simulator (a random key, points for any run), moto's S3 server and the
    proxy; stop them after."""
    from prefect_legnext.simulator.s3 import LocalS3Server

    sim_process, base_url, key = _simulator(time_scale, concurrency)
    proxy: S3ChaosProxy | None = None
    try:
        with moto_server() as s3_url:
            s3 = LocalS3Server()
            s3.endpoint_url = s3_url
            created = s3.create_bucket()
            proxy = S3ChaosProxy(s3.endpoint_url)
            bucket = s3.bucket_block(created.bucket_name)
            bucket.credentials.aws_client_parameters.endpoint_url = proxy.endpoint_url
            sim = RemoteSimulator(base_url, key, SimulatorSettings(time_scale, concurrency))
            yield Stack(sim=sim, proxy=proxy, bucket=bucket)
    finally:
        if proxy is not None:
            proxy.stop()
        _stop(sim_process)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server in a process of its own; its endpoint URL."""
    port = free_port()
    moto = _popen(str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url)
        yield url
    finally:
        _stop(moto)


def wait_for_http(url: str, timeout: float = 120.0) -> None:
    """Until `url` answers anything over HTTP."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=5)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout:g} s")
        time.sleep(0.3)
