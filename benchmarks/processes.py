"""Ending the fleet's process groups (PostgreSQL, Prefect server, workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def reap_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for `process` (already signalled) up to `timeout`, then SIGKILL its process
    group; and SIGKILL the group anyway, since children in its session (a worker's
    flow runs, a postmaster's backends) may outlive it."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
