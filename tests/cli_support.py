"""Running ``prefect-legnext`` as a user does: a real process, a clean environment; or,
for commands that end before anything starts, the same `main()` in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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


def run_in_process(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`run_cli` without a new interpreter (~3 s of imports each): the command's
    ``main()`` here, with `env` as the whole environment, Prefect's settings read from it
    as a fresh process would, stdout and stderr captured. For commands that must end
    before anything slow starts: Prefect's temporary server, a simulator or a local S3
    server starting here fails the command (`ServerStarted`), which a test then sees."""
    import io
    import logging

    from prefect.context import SettingsContext, get_settings_context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import Settings

    from prefect_legnext import cli, prefect_api, simulator
    from prefect_legnext.simulator import LegnextSimulator
    from prefect_legnext.simulator.s3 import LocalS3Server

    def refuse(*_: object, **__: object) -> None:
        raise ServerStarted("a server was started before the command ended")

    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name not in env]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        patch.setattr(sys, "argv", [CLI, *args])
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        patch.setattr(prefect_api, "start_temporary_server", refuse)
        patch.setattr(SubprocessASGIServer, "start", refuse)
        patch.setattr(LegnextSimulator, "start", refuse)
        patch.setattr(LocalS3Server, "start", refuse)
        patch.setattr(simulator, "serve", refuse)  # the simulator command's server
        # The flow commands quiet Prefect's console handlers (for the process): undone.
        loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        handlers = {h: h.level for log in loggers for h in getattr(log, "handlers", [])}
        try:
            with SettingsContext(profile=get_settings_context().profile, settings=Settings()):
                cli.main()
        except SystemExit as exit_:
            code = exit_.code
        finally:
            for handler, level in handlers.items():
                handler.setLevel(level)
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess([CLI, *args], returncode, out.getvalue(), err.getvalue())


class ServerStarted(AssertionError):
    """Raised by `run_in_process` when the command started a server."""
