"""What the commands print: one plain line per step event, step tables and help text
that fit 80 columns with nothing cut short (no "…"), in a terminal or a log."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
from rich.console import Console

from cli_support import cli_env, run_cli, run_in_process
from prefect_legnext import cli
from prefect_legnext.core.masks import rect_mask
from prefect_legnext.demo import steps_table
from prefect_legnext.orchestration.flows import CLASSIC_STEPS, ChainResult, StepProgress, StepResult

JOB = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
RUN = str(uuid.UUID(int=7))
PREFIX = f"s3://a-rather-long-bucket-name-for-outputs/legnext/{JOB}/"


def console(width: int = 80, terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=terminal, color_system=None), out


def events(chain: str = "a lighthouse on a cliff at dawn, volumetri…") -> list[StepProgress]:
    def event(index: int, action: str, phase: Any, detail: str) -> StepProgress:
        return StepProgress(RUN, chain, index, action, phase, JOB, detail)

    return [
        event(1, "diffusion", "submitted", "40 points"),
        event(1, "diffusion", "status", "processing"),
        event(1, "diffusion", "status", "completed"),
        event(1, "diffusion", "persisted", PREFIX),
        event(2, "remove_background", "reused", "40 points"),
    ]


@pytest.mark.parametrize("terminal", [False, True])
def test_step_lines_are_plain_full_and_fit_80_columns(terminal: bool) -> None:
    out_console, out = console(terminal=terminal)
    lines = cli.StepLines(out_console)
    # No UI: the UI URL defaults from the API URL, which the suite's test server sets.
    with temporary_settings(restore_defaults={PREFECT_API_URL, PREFECT_UI_URL}):
        for event in events():
            lines(event)
    text = out.getvalue()
    assert "…" not in text and "\x1b" not in text  # no cut text, no cursor tricks
    assert text.splitlines() == [
        "step 1 diffusion submitted 3c90c3cc  40 points",
        "step 1 diffusion status    3c90c3cc  processing",
        "step 1 diffusion status    3c90c3cc  completed",
        "step 1 diffusion persisted 3c90c3cc",
        f"    {PREFIX}",  # whole, on its own line when the line would pass 80 columns
        "step 2 remove_background reused    3c90c3cc  40 points",
    ]
    assert "flow run" not in text  # no UI configured: no URL


def test_step_lines_show_the_run_url_once_with_a_ui() -> None:
    out_console, out = console()
    lines = cli.StepLines(out_console)
    with temporary_settings(updates={PREFECT_UI_URL: "http://127.0.0.1:4200"}):
        for event in events():
            lines(event)
    text = out.getvalue()
    assert text.splitlines()[0] == f"flow run http://127.0.0.1:4200/runs/flow-run/{RUN}"
    assert text.count("flow run") == 1


def test_batch_lines_number_the_chains_and_skip_statuses() -> None:
    out_console, out = console()
    lines = cli.StepLines(
        out_console, chains={"a fox": 1, "a [bold]heron": 2}, phases=("submitted", "persisted")
    )
    for chain in ("a fox", "a [bold]heron"):
        for event in events(chain):
            lines(event)
    text = out.getvalue()
    assert "[2] step 1 diffusion submitted 3c90c3cc  40 points" in text.splitlines()
    assert " status " not in text and "reused" not in text
    assert len([line for line in text.splitlines() if line.startswith("[1] ")]) == 2


def step(index: int, action: str) -> StepResult:
    return StepResult(
        index=index, action=action, job_id=JOB, task_type=action, parent_job_id=None,
        image_no=None, seed=None, points=120, duration_seconds=12.5,
        s3_uris=[f"{PREFIX}{i}.png" for i in range(4)], grid_uri=None,
        sidecar_uri=f"{PREFIX}job.json", files=[],
    )  # fmt: skip


@pytest.mark.parametrize("terminal", [False, True])
def test_step_tables_keep_full_action_names_in_80_columns(terminal: bool) -> None:
    actions = [*CLASSIC_STEPS, "remove_background", "upscale"]
    steps = [step(i, action) for i, action in enumerate(actions, start=1)]
    for kwargs in ({"outputs": True}, {"chain": 12}, {}):
        out_console, out = console(terminal=terminal)
        out_console.print(steps_table(steps, **kwargs))
        text = out.getvalue()
        assert "…" not in text
        for action in actions:
            assert re.search(rf"\s{action}\s+3c90c3cc\s", text), text
        assert JOB not in text  # short ids: the full ones are in the sidecars
        assert max(len(line) for line in text.splitlines()) <= 80


def test_chain_command_passes_its_options_to_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options reach `legnext_chain` converted: steps as a list, the mask as polygons, the
    retexture source as its value; the chosen blocks by name."""
    from contextlib import contextmanager

    from typer.testing import CliRunner

    import prefect_legnext.orchestration.flows as flows

    seen: dict[str, Any] = {}

    def fake_chain(**kwargs: Any) -> ChainResult:
        seen.update(kwargs)
        return ChainResult(steps=[step(1, "diffusion")], total_points=120)

    @contextmanager
    def no_prefect(offline: bool) -> Any:
        yield {}

    monkeypatch.setattr(flows, "legnext_chain", fake_chain)
    monkeypatch.setattr(cli, "_flow_environment", no_prefect)
    monkeypatch.setattr(cli, "check_configuration", lambda *names: None)
    result = CliRunner().invoke(
        cli.app,
        ["chain", "a tower", "--steps", "diffusion, inpaint", "--mask-rect", "0,0.5,0.5,0.5",
         "--retexture-source", "legnext", "--credentials-block", "team-a"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["steps"] == ["diffusion", "inpaint"]
    assert seen["inpaint_mask"] == rect_mask(0, 0.5, 0.5, 0.5)
    assert seen["retexture_source"] == "legnext"
    assert seen["credentials_block"] == "team-a"
    assert seen["storage_block"] == "legnext-outputs"
    assert "diffusion" in result.output and "3c90c3cc" in result.output


def test_the_cli_offers_the_flows_steps() -> None:
    assert cli.STEP_CHOICES == CLASSIC_STEPS


# The top-level help and the widest one in a real process, the others in this one (the
# same main(), 80 columns from COLUMNS as in the process).
REAL_PROCESS_HELP = ([], ["chain"])


@pytest.mark.parametrize(
    "command",
    [[], ["chain"], ["batch"], ["demo"], ["simulator"], ["setup"], ["balance"], ["job", "wait"]],
)
def test_help_fits_80_columns_without_cutting(tmp_path: Path, command: list[str]) -> None:
    run = run_cli if command in REAL_PROCESS_HELP else run_in_process
    result = run(*command, "--help", cwd=tmp_path, env=cli_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    if command in (["chain"], ["batch"]):
        for option in (
            "--credentials-block", "--storage-block", "--retexture-source", "--max-wait-seconds",
            "--mask-rect X,Y,W,H", "--mask-url URL", "--mask-file PATH",
        ):  # fmt: skip
            assert option in result.stdout
        assert "s3|legnext" in result.stdout  # choices listed
        assert "diffusion, enhance, inpaint," in result.stdout
