"""``prefect-legnext receiver`` as a user runs it: a real process on a free port, using
the session's Prefect server, answering a signed delivery; its secret never printed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cli_support import CLI, cli_env, one_error_line
from prefect_legnext.core.callbacks import CALLBACK_TAG, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = "whsec-cli-receiver-5b7a"


def _start(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """The command, against the session's Prefect server when there is one."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    environment = cli_env(home, **({"PREFECT_API_URL": str(api)} if api else {}), **env)
    return subprocess.Popen(
        [CLI, "receiver", "--port", "0", "--ledger-dir", str(home / "ledger"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip


def test_receiver_command_answers_and_stops_cleanly(
    prefect_server: None, tmp_path: Path, task_object: object
) -> None:
    process = _start(tmp_path, LEGNEXT_CALLBACK_SECRET=SECRET)
    try:
        assert process.stdout is not None
        # Both lines of the banner: what readline leaves in the pipe's buffer would be
        # missed by communicate(), which reads the file descriptor itself.
        line = process.stdout.readline() + process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        url = f"{match.group(0)}/cb"
        hook = {"endpoint": f"{url}?{CALLBACK_TAG}=no-such-key", "secret": ""}
        data = task_object(status="completed", config={"webhook_config": hook})  # type: ignore[operator]
        body = json.dumps({"timestamp": int(time.time() * 1000), "data": data}).encode()
        stamp = str(int(time.time() * 1000))
        headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body)}
        assert httpx.post(url, content=body, headers=headers, timeout=60).status_code == 200
        assert httpx.post(url, content=body, timeout=10).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "signatures checked" in line + stdout
    assert SECRET not in line + stdout + stderr
    assert "no-such-key has no record" in stderr  # the decisions are logged, one line each
    assert "?" not in stderr


def test_receiver_command_warns_when_exposed_without_a_secret(tmp_path: Path) -> None:
    # The warning comes before anything slow starts: read it, then end the process.
    process = _start(tmp_path, "--host", "0.0.0.0")  # noqa: S104 (the point of the test)
    try:
        assert process.stderr is not None
        warning = process.stderr.readline()
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert warning.startswith("warning: listening on 0.0.0.0 without a secret"), warning


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--secret", " "], "the callback secret (LEGNEXT_CALLBACK_SECRET or --secret) is empty"),
        (["--tolerance", "0"], "--tolerance must be above 0 seconds (got 0)"),
    ],
)
def test_receiver_command_refuses_bad_options(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [CLI, "receiver", "--port", "0", *args],
        capture_output=True, text=True, timeout=60, env=cli_env(tmp_path),
    )  # fmt: skip
    assert one_error_line(result) == message
