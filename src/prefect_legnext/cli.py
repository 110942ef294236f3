"""The ``prefect-legnext`` command line.

User mistakes end with one clear line on stderr and a non-zero exit code, never
a traceback; the API key is read from the environment and never printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from prefect_legnext.client import DEFAULT_BASE_URL, LegnextClient
from prefect_legnext.endpoints import problems_of
from prefect_legnext.errors import LegnextError

app = typer.Typer(
    name="prefect-legnext",
    help="Run Legnext (Midjourney) image pipelines with Prefect, or an offline Legnext simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
job_app = typer.Typer(help="Read or wait for a job.", no_args_is_help=True)
app.add_typer(job_app, name="job")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="LEGNEXT_API_KEY",
        show_envvar=True,
        show_default=False,
        help="Legnext API key (prefer the environment variable).",
    ),
]
BaseUrlOption = Annotated[
    str, typer.Option("--base-url", envvar="LEGNEXT_BASE_URL", help="Legnext base URL.")
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit code 1."""
    try:
        yield
    except ValidationError as exc:
        raise fail("; ".join(f"{field}: {rule}" for field, rule in problems_of(exc))) from None
    except (LegnextError, ValueError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def make_client(api_key: str | None, base_url: str) -> LegnextClient:
    if not api_key:
        raise fail("no API key: set LEGNEXT_API_KEY (or pass --api-key)")
    return LegnextClient(SecretStr(api_key), base_url=base_url)


def _with_client(api_key: str | None, base_url: str, call: Callable[[LegnextClient], T]) -> T:
    with user_errors(), make_client(api_key, base_url) as client:
        return call(client)


@app.command()
def balance(api_key: ApiKeyOption = None, base_url: BaseUrlOption = DEFAULT_BASE_URL) -> None:
    """Show the account's points and USD balance."""
    result = _with_client(api_key, base_url, lambda c: c.balance())
    console.print(
        f"{result.available_points} points available (USD {result.balance_usd:.3f})",
        highlight=False,
    )


@job_app.command("get")
def job_get(
    job_id: str,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
) -> None:
    """Print a job as JSON."""
    job = _with_client(api_key, base_url, lambda c: c.get_job(job_id))
    sys.stdout.write(job.model_dump_json(indent=2) + "\n")


@job_app.command("wait")
def job_wait(
    job_id: str,
    max_wait_seconds: Annotated[float, typer.Option(min=1)] = 900.0,
    api_key: ApiKeyOption = None,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
) -> None:
    """Wait for a job to finish, showing its status, then print its output URLs."""
    with console.status("waiting") as status:

        def show(job: Any) -> None:
            status.update(f"job {job.job_id}: {job.status}")

        job = _with_client(
            api_key,
            base_url,
            lambda c: c.wait_for_job(job_id, max_wait_seconds=max_wait_seconds, on_update=show),
        )
    for url in job.output_urls:
        console.print(url, highlight=False)


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8787,
    api_key: Annotated[
        str,
        typer.Option(
            envvar="LEGNEXT_SIMULATOR_API_KEY",
            help="Key the simulator accepts.",
            show_default=False,
        ),
    ] = "sim-key",
    time_scale: Annotated[float, typer.Option(help="Multiplies job durations.")] = 1.0,
    concurrency: Annotated[int, typer.Option(help="Jobs running at once.")] = 6,
    points: Annotated[int, typer.Option(help="Starting balance in points.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seeds durations, images and faults.")] = 0,
    output_ttl: Annotated[float, typer.Option(help="Seconds output URLs live.")] = 3600.0,
    video_bytes: Annotated[int, typer.Option(help="Size of each video file.")] = 256 * 1024,
    callback_secret: Annotated[
        str | None, typer.Option(help="Sign callbacks with this secret.", show_default=False)
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="[ENDPOINT:]NAME=VALUE, repeatable, e.g. job_failure_rate=0.1 or "
            "diffusion:drop_after_accept_rate=0.5 or files:download_delay=2.",
        ),
    ] = None,
) -> None:
    """Run the offline Legnext simulator in the foreground until Ctrl-C."""
    from prefect_legnext.simulator import SimulatorConfig, serve

    with user_errors():
        config = SimulatorConfig(
            api_key=SecretStr(api_key),
            time_scale=time_scale,
            concurrency=concurrency,
            points=points,
            seed=seed,
            output_ttl=output_ttl,
            video_bytes=video_bytes,
            callback_secret=SecretStr(callback_secret) if callback_secret else None,
            faults=parse_faults(fault or []),
        )

    def ready(base_url: str) -> None:
        console.print(f"Legnext simulator listening on {base_url}", highlight=False)
        console.print(
            f"  export LEGNEXT_BASE_URL={base_url}  (the API key is the one you passed)",
            highlight=False,
        )

    try:
        serve(config, host, port, on_ready=ready)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def parse_faults(specs: list[str]) -> dict[str, Any]:
    """``[ENDPOINT:]NAME=VALUE`` strings into the simulator's per-endpoint faults."""
    from prefect_legnext.simulator.config import ALL_ENDPOINTS, Faults

    grouped: dict[str, dict[str, float]] = {}
    for spec in specs:
        target, _, setting = spec.rpartition(":")
        name, sep, value = setting.partition("=")
        if not sep or name not in Faults.model_fields:
            known = ", ".join(Faults.model_fields)
            raise ValueError(
                f"bad --fault {spec!r}: expected [ENDPOINT:]NAME=VALUE, NAME in {known}"
            )
        try:
            grouped.setdefault(target or ALL_ENDPOINTS, {})[name] = float(value)
        except ValueError:
            raise ValueError(f"bad --fault {spec!r}: {value!r} is not a number") from None
    return {target: Faults(**values) for target, values in grouped.items()}


