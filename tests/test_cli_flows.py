"""The user-facing commands as a user runs them: ``prefect-legnext demo``, ``chain`` and
``batch``, each a real process with Prefect's ephemeral server, the embedded simulator
and a local S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

CLI = str(Path(sys.executable).with_name("prefect-legnext"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGNEXT_", "PREFECT_"))}
    env["COLUMNS"] = "120"
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def test_demo_runs_offline_and_cleanly(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "CancelledError" not in output
    assert "INFO" not in output and "ERROR" not in output  # no server or run noise
    for action in ("diffusion", "enhance", "inpaint", "retexture"):
        assert action in result.stdout
    assert result.stdout.count("s3://legnext-demo/legnext/") == 16
    assert "total points: 360" in result.stdout
    sheet = Image.open(tmp_path / "demo-output" / "contact-sheet.png")
    assert sheet.size == (4 * 192, 4 * 192)


def test_chain_command_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    result = run("chain", "a tower", "--offline", "--max-points", "100", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the run costs 360 points, above max_points=100; nothing was submitted"
    )
    assert result.stdout == ""


def test_batch_command(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\n\na heron\n")
    result = run("batch", "a lynx", "--file", str(prompts), "--steps", "diffusion",
                 "--offline", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3" in result.stdout
    assert result.stdout.count("/job.json") == 3
    assert "total points: 240" in result.stdout
    assert "Traceback" not in result.stderr
