"""Configuration mistakes end at once in one line, before anything slow starts: no
Prefect server (its database file would appear in the Prefect home), no simulator.

Most cases run the command's ``main()`` in this process (`run_in_process`, which fails
the command if any server starts); the first case and the installs without the
``simulator`` extra (demo, chain, batch, simulator) run as real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_support import cli_env, one_error_line, prefect_database_in, run_cli, run_in_process

KEY = "lgx-cli-config-secret-1234"
INSTALL = "pip install 'prefect-legnext[simulator]'"


def run_unconfigured(
    tmp_path: Path, *args: str, code: int = 1, real_process: bool = False, **env: str
) -> str:
    """Run a command that must fail fast with exit code `code` (in this process unless
    `real_process`); its error line (the server never started). The command line
    parser's refusals exit with 2."""
    home = tmp_path / "home"
    if real_process:
        result = run_cli(*args, cwd=tmp_path, env=cli_env(home, **env), timeout=120)
    else:
        result = run_in_process(*args, cwd=tmp_path, env=cli_env(home, **env))
    line = one_error_line(result)
    assert result.returncode == code
    assert prefect_database_in(home) == []  # no Prefect server was started
    assert KEY not in result.stdout + result.stderr
    return line


def test_chain_without_a_key_says_what_to_set(tmp_path: Path) -> None:
    line = run_unconfigured(tmp_path, "chain", "a tower", real_process=True)
    assert line.startswith("no Legnext credentials: set LEGNEXT_API_KEY")
    line = run_unconfigured(tmp_path, "batch", "a fox", "a heron", real_process=True)
    assert line.startswith("no Legnext credentials: set LEGNEXT_API_KEY")


def test_chain_without_a_bucket_says_what_to_set(tmp_path: Path) -> None:
    line = run_unconfigured(tmp_path, "chain", "a tower", LEGNEXT_API_KEY=KEY)
    assert line.startswith("no S3 bucket for the outputs: set LEGNEXT_S3_BUCKET")


def test_a_named_block_that_cannot_exist_is_named(tmp_path: Path) -> None:
    line = run_unconfigured(
        tmp_path, "chain", "a tower", "--credentials-block", "team-a",
        LEGNEXT_API_KEY=KEY, LEGNEXT_S3_BUCKET="outputs",
    )  # fmt: skip
    assert line.startswith("no saved LegnextCredentials block named 'team-a'")
    line = run_unconfigured(
        tmp_path, "chain", "a tower", "--storage-block", "team-b-outputs",
        LEGNEXT_API_KEY=KEY, LEGNEXT_S3_BUCKET="outputs",
    )  # fmt: skip
    assert line.startswith("no saved S3Bucket block named 'team-b-outputs'")


def test_demo_with_a_key_but_no_bucket(tmp_path: Path) -> None:
    line = run_unconfigured(tmp_path, "demo", LEGNEXT_API_KEY=KEY)
    assert line.startswith("no S3 bucket for the outputs: set LEGNEXT_S3_BUCKET")
    assert not (tmp_path / "demo-output").exists()


def test_offline_names_no_blocks(tmp_path: Path) -> None:
    line = run_unconfigured(tmp_path, "chain", "x", "--offline", "--credentials-block", "mine")
    assert line == "--credentials-block cannot be used with --offline (it saves its own blocks)"


def _without(tmp_path: Path, module: str) -> str:
    """A PYTHONPATH entry on which `module` cannot be imported, as when not installed."""
    shim = tmp_path / f"no-{module}"
    (shim / module).mkdir(parents=True)
    (shim / module / "__init__.py").write_text(f"raise ImportError('No module named {module}')\n")
    return str(shim)


@pytest.mark.parametrize(
    ("command", "module", "what"),
    [
        (["demo"], "moto", "the demo"),
        (["demo"], "PIL", "the demo"),
        (["chain", "a tower", "--offline"], "moto", "--offline"),
        (["batch", "a fox", "--offline"], "PIL", "--offline"),
        (["simulator"], "PIL", "the simulator"),
    ],
)
def test_offline_parts_without_the_simulator_extra(
    tmp_path: Path, command: list[str], module: str, what: str
) -> None:
    """Installed without the ``simulator`` extra: one line naming it, nothing started."""
    line = run_unconfigured(
        tmp_path, *command, real_process=True, PYTHONPATH=_without(tmp_path, module)
    )
    assert line.startswith(f"{what} needs the 'simulator' extra")
    assert line.endswith(INSTALL)


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--steps", "diffusion,upscale"], 1, "--steps: unknown step 'upscale'; choose from "
         "diffusion, enhance, inpaint, retexture"),
        (["--image-no", "7"], 2, "Invalid value for '--image-no'"),
        (["--retexture-source", "web"], 2, "Invalid value for '--retexture-source'"),
        (["--mask-rect", "0.5,0.5,0.75,0.25"], 1, "--mask-rect: the rectangle leaves the image"),
        (["--mask-rect", "a,b,c,d"], 1, "--mask-rect: expected X,Y,W,H as numbers"),
        (["--mask-url", "ftp://x/mask.png"], 1, "--mask-url: url: must be an http(s) URL"),
        (["--mask-file", "missing.json"], 1, "--mask-file: cannot read missing.json"),
        (["--mask-rect", "0,0,1,1", "--mask-url", "https://x.test/m.png"], 1,
         "--mask-rect and --mask-url exclude each other"),
        (["--no-such-option"], 2, "No such option: --no-such-option"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line(
    tmp_path: Path, args: list[str], code: int, expected: str
) -> None:
    line = run_unconfigured(tmp_path, "chain", "a tower", *args, code=code)
    assert line.startswith(expected), line


def test_a_bad_mask_file_names_the_option(tmp_path: Path) -> None:
    mask = tmp_path / "mask.json"
    mask.write_text('{"areas": [{"width": 1024, "height": 1024, "points": [0, 0, 2000, 0, 0, 9]}]}')
    line = run_unconfigured(tmp_path, "chain", "a tower", "--mask-file", str(mask))
    assert line.startswith("--mask-file: areas.0"), line
    assert "outside the 1024x1024 image" in line
    mask.write_text("{not json")
    line = run_unconfigured(tmp_path, "chain", "a tower", "--mask-file", str(mask))
    assert line.startswith("--mask-file: not JSON"), line
