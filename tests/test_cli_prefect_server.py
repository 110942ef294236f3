"""Prefect's temporary server as the commands start it: a generous start-up timeout
unless the user set one, one retry, a failure in one line, and offline runs in a
temporary Prefect home whose saved blocks the flows use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
    PREFECT_UI_URL,
    Settings,
    get_current_settings,
    temporary_settings,
)

from cli_support import cli_env, one_error_line, prefect_database_in, run_cli
from prefect_legnext import prefect_api
from prefect_legnext.orchestration.errors import PrefectServerError
from prefect_legnext.prefect_api import blocks_may_exist, startup_timeout


def test_the_start_up_timeout_is_raised_unless_the_user_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    assert startup_timeout(Settings()) == prefect_api.STARTUP_TIMEOUT_SECONDS >= 120
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    assert startup_timeout(Settings()) == 7


class FakeServer:
    def __init__(self, running: bool, log: Path) -> None:
        self.running = running
        # A throwaway file: the start deletes the logs of failed tries (never os.devnull,
        # which a test run as root would delete for the whole machine).
        log.write_text("")
        self._legnext_log = log


def test_a_failed_start_is_retried_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outcomes = [
        (FakeServer(False, tmp_path / "1.log"), "no answer within 180 s"),
        (FakeServer(True, tmp_path / "2.log"), ""),
    ]
    monkeypatch.setattr(prefect_api, "_start_once", lambda timeout: outcomes.pop(0))
    server: Any = prefect_api.start_temporary_server(180)
    assert server.running and outcomes == []
    # the failed try's log is removed, the running server's is kept
    assert not (tmp_path / "1.log").exists() and (tmp_path / "2.log").exists()


def test_two_failed_starts_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []

    def fail(timeout: int) -> tuple[FakeServer, str]:
        calls.append(timeout)
        return FakeServer(
            False, tmp_path / f"{len(calls)}.log"
        ), f"no answer within {timeout} s (raise THE_SETTING)"

    monkeypatch.setattr(prefect_api, "_start_once", fail)
    with pytest.raises(PrefectServerError) as caught:
        prefect_api.start_temporary_server(180)
    assert calls == [180, 180]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.log"]  # the last one is kept
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Prefect's temporary server did not start (2 tries): no answer")
    assert "PREFECT_API_URL" in message


def test_blocks_can_only_exist_with_a_server_or_a_database(tmp_path: Path) -> None:
    with temporary_settings(
        updates={PREFECT_HOME: str(tmp_path)},
        restore_defaults={PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL},
    ):
        assert prefect_api.local_database() == tmp_path / "prefect.db"
        assert not blocks_may_exist()
        (tmp_path / "prefect.db").touch()
        assert blocks_may_exist()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert blocks_may_exist()


def test_a_server_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    """A database path under a regular file: the server can never start (the real
    start, with its retry, in a real process)."""
    (tmp_path / "a-file").write_text("")
    env = cli_env(
        tmp_path / "home",
        LEGNEXT_API_KEY="lgx-key-for-a-server-that-fails",
        LEGNEXT_S3_BUCKET="outputs",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/a-file/x.db",
        TMPDIR=str(tmp_path),  # where the server's log goes
    )
    result = run_cli("chain", "a tower", "--steps", "diffusion", cwd=tmp_path, env=env)
    line = one_error_line(result)
    assert result.returncode == 1
    assert line.startswith("Prefect's temporary server did not start (2 tries): it exited")
    assert "unable to open database file" in line
    assert "PREFECT_API_URL" in line
    assert len(list(tmp_path.glob("prefect-legnext-server-*.log"))) == 1  # kept, named
    assert result.stdout == ""


def test_offline_environment_runs_prefect_in_a_temporary_home(tmp_path: Path) -> None:
    """The temporary server keeps its database in the temporary home and holds the
    saved blocks; the process's environment and settings are as before, after."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect_aws import S3Bucket

    from prefect_legnext.demo import offline_environment
    from prefect_legnext.orchestration.blocks import LegnextCredentials

    environment = dict(os.environ)
    settings = get_current_settings()
    default_server = SubprocessASGIServer._instances.get(None)
    with temporary_settings(updates={PREFECT_UI_URL: "http://ui.test"}):
        with offline_environment(time_scale=0.5) as services:
            home = services.prefect_home
            assert get_current_settings().home == home
            assert PREFECT_API_URL.value() is None and PREFECT_UI_URL.value() is None
            assert prefect_database_in(home), "the server's database is not in the home"
            server = SubprocessASGIServer._instances[None]
            assert server.api_url == services.prefect_api_url
            assert server.server_process is not None
            server_env = Path(f"/proc/{server.server_process.pid}/environ").read_bytes()
            assert f"PREFECT_HOME={home}".encode() in server_env.split(b"\0")
            credentials = LegnextCredentials.load(services.credentials_block)
            assert credentials.base_url == services.legnext_url
            assert credentials.poll_scale == 0.5
            bucket = S3Bucket.load(services.storage_block)
            assert bucket.bucket_name == "legnext-demo"
            endpoint = bucket.credentials.aws_client_parameters.endpoint_url
            assert endpoint == services.s3_url
            assert bucket.credentials.get_s3_client().list_objects_v2(Bucket="legnext-demo")
        assert dict(os.environ) == environment
        assert not home.exists()
        assert server.server_process is None  # stopped
    assert SubprocessASGIServer._instances.get(None) is default_server
    assert get_current_settings() == settings
