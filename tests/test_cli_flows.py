"""The user-facing commands as a user runs them: ``prefect-legnext demo``, ``chain`` and
``batch``, each a real process with Prefect's temporary server, the embedded simulator
and a local S3 server, output to pipes (as in a log) at 80 columns. Each real run costs
a temporary Prefect server (~20-60 s here), so one run is checked several ways; a run
refused by the flow runs the same main() in this process, on the session's server."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from PIL import Image

from cli_support import CLI, cli_env, cpu_burners, prefect_database_in, run_cli, run_in_process
from prefect_legnext.simulator.s3 import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY

ACTIONS = ("diffusion", "enhance", "inpaint", "retexture")
SHORT_ID = r"[0-9a-f]{8}"
FULL_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

pytestmark = pytest.mark.timeout(900)


def assert_clean(output: str) -> None:
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert "INFO" not in output and "ERROR" not in output, output  # no server or run noise


class Lines:
    """Reads a pipe to its end in a thread; `seen` is set at the first line that starts
    with `until`, or at the end."""

    def __init__(self, pipe: IO[str] | None, until: str | None = None) -> None:
        assert pipe is not None
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.matched = threading.Semaphore(0)  # released at each line starting with `until`
        self.thread = threading.Thread(target=self._read, args=(pipe, until), daemon=True)
        self.thread.start()

    def _read(self, pipe: IO[str], until: str | None) -> None:
        for line in pipe:
            self.lines.append(line)
            if until is not None and line.startswith(until):
                self.seen.set()
                self.matched.release()
        self.seen.set()

    def text(self) -> str:
        self.thread.join(timeout=60)
        return "".join(self.lines)


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


def test_chain_offline_ignores_the_users_own_settings_on_a_busy_machine(
    tmp_path: Path,
) -> None:
    """--offline runs on blocks it saves in a temporary Prefect home: the user's
    LEGNEXT_* and AWS_* variables (bogus here) are neither used nor shown, and their
    own Prefect home is left alone. Both cores are busy until the first step is
    submitted (Prefect's temporary server has started by then): Prefect's 20 s default
    start-up wait is not enough here, the command's is. The run goes on at the
    machine's speed (busy to its end, it took twice as long)."""
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
    command = subprocess.Popen(
        [CLI, "chain", "a glass tower", "--offline", "--steps", "diffusion,inpaint",
         "--mask-rect", "0.1,0.2,0.3,0.4"],
        cwd=tmp_path, env=cli_env(home, **bogus), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = Lines(command.stdout, until="step 1 "), Lines(command.stderr)
    try:
        with cpu_burners():
            out.seen.wait(timeout=840)  # the first step's line, or the end of the output
        command.wait(timeout=840)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait(timeout=60)
    result = subprocess.CompletedProcess(command.args, command.returncode, out.text(), err.text())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert_clean(output)
    for secret in ("lgx-users-own-key-do-not-use-4242", "users-own-secret", "users-own-token"):
        assert secret not in output
    assert re.search(rf"^step 1 diffusion submitted {SHORT_ID}  \d+ points$", result.stdout, re.M)
    assert re.search(rf"^step 1 diffusion persisted {SHORT_ID}", result.stdout, re.M)
    assert re.search(rf"^step 2 inpaint   status    {SHORT_ID}  \w+", result.stdout, re.M)
    assert re.search(rf"^step 2 inpaint   persisted {SHORT_ID}", result.stdout, re.M)
    assert re.search(r"^total points: \d+$", result.stdout, re.M)
    assert result.stdout.count("/job.json") == 2
    # The outputs outlive the local S3: copied under their keys, bytes as the sidecar says.
    sidecars = re.findall(r"s3://legnext-demo/(legnext/[0-9a-f-]+/job\.json)", result.stdout)
    assert len(sidecars) == 2, result.stdout
    copied = tmp_path / "offline-output"
    for key in sidecars:
        files = json.loads((copied / key).read_text())["files"]
        assert files and all(
            hashlib.sha256((copied / f["key"]).read_bytes()).hexdigest() == f["sha256"]
            for f in files
        )
    assert re.search(r"^\d+ files copied to offline-output/ ", result.stdout, re.M)
    assert "users-own-bucket" not in output
    assert prefect_database_in(home) == []
    assert sorted(p.name for p in home.iterdir()) == []


@pytest.mark.usefixtures("prefect_server")
def test_chain_command_refuses_bad_input_in_one_line(
    tmp_path: Path, legnext_simulator: Any, legnext_s3_bucket: Any
) -> None:
    """A run above --max-points, refused by the flow before any paid call: one line,
    nothing on stdout, no job. In this process, on the session's Prefect server (with
    --offline a real process would start one more temporary server for these words)."""
    from prefect.settings import PREFECT_API_URL

    endpoint = legnext_s3_bucket.credentials.aws_client_parameters.endpoint_url
    env = cli_env(
        tmp_path / "home",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        LEGNEXT_API_KEY=legnext_simulator.api_key,
        LEGNEXT_BASE_URL=legnext_simulator.base_url,
        LEGNEXT_S3_BUCKET=legnext_s3_bucket.bucket_name,
        LEGNEXT_S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=LOCAL_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=LOCAL_SECRET_KEY,
        AWS_DEFAULT_REGION=LOCAL_REGION,
    )
    result = run_in_process("chain", "a tower", "--max-points", "100", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: the run costs 360 points, above max_points=100; nothing was submitted"
    )
    assert result.stdout == ""
    assert legnext_simulator.stats()["jobs_total"] == 0


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
    assert " status " not in result.stdout  # a batch shows submits and results only
    assert result.stdout.count("/job.json") == 3
    assert "total points: 240" in result.stdout
    # 3 chains x (4 images, the grid, the sidecar), copied out of the local S3.
    assert re.search(r"^18 files copied to offline-output/ ", result.stdout, re.M)
    assert len([p for p in (tmp_path / "offline-output").rglob("*") if p.is_file()]) == 18
    assert "…" not in result.stdout


class TerminalRun:
    """``prefect-legnext ARGS`` with a pseudo-terminal on stdin, so that it asks; its
    output is read as it comes. `asked` waits for the next question's images, `type`
    answers. Leaving waits for the command's end (killing it if the block failed or it
    hangs), then `output` and `returncode` hold what it did."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.main, terminal = pty.openpty()
        self.command = subprocess.Popen(
            [CLI, *args], cwd=tmp_path, env=cli_env(tmp_path / "home"), text=True,
            stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(terminal)
        self.out = Lines(self.command.stdout, until="  image 3: ")
        self.err = Lines(self.command.stderr)
        self.output, self.returncode = "", -1

    def __enter__(self) -> TerminalRun:
        return self

    def asked(self) -> None:
        assert self.out.matched.acquire(timeout=840), self.out.text() + self.err.text()

    def type(self, text: str) -> None:
        os.write(self.main, text.encode())

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.command.wait(timeout=840)
        finally:
            if self.command.poll() is None:
                self.command.kill()
                self.command.wait(timeout=60)
            os.close(self.main)
        self.output = self.out.text() + self.err.text()
        self.returncode = self.command.returncode


def test_chain_review_asks_in_the_terminal_and_records_the_answer(tmp_path: Path) -> None:
    """``chain --review`` with a terminal on stdin: after the diffusion it prints the
    four images' URLs (presigned copies in the local S3) labelled 0-3, asks again after
    a number that is no image, and records the answer (image 2) before the enhance
    runs (that the next step takes the chosen image is shown in test_review.py)."""
    steps = ("--offline", "--steps", "diffusion,enhance", "--review")
    with TerminalRun(tmp_path, "chain", "a glass tower", *steps) as run:
        run.asked()
        run.type("7\n2\n")  # 7 is not an image: asked again
    output = run.output
    assert run.returncode == 0, output
    assert_clean(output)
    urls = re.findall(r"^  image (\d): (http://127\.0\.0\.1:\d+/\S+)$", output, re.MULTILINE)
    assert [n for n, _ in urls] == ["0", "1", "2", "3"], output
    assert all("Signature=" in url for _, url in urls)
    assert "'7': give one of 0,1,2,3, or s" in output
    assert re.search(r"reviewed: image 2, by \S+ \(terminal\) at ", output), output
    assert re.search(rf"step 2 enhance +submitted {SHORT_ID}", output), output


def test_batch_review_asks_for_each_chain_in_turn(tmp_path: Path) -> None:
    """``batch --review``: each chain's question comes alone, headed by its prompt, and
    each chain's enhance runs on the image given for it; no progress bar meanwhile."""
    answers: dict[str, str] = {}
    steps = ("--offline", "--steps", "diffusion,enhance", "--review")
    with TerminalRun(tmp_path, "batch", "a fox", "a heron", *steps) as run:
        for answer in ("1", "2"):
            run.asked()
            heading = [line for line in run.out.lines if line.endswith(": its images\n")][-1]
            chain = re.search(r"(a fox|a heron)[^:]*: step 1 diffusion \(", heading)
            assert chain is not None, heading
            answers[chain.group(1)] = answer
            run.type(f"{answer}\n")
    output = run.output
    assert run.returncode == 0, output
    assert_clean(output)
    assert sorted(answers) == ["a fox", "a heron"], output  # one question per chain
    # The results list the chains in prompt order: each got the answer given for it.
    reviewed = re.findall(r"reviewed: image (\d), by \S+ \(terminal\) at ", output)
    assert reviewed == [answers["a fox"], answers["a heron"]], output
    for chain in (1, 2):  # (after the question on a pipe: the answer's newline is not echoed)
        assert re.search(rf"\[{chain}\] step 2 enhance +submitted", output), output
    assert not re.search(r"\b[0-2]/2\b", output), output  # the bar stayed off


def test_ctrl_c_gives_up_a_batch_question_open_in_a_chains_thread(tmp_path: Path) -> None:
    """A batch asks from a chain's thread, which Ctrl-C does not reach: the command
    still ends at once with "interrupted" (it hung until Enter, then went on), and
    submits nothing more."""
    import signal

    steps = ("--offline", "--steps", "diffusion,enhance", "--review")
    with TerminalRun(tmp_path, "batch", "a fox", "a heron", *steps) as run:
        run.asked()
        run.command.send_signal(signal.SIGINT)
        run.command.wait(timeout=300)  # raises (and the run is killed) if it hangs
    assert run.returncode == 130, run.output
    assert "interrupted" in run.output
    assert "step 2 enhance" not in run.output, run.output
    assert "Traceback" not in run.output