StepsOption = Annotated[
    str,
    typer.Option(help="Comma-separated subset of diffusion,enhance,inpaint,retexture."),
]
ImageNoOption = Annotated[
    int, typer.Option(min=0, max=3, help="Image of each grid carried to the next step.")
]
InpaintPromptOption = Annotated[str, typer.Option(help="What to paint inside the mask.")]
RetexturePromptOption = Annotated[str, typer.Option(help="The new texture or material.")]
SourceOption = Annotated[
    str, typer.Option(help="Retexture input: s3 (our presigned copy) or legnext (its URL).")
]
CredentialsOption = Annotated[
    str, typer.Option(help="Saved LegnextCredentials block (else LEGNEXT_API_KEY).")
]
StorageOption = Annotated[str, typer.Option(help="Saved S3Bucket block (else LEGNEXT_S3_BUCKET).")]
PrefixOption = Annotated[str, typer.Option(help="Prefix of the S3 keys.")]
MaxPointsOption = Annotated[
    int | None, typer.Option(min=0, help="Stop before spending more than this.")
]
MaxWaitOption = Annotated[float, typer.Option(min=1, help="Give up on a job after this long.")]
OfflineOption = Annotated[
    bool, typer.Option(help="Run on the embedded simulator and a local S3 server.")
]


def _chain_options(
    steps: str,
    image_no: int,
    inpaint_prompt: str,
    retexture_prompt: str,
    retexture_source: str,
    credentials_block: str,
    storage_block: str,
    key_prefix: str,
    max_points: int | None,
    max_wait_seconds: float,
    offline: bool,
) -> dict[str, Any]:
    if offline:  # no block names: the flow reads the offline services from the environment
        credentials_block = storage_block = ""
    return {
        "steps": [s.strip() for s in steps.split(",") if s.strip()],
        "image_no": image_no,
        "inpaint_prompt": inpaint_prompt,
        "retexture_prompt": retexture_prompt,
        "retexture_source": retexture_source,
        "credentials_block": credentials_block,
        "storage_block": storage_block,
        "key_prefix": key_prefix,
        "max_points": max_points,
        "max_wait_seconds": max_wait_seconds,
    }


@contextmanager
def _flow_environment(offline: bool) -> Iterator[None]:
    """Run a flow here: quiet Prefect logs, and the offline services when asked."""
    from prefect.exceptions import ParameterTypeError

    from prefect_legnext.demo import offline_environment, quiet_logs

    quiet_logs()
    with user_errors():
        try:
            if offline:
                with offline_environment():
                    yield
            else:
                yield
        except ParameterTypeError as exc:
            raise fail(str(exc).splitlines()[-1].strip(" -") or "invalid parameters") from None


