"""The user-facing commands as a user runs them: ``prefect-legnext demo``, ``chain`` and
``batch``, each a real process with Prefect's temporary server, the embedded simulator
and a local S3 server, output to pipes (as in a log) at 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from cli_support import cli_env, cpu_burners, prefect_database_in, run_cli

ACTIONS = ("diffusion", "enhance", "inpaint", "retexture")
SHORT_ID = r"[0-9a-f]{8}"
FULL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

pytestmark = pytest.mark.timeout(900)


def assert_clean(output: str) -> None:
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert "INFO" not in output and "ERROR" not in output, output  # no server or run noise


def test_demo_runs_offline_and_reads_well_in_80_columns(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    result = run_cli("demo", cwd=tmp_path, env=cli_env(home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result.stdout + result.stderr)
    assert "…" not in result.stdout + result.stderr  # nothing cut short
    table = [line for line in result.stdout.splitlines() if re.match(r"^\s+\d\s+[a-z]", line)]
    assert len(table) == 4, result.stdout
    for number, (action, row) in enumerate(zip(ACTIONS, table, strict=True), start=1):
        assert re.match(rf"^\s+{number}\s+{action}\s+{SHORT_ID}\s+\d+\s", row), row
        assert not re.search(FULL_ID, row)  # full ids are in the sidecars and the JSON
        assert f"step {number} {action:<9} submitted" in result.stdout
        assert f"step {number} {action:<9} persisted" in result.stdout
    for line in result.stdout.splitlines():
        assert len(line) <= 80 or line.lstrip().startswith("s3://"), line
    assert len(re.findall(r"^  s3://legnext-demo/legnext/\S+\.png$", result.stdout, re.M)) == 16
    assert "total points: 360" in result.stdout
    sheet = Image.open(tmp_path / "demo-output" / "contact-sheet.png")
    assert sheet.size == (4 * 192, 4 * 192)
    assert prefect_database_in(home) == []  # the demo's Prefect lived in its own home


def test_chain_offline_ignores_the_users_own_settings(tmp_path: Path) -> None:
    """--offline runs on blocks it saves in a temporary Prefect home: the user's
    LEGNEXT_* and AWS_* variables (bogus here) are neither used nor shown, and their
    own Prefect home is left alone."""
    home = tmp_path / "user-home"
    bogus = {
        "LEGNEXT_API_KEY": "lgx-users-own-key-do-not-use-4242",
        "LEGNEXT_BASE_URL": "http://127.0.0.1:9",
        "LEGNEXT_POLL_SCALE": "50",
        "LEGNEXT_S3_BUCKET": "users-own-bucket",
        "LEGNEXT_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAUSERSOWNKEY",
        "AWS_SECRET_ACCESS_KEY": "users-own-secret",
        "AWS_SESSION_TOKEN": "users-own-token",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    result = run_cli(
        "chain", "a glass tower", "--offline", "--steps", "diffusion,inpaint",
        "--mask-rect", "0.1,0.2,0.3,0.4", cwd=tmp_path, env=cli_env(home, **bogus),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert_clean(output)
    for secret in ("lgx-users-own-key-do-not-use-4242", "users-own-secret", "users-own-token"):
        assert secret not in output
    assert re.search(rf"^step 1 diffusion submitted {SHORT_ID}  \d+ points$", result.stdout, re.M)
    assert re.search(rf"^step 2 inpaint   waiting   {SHORT_ID}  \w+", result.stdout, re.M)
    assert re.search(rf"^step 2 inpaint   persisted {SHORT_ID}", result.stdout, re.M)
    assert result.stdout.count("/job.json") == 2
    assert "users-own-bucket" not in output
    assert prefect_database_in(home) == []
    assert sorted(p.name for p in home.iterdir()) == []


def test_chain_offline_on_a_busy_machine(tmp_path: Path) -> None:
    """Both cores busy: Prefect's 20 s default start-up wait is not enough here, the
    command's is."""
    with cpu_burners():
        result = run_cli(
            "chain", "a heron", "--offline", "--steps", "diffusion",
            cwd=tmp_path, env=cli_env(tmp_path / "home"), timeout=840,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result.stdout + result.stderr)
    assert re.search(r"^step 1 diffusion persisted", result.stdout, re.M)
    assert re.search(r"^total points: \d+$", result.stdout, re.M)


def test_chain_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "chain", "a tower", "--offline", "--max-points", "100",
        cwd=tmp_path, env=cli_env(tmp_path / "home"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the run costs 360 points, above max_points=100; nothing was submitted"
    )
    assert result.stdout == ""


def test_batch_command(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\n\na heron\n")
    result = run_cli(
        "batch", "a lynx", "--file", str(prompts), "--steps", "diffusion", "--offline",
        cwd=tmp_path, env=cli_env(tmp_path / "home"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result.stdout + result.stderr)
    assert "3/3" in result.stdout
    for chain in (1, 2, 3):
        assert re.search(rf"^\[{chain}\] step 1 diffusion persisted", result.stdout, re.M)
    assert "waiting" not in result.stdout  # a batch shows submits and results only
    assert result.stdout.count("/job.json") == 3
    assert "total points: 240" in result.stdout
    assert "…" not in result.stdout
