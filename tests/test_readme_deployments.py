"""The README's "Deployments and workers" section works when followed literally, and
``prefect-legnext setup`` refuses a temporary server; the docs name the same blocks.

The slow test runs the commands of the section's bash block, as written, against a
real ``prefect server start``. Only two things differ from a user's machine: the server
listens on a free port instead of 4200 (``PREFECT_SERVER_API_PORT``, and ``4200`` in the
commands is replaced by that port), and before the workers start, the blocks the
section saved are pointed at the offline simulator and a local S3 server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from benchmarks.fleet import BIN, ROOT, Processes, free_port, wait_for_api
from prefect_aws import S3Bucket

from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.resolve import DEFAULT_CREDENTIALS_BLOCK, DEFAULT_STORAGE_BLOCK
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from test_distributed import _stored_outputs

README = ROOT / "README.md"
SECTION = "## Deployments and workers"
README_PORT = "4200"
TIME_SCALE = 0.02
BASH = shutil.which("bash") or "/bin/bash"


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def readme_commands() -> list[str]:
    """The commands of the section's first bash block, comments and blank lines dropped,
    a here-document kept with its command."""
    body = section(README.read_text(), SECTION)
    match = re.search(r"```bash\n(.*?)```", body, re.DOTALL)
    assert match, f"no bash block in {SECTION!r}"
    commands: list[str] = []
    lines = iter(match.group(1).splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if heredoc:
            document = [line]
            for more in lines:
                document.append(more)
                if more.strip() == heredoc.group(1):
                    break
            line = "\n".join(document)
        commands.append(line)
    return commands


def clean_env(home: Path) -> dict[str, str]:
    """A fresh machine: no Prefect, Legnext or AWS settings, Prefect's home in `home`."""
    inherited = ("PREFECT_", "LEGNEXT_", "AWS_")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(inherited)},
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


def setup_command(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "prefect-legnext"), "setup"], env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_setup_refuses_a_temporary_server_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    result = setup_command(clean_env(home))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("error: no Prefect server configured")
    assert "prefect server start" in message and "PREFECT_API_URL=" in message
    # No temporary server was started: it would have created its database.
    assert not list(tmp_path.rglob("*.db"))


def test_setup_names_an_unreachable_server_in_one_line(tmp_path: Path) -> None:
    api_url = f"http://127.0.0.1:{free_port()}/api"
    result = setup_command({**clean_env(tmp_path), "PREFECT_API_URL": api_url})
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"error: cannot reach the Prefect server at {api_url}")
    assert "registered" not in result.stdout


@pytest.mark.usefixtures("prefect_server")
def test_setup_refuses_a_named_credentials_block_that_does_not_exist(tmp_path: Path) -> None:
    """Only the default name may be missing (then the limit is Legnext's cap, 6); a name
    given on purpose must exist, and nothing on the server changes before that is known."""
    from prefect.settings import PREFECT_API_URL

    env = {**clean_env(tmp_path), "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [str(BIN / "prefect-legnext"), "setup", "--credentials-block", "no-such-block",
         "--work-pool", ""],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "'no-such-block'" in message, message
    assert f"Prefect server: {env['PREFECT_API_URL']}" in result.stdout
    assert "registered" not in result.stdout


def test_the_section_runs_the_blocks_setup_deploy_worker_order() -> None:
    """Cheap guard for the slow test: the steps a fresh machine needs, in order."""
    commands = readme_commands()
    order = [
        "prefect server start",
        "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api",
        '.save("legnext"',
        '.save("legnext-outputs"',
        "prefect-legnext setup",
        "prefect --no-prompt deploy --all",
        "prefect worker start --pool legnext-process",
        "prefect deployment run 'legnext-chain/legnext-chain'",
    ]
    script = "\n".join(commands)
    positions = [script.find(step) for step in order]
    assert -1 not in positions, dict(zip(order, positions, strict=True))
    assert positions == sorted(positions)


def _api(api_url: str) -> AbstractContextManager[Any]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