def _print_steps(title: str, chains: list[Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("chain", "step", "action", "job id", "points", "s"):
        table.add_column(column, no_wrap=True, min_width=36 if column == "job id" else None)
    for number, chain_result in enumerate(chains, start=1):
        for step in chain_result.steps:
            table.add_row(
                str(number), str(step.index), step.action, step.job_id, str(step.points),
                f"{step.duration_seconds:.1f}",
            )  # fmt: skip
    console.print(table)
    for chain_result in chains:
        for step in chain_result.steps:
            console.print(f"  {step.sidecar_uri}", highlight=False, soft_wrap=True)


@app.command()
def chain(
    prompt: str,
    steps: StepsOption = "diffusion,enhance,inpaint,retexture",
    image_no: ImageNoOption = 0,
    inpaint_prompt: InpaintPromptOption = "a small red sailboat",
    retexture_prompt: RetexturePromptOption = "as a watercolour painting",
    retexture_source: SourceOption = "s3",
    credentials_block: CredentialsOption = "legnext",
    storage_block: StorageOption = "legnext-outputs",
    key_prefix: PrefixOption = "legnext",
    max_points: MaxPointsOption = None,
    max_wait_seconds: MaxWaitOption = 900.0,
    offline: OfflineOption = False,
) -> None:
    """Run the chain generate -> enhance -> inpaint -> retexture for one prompt."""
    options = _chain_options(
        steps, image_no, inpaint_prompt, retexture_prompt, retexture_source, credentials_block,
        storage_block, key_prefix, max_points, max_wait_seconds, offline,
    )  # fmt: skip
    with _flow_environment(offline), console.status("running the chain"):
        from prefect_legnext.flows import legnext_chain

        result = legnext_chain(prompt=prompt, **options)
    _print_steps("legnext_chain", [result])
    console.print(f"total points: {result.total_points}", highlight=False)


@app.command()
def batch(
    prompts: Annotated[list[str] | None, typer.Argument(help="Prompts, one chain each.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="A file of prompts, one per line."),
    ] = None,
    steps: StepsOption = "diffusion,enhance,inpaint,retexture",
    image_no: ImageNoOption = 0,
    inpaint_prompt: InpaintPromptOption = "a small red sailboat",
    retexture_prompt: RetexturePromptOption = "as a watercolour painting",
    retexture_source: SourceOption = "s3",
    credentials_block: CredentialsOption = "legnext",
    storage_block: StorageOption = "legnext-outputs",
    key_prefix: PrefixOption = "legnext",
    max_points: MaxPointsOption = None,
    max_wait_seconds: MaxWaitOption = 900.0,
    offline: OfflineOption = False,
) -> None:
    """Run one chain per prompt, side by side inside the account's limit."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    wanted = list(prompts or [])
    if file is not None:
        wanted += [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not wanted:
        raise fail("no prompts: pass them as arguments or with --file")
    options = _chain_options(
        steps, image_no, inpaint_prompt, retexture_prompt, retexture_source, credentials_block,
        storage_block, key_prefix, max_points, max_wait_seconds, offline,
    )  # fmt: skip
    progress = Progress(
        "chains", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    bar = progress.add_task("chains", total=len(wanted))

    def advance(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    from prefect_legnext.flows import BATCH_LISTENERS, legnext_batch

    BATCH_LISTENERS.append(advance)
    try:
        with _flow_environment(offline), progress:
            result = legnext_batch(prompts=wanted, **options)
    finally:
        BATCH_LISTENERS.remove(advance)
    _print_steps("legnext_batch", result.chains)
    console.print(f"total points: {result.total_points}", highlight=False)


@app.command()
def setup(
    concurrent_jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Size of legnext-account; default: the credentials block's."),
    ] = None,
    credentials_block: CredentialsOption = "legnext",
    work_pool: Annotated[
        str, typer.Option(help="Process work pool to create if missing ('' to skip).")
    ] = "legnext-process",
) -> None:
    """Prepare the current Prefect server: blocks, legnext-account limit, work pool."""
    from prefect_legnext.provisioning import (
        ACCOUNT_LIMIT,
        ensure_process_pool,
        register_blocks,
        upsert_account_limit,
    )
    from prefect_legnext.resolve import ConfigurationError, load_credentials

    with user_errors():
        names = register_blocks()
        console.print(f"registered blocks: {', '.join(names)}", highlight=False)
        if concurrent_jobs is None:
            try:
                concurrent_jobs = load_credentials(credentials_block).concurrent_jobs
            except ConfigurationError:
                concurrent_jobs = 6
        upsert_account_limit(concurrent_jobs)
        console.print(f"global concurrency limit {ACCOUNT_LIMIT}: {concurrent_jobs} slots")
        if work_pool:
            created = ensure_process_pool(work_pool)
            console.print(f"work pool {work_pool}: {'created' if created else 'exists'}")


@app.command()
def demo(
    output_dir: Annotated[str, typer.Option(help="Where the contact sheet goes.")] = "demo-output",
) -> None:
    """Run the whole chain offline: embedded simulator, nothing to configure."""
    from prefect_legnext.demo import run_demo

    with user_errors():
        run_demo(console, output_dir, os.environ)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
