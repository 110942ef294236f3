"""A Prefect fleet on this machine: ``prefect server start`` (SQLite, or PostgreSQL
from `benchmarks.postgres`), process workers that can be SIGKILLed and restarted, and
helpers to wait on it. The same machinery as ``tests/test_distributed.py``, shared by
the chaos harness. Every process runs in its own session, logs to a file and is
stopped by `Processes.stop_all`, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from benchmarks.processes import reap_group

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fleet_env(home: Path, api_port: int, database_url: str | None) -> dict[str, str]:
    """The environment of every fleet process: its own Prefect home, the server on
    loopback, generous timeouts (a loaded 2-core box), no analytics."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEGNEXT_"))},
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{api_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "60",
        "PREFECT_CLIENT_MAX_RETRIES": "10",
        "PREFECT_API_REQUEST_TIMEOUT": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    if database_url is not None:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


class Processes:
    """Background processes in their own sessions, each logging to ``{name}.log``."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(args), cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.running.append((name, process))
        return process

    def run(self, *args: str, cwd: Path = ROOT, timeout: float = 300) -> str:
        result = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def kill(self, process: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL a process and everything it started (its flow-run processes run in
        sessions of their own), with no chance to clean up: what a lost machine looks
        like to the fleet. Returns the pids killed."""
        pids = [process.pid, *descendants(process.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return pids

    def stop_all(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, process in self.running:
            # A flow-run process may outlive its worker in the same session: reaped too.
            reap_group(process, max(0.1, deadline - time.monotonic()))

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def flow_run_processes(worker_pid: int) -> set[str]:
    """The ids of the flow runs with a live process under the worker `worker_pid` (read
    from each process's environment in /proc)."""
    runs = set()
    for pid in descendants(worker_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                runs.add(item.split(b"=", 1)[1].decode())
    return runs


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purpose.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def wait_for_api(processes: Processes, api_url: str, timeout: float = 300) -> None:
    """Wait until the Prefect server answers /health (~20 s here with SQLite, longer
    with PostgreSQL's first migrations or a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the Prefect server did not answer /health:\n" + processes.logs())
        time.sleep(1)


def start_server(processes: Processes) -> None:
    """``prefect server start`` on the port of ``PREFECT_API_URL``, then wait for it."""
    api_url = processes.env["PREFECT_API_URL"]
    port = api_url.rsplit(":", 1)[1].split("/")[0]
    processes.start("server", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                    "--port", port)  # fmt: skip
    wait_for_api(processes, api_url)


def start_worker(processes: Processes, name: str, pool: str, limit: int) -> subprocess.Popen[bytes]:
    return processes.start(
        name, str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name,
        "--limit", str(limit),
    )  # fmt: skip


@contextlib.contextmanager
def running_server(home: Path) -> Iterator[Processes]:
    """A ``prefect server start`` (SQLite) on a free loopback port with its own `home`,
    and every process started through it, stopped at the end, also on failure."""
    processes = Processes(home, fleet_env(home, free_port(), None))
    try:
        start_server(processes)
        yield processes
    finally:
        processes.stop_all()