def _run_script(commands: list[str], env: dict[str, str], timeout: float) -> str:
    """Run `commands` in one shell, as typed in one terminal; stop at the first failure."""
    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    result = subprocess.run(
        [BASH, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture
def readme_machine(tmp_path: Path) -> Iterator[tuple[Processes, str]]:
    """The fresh machine's processes (server, workers), all stopped at the end."""
    port = str(free_port())
    env = {
        **clean_env(tmp_path / "prefect-home"),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": port,
        # As in test_distributed: SQLite on a busy 2-core machine, let writes wait.
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "60",
        "PREFECT_CLIENT_MAX_RETRIES": "10",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    (tmp_path / "prefect-home").mkdir()
    processes = Processes(tmp_path, env)
    try:
        yield processes, port
    finally:
        processes.stop_all()


@pytest.mark.distributed
@pytest.mark.timeout(900)
def test_readme_deployments_section_works_as_written(
    readme_machine: tuple[Processes, str],
    legnext_simulator_factory: Any,
    local_s3_server: LocalS3Server,
) -> None:
    from prefect.client.orchestration import get_client

    machine, port = readme_machine
    commands = [command.replace(f":{README_PORT}/", f":{port}/") for command in readme_commands()]
    server, *rest = commands
    assert server == "prefect server start"
    (worker_at,) = [i for i, c in enumerate(rest) if c.startswith("prefect worker start")]
    prepare, worker, run = rest[:worker_at], rest[worker_at], rest[worker_at + 1 :]
    api_url = f"http://127.0.0.1:{port}/api"

    # Terminal 1.
    machine.start("server", BASH, "-c", server)
    wait_for_api(machine, api_url, timeout=180)

    # Terminal 2: profile, blocks, setup, deploy. `setup` says which server it prepared.
    out = _run_script(prepare, machine.env, timeout=300)
    assert f"Prefect server: {api_url}" in out, out
    assert "work pool legnext-process: created" in out, out
    with _api(api_url), get_client(sync_client=True) as client:
        assert client.read_work_pool("legnext-process").type == "process"
        client.read_deployment_by_name("legnext-chain/legnext-chain")
        # The section saved both blocks under the names the deployments use.
        saved = LegnextCredentials.load(DEFAULT_CREDENTIALS_BLOCK)
        assert isinstance(saved, LegnextCredentials)
        assert isinstance(S3Bucket.load(DEFAULT_STORAGE_BLOCK), S3Bucket)

        # Offline stand-ins for Legnext and the bucket, under the same names.
        sim: LegnextSimulator = legnext_simulator_factory(time_scale=TIME_SCALE)
        LegnextCredentials(api_key=sim.api_key, base_url=sim.base_url, poll_scale=TIME_SCALE).save(
            DEFAULT_CREDENTIALS_BLOCK, overwrite=True
        )
        bucket = local_s3_server.create_bucket()
        bucket.save(DEFAULT_STORAGE_BLOCK, overwrite=True)

    # Terminal 3, then terminal 2 again: `--watch` exits 0 only for a completed run.
    machine.start("worker", BASH, "-c", worker)
    started = time.monotonic()
    out = _run_script(run, machine.env, timeout=420)
    assert "Completed" in out, out + machine.logs()

    stats = sim.stats()
    assert stats["jobs_by_status"] == {"completed": 4}, stats
    assert stats["duplicate_creates"] == 0
    job_ids = {job["job_id"] for job in sim.jobs()}
    assert _stored_outputs(bucket, "legnext/daily", job_ids) == 4 * 4
    assert time.monotonic() - started < 420


def test_docs_name_the_default_blocks() -> None:
    """Every block name the README and docs load, save or pass as a flow parameter is
    one of the two defaults, with the right type."""
    expected = {
        DEFAULT_CREDENTIALS_BLOCK: "LegnextCredentials",
        DEFAULT_STORAGE_BLOCK: "S3Bucket",
    }
    pattern = re.compile(
        r"(\w+)\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*\.\s*save\(\s*[\"']([\w-]+)[\"']"
        r"|(\w+)\.load\(\s*[\"']([\w-]+)[\"']\)"
        r"|(credentials|storage)_block\s*[=:]\s*[\"']?([\w-]+)"
    )
    files = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "deployments/prefect.yaml"]
    seen: set[tuple[str, str]] = set()
    for path in files:
        text = path.read_text()
        for match in pattern.finditer(text):
            saved_type, saved_name, loaded_type, loaded_name, kind, param = match.groups()
            where = f"{path.relative_to(ROOT)}: {match.group(0)!r}"
            if kind:
                want = DEFAULT_CREDENTIALS_BLOCK if kind == "credentials" else DEFAULT_STORAGE_BLOCK
                assert param == want, where
                continue
            block_type, name = (
                (saved_type, saved_name) if saved_name else (loaded_type, loaded_name)
            )
            if name == "BLOCK_NAME":
                continue
            assert expected.get(name) == block_type, where
            seen.add((block_type, name))
    assert seen == {("LegnextCredentials", "legnext"), ("S3Bucket", "legnext-outputs")}
