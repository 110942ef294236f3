"""Running ``prefect-legnext`` as a user does: a real process, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLI = str(Path(sys.executable).with_name("prefect-legnext"))
# The commands' own budgets (Prefect's server waits up to 180 s on a busy machine).
COMMAND_TIMEOUT = 600


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with nothing configured: no LEGNEXT_*, PREFECT_* or AWS_*
    variables, an empty Prefect home of their own, an 80-column terminal."""
    prefixes = ("LEGNEXT_", "PREFECT_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    home.mkdir(parents=True, exist_ok=True)
    env.update(PREFECT_HOME=str(home), COLUMNS="80")
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run the command with stdout and stderr pipes (not a terminal)."""
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line a user mistake ends with (asserted), without its
    prefix."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def prefect_database_in(home: Path) -> list[Path]:
    """Database files a Prefect server left in `home` (none: no server used it)."""
    return sorted(home.glob("prefect.db*"))


@contextmanager
def cpu_burners(count: int | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes spinning on every core (at normal priority) until the block ends."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(count or max(2, os.cpu_count() or 2))
    ]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(timeout=30)
