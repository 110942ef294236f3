"""The Prefect API a command runs its flows against: the configured server
(``PREFECT_API_URL``), or Prefect's temporary (ephemeral) server, started here.

Prefect starts its temporary server on first use and gives it
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (20 s by default) to answer: on a
busy machine that is not enough. `prefect_api` starts it first, with a generous
timeout unless the user set one, tries once more if the first start fails, sends the
server's own output to a log file (not the terminal) and stops it on exit. Prefect's
code that asks for the temporary server (``SubprocessASGIServer()``) finds this one.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from prefect_legnext.orchestration.errors import PrefectServerError

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import Settings

STARTUP_TIMEOUT_SECONDS = 180  # unless the user set PREFECT_SERVER_EPHEMERAL_STARTUP_...
STARTUP_ATTEMPTS = 2
PORT_RETRIES = 3  # uvicorn exits with 3 when its port was taken (or its start-up failed)
TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PORT_TAKEN = "error while attempting to bind"  # uvicorn's words when the port is in use
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")


def startup_timeout(settings: Settings | None = None) -> int:
    """Seconds to wait for the temporary server: the user's setting when set (in the
    environment or the profile), else the larger of Prefect's default and ours."""
    from prefect.settings import get_current_settings

    ephemeral = (settings or get_current_settings()).server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return int(ephemeral.startup_timeout_seconds)
    return max(STARTUP_TIMEOUT_SECONDS, int(ephemeral.startup_timeout_seconds))


def local_database(settings: Settings | None = None) -> Path | None:
    """The SQLite file of the temporary server; None when the database is not a SQLite
    file (PostgreSQL, or SQLite in memory)."""
    from prefect.settings import get_current_settings

    url = (settings or get_current_settings()).server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    scheme, sep, rest = text.partition(":///")
    if not sep or not scheme.startswith("sqlite") or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def blocks_may_exist() -> bool:
    """False when no saved block can exist, known without starting anything: no
    ``PREFECT_API_URL`` and no temporary server's database file yet."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return True
    database = local_database(settings)
    if database is not None:
        return database.exists()
    url = settings.server.database.connection_url
    return ":memory:" not in (url.get_secret_value() if url is not None else "")


def needs_temporary_server() -> bool:
    """True when flows here would run against Prefect's temporary server."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and bool(settings.server.ephemeral.enabled)


@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """Make sure the flows run in this block have a Prefect API.

    With ``PREFECT_API_URL`` set (or the temporary server disabled) this does nothing
    and yields None. Otherwise it starts the temporary server (with the current
    settings: `PREFECT_HOME`, database) and yields its API URL; the server is stopped,
    after Prefect's log and event workers are drained, on exit.

    Raises:
        PrefectServerError: the server did not start, twice.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    from prefect.settings.context import temporary_settings

    if not needs_temporary_server():
        check_configured_api()
        yield None
        return
    timeout = startup_timeout()
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout}):
        server = start_temporary_server(timeout)
        instances: dict[Any, SubprocessASGIServer] = SubprocessASGIServer._instances
        prior = instances.get(None)
        instances[None] = server  # what get_client() and Prefect's workers ask for
        try:
            yield server.api_url
        finally:
            _drain_workers()
            server.stop()
            if prior is not None:
                instances[None] = prior
            else:
                instances.pop(None, None)
            _remove_log(server)


def check_configured_api() -> None:
    """With ``PREFECT_API_URL`` set, make sure it answers before any flow starts.

    Raises:
        PrefectServerError: it does not, with the reason (never the URL's credentials).
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return
    try:
        with get_client(sync_client=True) as client:
            problem: BaseException | None = client.api_healthcheck()
    except (httpx.HTTPError, RuntimeError) as exc:
        problem = exc
    if problem is not None:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise PrefectServerError(
            f"cannot reach the Prefect API at {shown_url(url)} ({reason}): start that "
            "server or fix PREFECT_API_URL (unset it to use a temporary local server)"
        )


def shown_url(url: str) -> str:
    """`url` without the credentials it may carry."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
    return urlunsplit(parts)


def start_temporary_server(timeout: int) -> SubprocessASGIServer:
    """Start Prefect's temporary server and wait for it, trying twice.

    Raises:
        PrefectServerError: neither attempt answered within `timeout` seconds.
    """
    logs: list[Path] = []
    problem = ""
    for _ in range(STARTUP_ATTEMPTS):
        server, problem = _start_once(timeout)
        logs.append(server._legnext_log)  # type: ignore[attr-defined]
        if server.running:
            for log in logs[:-1]:
                log.unlink(missing_ok=True)
            return server
    for log in logs[:-1]:
        log.unlink(missing_ok=True)
    raise PrefectServerError(
        f"Prefect's temporary server did not start ({STARTUP_ATTEMPTS} tries): {problem}; "
        "to use a running Prefect server instead, set PREFECT_API_URL"
    )


def _start_once(timeout: int) -> tuple[SubprocessASGIServer, str]:
    """One start: the server, running, or stopped with the reason it failed."""
    from prefect.server.api.server import SubprocessASGIServer

    fd, log_name = tempfile.mkstemp(prefix="prefect-legnext-server-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    server = SubprocessASGIServer(port=_free_port())
    server._legnext_log = log  # type: ignore[attr-defined]
    try:
        problem = _wait_for(server, log, timeout)
    except BaseException:
        server.stop()
        raise
    if problem:
        server.stop()
    return server, problem


def _wait_for(server: SubprocessASGIServer, log: Path, timeout: int) -> str:
    """Launch `server` and wait until it answers: "" then, else why it did not."""
    deadline = time.monotonic() + timeout
    offset = _launch(server, log)
    launches = 1
    with httpx.Client(timeout=10) as client:
        while True:
            assert server.server_process is not None
            code = server.server_process.poll()
            if code is not None:
                output = _read_from(log, offset)
                if code == 3 and PORT_TAKEN in output and launches <= PORT_RETRIES:
                    server.port = server.find_available_port()
                    offset = _launch(server, log)
                    launches += 1
                    continue
                return f"it exited with code {code}{_reason(output)} (log: {log})"
            try:
                if client.get(f"{server.api_url}/health").status_code == 200:
                    return ""
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                return f"no answer within {timeout} s (raise {TIMEOUT_SETTING})"
            time.sleep(0.2)


def _launch(server: SubprocessASGIServer, log: Path) -> int:
    """Start the server's process with its stdout and stderr in `log` (the child
    inherits file descriptors 1 and 2, pointed at the log while it is created); the
    log's size before, where this launch's output starts."""
    offset = log.stat().st_size
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with log.open("ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            server.server_process = server._run_uvicorn_command()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    server.running = True
    atexit.register(server.stop)
    return offset


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_from(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _reason(output: str) -> str:
    """``" (<the error the server gave up on>)"``, or nothing: the last line naming an
    exception, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if EXCEPTION_LINE.match(line)]
    chosen = (errors or lines or [""])[-1][:200]
    return f" ({chosen})" if chosen else ""


def _remove_log(server: SubprocessASGIServer) -> None:
    log = getattr(server, "_legnext_log", None)
    if isinstance(log, Path):
        log.unlink(missing_ok=True)


def _drain_workers() -> None:
    """Send what Prefect's log and event workers hold before the server stops, so
    nothing reports a lost connection at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # never started
            logs = APILogWorker.instance().drain()
            if inspect.isawaitable(logs):
                await logs
        events = EventsWorker.drain_all()
        if inspect.isawaitable(events):
            await events

    with contextlib.suppress(Exception):
        run_coro_as_sync(drain())
