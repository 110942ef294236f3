"""The ``prefect-legnext`` command line.

User mistakes end with one clear line on stderr and a non-zero exit code, never
a traceback; the API key is read from the environment and never printed.
Configuration is checked before anything slow starts; commands that run flows
print one line per step event (no spinner), readable in a log and in 80 columns.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from prefect_legnext.core.client import DEFAULT_BASE_URL, LegnextClient, clean_api_key
from prefect_legnext.core.endpoints import problems_of
from prefect_legnext.core.errors import LegnextError
from prefect_legnext.extras import require_simulator

if TYPE_CHECKING:
    from prefect_legnext.core.models import Mask
    from prefect_legnext.orchestration.flows import StepProgress
    from prefect_legnext.orchestration.review import Review, ReviewChoice

app = typer.Typer(
    name="prefect-legnext",
    help="Run Legnext (Midjourney) image pipelines with Prefect, or an offline Legnext simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: wraps to the terminal (80 columns too) and never cuts an
    # option's name or its description short.
    rich_markup_mode=None,
)
job_app = typer.Typer(help="Read or wait for a job.", no_args_is_help=True, rich_markup_mode=None)
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
    """Print ``error: <message>`` (rich markup) on stderr; raise what this returns."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit code 1."""
    try:
        yield
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {rule}" for field, rule in problems_of(exc))
        raise fail(escape(problems)) from None
    except (LegnextError, ValueError) as exc:
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def make_client(api_key: str | None, base_url: str) -> LegnextClient:
    if not api_key or not api_key.strip():
        raise fail("no API key: set LEGNEXT_API_KEY (or pass --api-key)")
    try:  # strips a trailing newline; refuses (without echoing) a key no header can carry
        key = clean_api_key(api_key, "the API key (LEGNEXT_API_KEY or --api-key)")
    except ValueError as exc:
        raise fail(escape(str(exc))) from None
    return LegnextClient(key, base_url=base_url)


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
        str | None,
        typer.Option(
            envvar="LEGNEXT_SIMULATOR_API_KEY",
            help="Key the simulator accepts (none given: sim-key, a simulator's default).",
            show_default=False,
        ),
    ] = None,
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
    with user_errors():
        require_simulator("the simulator")
        from prefect_legnext.simulator import SimulatorConfig, serve

        config = SimulatorConfig(
            **({"api_key": SecretStr(api_key)} if api_key is not None else {}),
            time_scale=time_scale,
            concurrency=concurrency,
            points=points,
            seed=seed,
            output_ttl=output_ttl,
            video_bytes=video_bytes,
            callback_secret=SecretStr(callback_secret) if callback_secret else None,
            faults=parse_faults(fault or []),
        )

    check_listen_address(host, port)

    def ready(base_url: str) -> None:
        console.print(f"Legnext simulator listening on {base_url}", highlight=False)
        console.print(
            f"  export LEGNEXT_BASE_URL={base_url}  # the API key: "
            + ("the one given" if api_key is not None else "the simulator's default (--help)"),
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    _serve_in_foreground(lambda: serve(config, host, port, on_ready=ready), host, port)


def _serve_in_foreground(run: Callable[[], None], host: str, port: int) -> None:
    """Run a server until Ctrl-C, which ends it cleanly; a socket error in one line."""
    try:
        run()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_listen_address(host: str, port: int) -> None:
    """Fail in one line, before the server starts, on an address it cannot listen on:
    uvicorn would print its own error, and a traceback for a port out of range."""
    if not 0 <= port <= 65535:
        raise fail(f"--port must be 0..65535 (got {port}); 0 picks a free port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:  # socket.gaierror too: an unknown host
        raise fail(escape(f"cannot listen on {host}:{port}: {exc.strerror or exc}")) from None


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
            number = float(value)
        except ValueError:
            raise ValueError(f"bad --fault {spec!r}: {value!r} is not a number") from None
        try:  # each value on its own, so the error names the --fault that holds it
            Faults.model_validate({name: number})
        except ValidationError as exc:
            rule = "; ".join(rule for _, rule in problems_of(exc))
            raise ValueError(f"bad --fault {spec!r}: {rule}") from None
        grouped.setdefault(target or ALL_ENDPOINTS, {})[name] = number
    return {target: Faults(**values) for target, values in grouped.items()}


STEP_CHOICES = ("diffusion", "enhance", "inpaint", "retexture")  # flows.CLASSIC_STEPS
ALL_STEPS = ",".join(STEP_CHOICES)


class RetextureSource(StrEnum):
    S3 = "s3"
    LEGNEXT = "legnext"


StepsOption = Annotated[
    str,
    typer.Option(
        metavar="STEP,...",
        help="Steps to run, comma-separated, any of: diffusion, enhance, inpaint, "
        "retexture (they always run in that order).",
    ),
]
ImageNoOption = Annotated[
    int, typer.Option(min=0, max=3, help="Image of each grid carried to the next step.")
]
InpaintPromptOption = Annotated[str, typer.Option(help="What to paint inside the mask.")]
ReviewOption = Annotated[
    bool,
    typer.Option(
        "--review",
        help="After each step, print its images' URLs and ask which one the next step "
        "works on (in a terminal; otherwise the run waits for a review in the Prefect UI).",
    ),
]
MaskRectOption = Annotated[
    str | None,
    typer.Option(
        metavar="X,Y,W,H",
        show_default=False,
        help="Inpaint mask: a rectangle in fractions (0..1) of the image from its "
        "top-left corner; default 0.25,0.25,0.5,0.5 (the centre quarter).",
    ),
]
MaskUrlOption = Annotated[
    str | None,
    typer.Option(
        metavar="URL", show_default=False, help="Inpaint mask: an image URL (white is repainted)."
    ),
]
MaskFileOption = Annotated[
    Path | None,
    typer.Option(
        metavar="PATH",
        show_default=False,
        help='Inpaint mask: a JSON file, {"areas": [{"width": W, "height": H, '
        '"points": [x1, y1, ...]}]} or {"url": "https://..."}.',
    ),
]
RetexturePromptOption = Annotated[str, typer.Option(help="The new texture or material.")]
SourceOption = Annotated[
    RetextureSource,
    typer.Option(help="Retexture input: s3 (our presigned copy) or legnext (its URL)."),
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
    bool,
    typer.Option(
        help="Run on the embedded simulator and a local S3 server, with blocks saved "
        "in a temporary Prefect home (needs the simulator extra)."
    ),
]
OfflineOutputOption = Annotated[
    Path,
    typer.Option(
        file_okay=False,
        help="With --offline: where the outputs are copied (the local S3 stops with the command).",
    ),
]


def parse_steps(text: str) -> list[str]:
    """``"diffusion,enhance"`` into step names, refusing unknown ones (one line)."""
    steps = [step.strip() for step in text.split(",") if step.strip()]
    unknown = [step for step in steps if step not in STEP_CHOICES]
    if unknown or not steps:
        what = f"unknown step {unknown[0]!r}" if unknown else "no steps"
        raise fail(escape(f"--steps: {what}; choose from {', '.join(STEP_CHOICES)}"))
    return steps


def parse_mask(rect: str | None, url: str | None, file: Path | None) -> Mask | None:
    """The inpaint mask of ``--mask-rect``, ``--mask-url`` or ``--mask-file`` (at most
    one); None for the flow's default. A bad value is one line naming its option."""
    from prefect_legnext.core.masks import mask_from_json, parse_rect, url_mask

    given = [
        name
        for name, value in (("--mask-rect", rect), ("--mask-url", url), ("--mask-file", file))
        if value is not None
    ]
    if len(given) > 1:
        raise fail(f"{' and '.join(given)} exclude each other: pass one mask option")
    try:
        if rect is not None:
            return parse_rect(rect)
        if url is not None:
            return url_mask(url)
        if file is not None:
            try:
                text = file.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read {file}: {exc.strerror or exc}") from None
            return mask_from_json(text)
    except ValueError as exc:
        raise fail(escape(f"{given[0]}: {exc}")) from None
    return None


def _chain_options(
    steps: str,
    image_no: int,
    inpaint_prompt: str,
    mask: Mask | None,
    retexture_prompt: str,
    retexture_source: RetextureSource,
    credentials_block: str,
    storage_block: str,
    key_prefix: str,
    max_points: int | None,
    max_wait_seconds: float,
    offline: bool,
) -> dict[str, Any]:
    """The flow's parameters, each checked here (one line per mistake) before anything
    slow starts; without --offline, the blocks or environment they need too."""
    from prefect_legnext.orchestration.resolve import (
        DEFAULT_CREDENTIALS_BLOCK,
        DEFAULT_STORAGE_BLOCK,
    )

    options: dict[str, Any] = {
        "steps": parse_steps(steps),
        "image_no": image_no,
        "inpaint_prompt": inpaint_prompt,
        "retexture_prompt": retexture_prompt,
        "retexture_source": retexture_source.value,
        "credentials_block": credentials_block,
        "storage_block": storage_block,
        "key_prefix": key_prefix,
        "max_points": max_points,
        "max_wait_seconds": max_wait_seconds,
    }
    if mask is not None:
        options["inpaint_mask"] = mask
    if offline:
        named = [
            option
            for option, value, default in (
                ("--credentials-block", credentials_block, DEFAULT_CREDENTIALS_BLOCK),
                ("--storage-block", storage_block, DEFAULT_STORAGE_BLOCK),
            )
            if value != default
        ]
        if named:
            raise fail(f"{named[0]} cannot be used with --offline (it saves its own blocks)")
        with user_errors():
            require_simulator("--offline")
    else:
        check_configuration(credentials_block, storage_block)
    return options


def check_configuration(credentials_block: str, storage_block: str) -> None:
    """Fail at once, before any Prefect server starts, when the run cannot find its
    credentials or bucket: with no PREFECT_API_URL and no local Prefect database, no
    block is saved anywhere, so only the environment can stand in for the default
    block names (a block named on purpose cannot exist)."""
    from prefect_legnext.orchestration.resolve import (
        DEFAULT_CREDENTIALS_BLOCK,
        DEFAULT_STORAGE_BLOCK,
        ENV_API_KEY,
        ENV_BUCKET,
    )
    from prefect_legnext.prefect_api import blocks_may_exist

    if blocks_may_exist():
        return  # the server decides, when the flow starts
    nowhere = "no Prefect server is configured (PREFECT_API_URL) and no local one has data"
    wanted = (
        (credentials_block, DEFAULT_CREDENTIALS_BLOCK, "LegnextCredentials", ENV_API_KEY,
         "no Legnext credentials"),
        (storage_block, DEFAULT_STORAGE_BLOCK, "S3Bucket", ENV_BUCKET,
         "no S3 bucket for the outputs"),
    )  # fmt: skip
    for name, default, kind, variable, missing in wanted:
        if name and name != default:
            raise fail(
                f"no saved {kind} block named {name!r}: {nowhere}; set PREFECT_API_URL "
                f"to the server that holds it"
            )
        if not os.environ.get(variable, "").strip():
            raise fail(
                f"{missing}: set {variable} (or save a {kind} block named {default!r} "
                f"on a Prefect server and set PREFECT_API_URL)"
            )
        if variable == ENV_API_KEY:
            try:  # a key no header can carry fails here, not mid-run
                clean_api_key(os.environ[variable], variable)
            except ValueError as exc:
                raise fail(escape(str(exc))) from None


@contextmanager
def _flow_environment(offline: bool) -> Iterator[dict[str, str]]:
    """Run flows here: quiet Prefect logs, a Prefect API (Prefect's temporary server,
    started with a generous timeout, when no PREFECT_API_URL is set), and with
    ``offline`` the simulator, local S3 and their saved blocks. Yields the block names
    to run with (``{}``: the ones given)."""
    import httpx
    from prefect.exceptions import ParameterTypeError

    from prefect_legnext.demo import offline_environment, quiet_logs
    from prefect_legnext.prefect_api import prefect_api

    quiet_logs()
    with user_errors(), ExitStack() as stack:
        try:
            with console.status("starting Prefect"):
                if offline:
                    services = stack.enter_context(offline_environment())
                    blocks = {
                        "credentials_block": services.credentials_block,
                        "storage_block": services.storage_block,
                    }
                else:
                    stack.enter_context(prefect_api())
                    blocks = {}
            yield blocks
        except ParameterTypeError as exc:
            raise fail(str(exc).splitlines()[-1].strip(" -") or "invalid parameters") from None
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise fail(escape(f"cannot reach the Prefect API: {reason}")) from None
        except RuntimeError as exc:  # Prefect's words when its API went away mid-run
            if not str(exc).startswith(PREFECT_UNREACHABLE):
                raise
            raise fail(escape(str(exc).splitlines()[0])) from None


PREFECT_UNREACHABLE = ("Failed to reach API", "Timed out while attempting to connect")
PHASES = ("submitted", "reused", "status", "persisted")


class StepLines:
    """Prints one plain line per step event of the flows this process runs (a
    `flows.STEP_LISTENERS` listener), and each flow run's URL when a Prefect UI is
    configured (PREFECT_UI_URL). Lines fit 80 columns; an S3 prefix too long for the
    line goes on the next one, whole.

    Args:
        out: where the lines go.
        chains: chain label -> number, to prefix each line with ``[number]`` (batches).
        phases: the phases printed (default: all).
    """

    def __init__(
        self,
        out: Console,
        chains: dict[str, int] | None = None,
        phases: tuple[str, ...] = PHASES,
    ) -> None:
        self.out = out
        self.chains = chains
        self.phases = phases
        self._runs: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: StepProgress) -> None:
        from prefect_legnext.orchestration.flows import SHORT_ID

        with self._lock:
            if event.flow_run_id not in self._runs:
                self._runs.add(event.flow_run_id)
                url = flow_run_url(event.flow_run_id)
                if url:
                    self._print(f"flow run {url}")
            if event.phase not in self.phases:
                return
            tag = ""
            if self.chains is not None:
                tag = f"[{self.chains.get(event.chain, event.chain)}] "
            head = (f"{tag}step {event.index} {event.action:<9} {event.phase:<9} "
                    f"{event.job_id[:SHORT_ID]}")  # fmt: skip
            line = f"{head}  {event.detail}".rstrip()
            if len(line) > max(self.out.width, 80) and event.phase == "persisted":
                self._print(head)
                self._print(f"    {event.detail}")
            else:
                self._print(line)

    def _print(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)


class TerminalReview:
    """Asks in the terminal which image the next step works on (a `review.REVIEWERS`
    callback): the step's images as URLs (presigned copies in S3) labelled 0-3, then
    the image number, "s" to stop, and a new prompt when the next step takes one. Not
    a terminal: None, and the run waits for a review in the Prefect UI."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self._pending = b""

    def read(self, prompt: str) -> str:
        """`input`, given up (EOFError) once the command is interrupted: a batch asks from
        a chain's thread, which Ctrl-C does not reach, and the flow waits for that
        thread before it ends. Reads the descriptor itself, so that lines typed ahead
        are kept for the next question (a buffered ``sys.stdin`` would hide them from
        `select`)."""
        import select

        sys.stdout.write(prompt)
        sys.stdout.flush()
        fd = sys.stdin.fileno()
        while b"\n" not in self._pending:
            if self._interrupted.is_set():
                raise EOFError
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 1024)
                if not chunk:
                    raise EOFError
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode(errors="replace")

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """While the flows run (in the main thread): Ctrl-C also gives up a question
        open in a chain's thread, then interrupts as usual."""
        import signal

        previous = signal.getsignal(signal.SIGINT)

        def on_interrupt(signum: int, frame: Any) -> None:
            self._interrupted.set()
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def __call__(self, review: Review) -> ReviewChoice | None:
        from datetime import UTC, datetime

        from prefect_legnext.orchestration.review import ReviewChoice

        if not sys.stdin.isatty():
            self._print(f"step {review.index} {review.action}: not a terminal, the run waits "
                        "for a review in the Prefect UI")  # fmt: skip
            return None
        with self._lock:
            self._print(f"{review.label}: step {review.index} {review.action} "
                        f"({review.job_id}): its images")  # fmt: skip
            for number, url in enumerate(review.thumbnails):
                self._print(f"  image {number}: {url}")
            try:
                image_no, stop = self._image(review)
                prompt = None
                if review.takes_prompt and not stop:
                    prompt = self.read(f"new prompt for {review.next_action} (Enter keeps it): ")
            except EOFError:
                return None
        return ReviewChoice(
            image_no=image_no, prompt=prompt.strip() or None if prompt else None, stop=stop,
            chosen_by=f"{_user()} (terminal)", chosen_at=datetime.now(UTC),
        )  # fmt: skip

    def _image(self, review: Review) -> tuple[int, bool]:
        allowed = ",".join(str(n) for n in review.allowed)
        question = (f"image for {review.next_action} [{allowed}, s to stop] "
                    f"(Enter: {review.default_image}): ")  # fmt: skip
        while True:
            answer = self.read(question).strip().lower()
            if answer == "":
                return review.default_image, False
            if answer == "s":
                return review.default_image, True
            if answer.isdigit() and int(answer) in review.allowed:
                return int(answer), False
            self._print(f"  {answer!r}: give one of {allowed}, or s")

    def _print(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "someone"


@contextmanager
def reviewing(reviewer: TerminalReview | None) -> Iterator[None]:
    """`reviewer` answers the reviews of the flows run in this block (none: no change)."""
    from prefect_legnext.orchestration.review import REVIEWERS

    if reviewer is None:
        yield
        return
    REVIEWERS.append(reviewer)
    try:
        with reviewer.interruptible():
            yield
    finally:
        REVIEWERS.remove(reviewer)


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI, when one is configured (PREFECT_UI_URL)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


@contextmanager
def listening(listener: Callable[[StepProgress], None]) -> Iterator[None]:
    """`listener` hears every step event of the flows run in this block."""
    from prefect_legnext.orchestration.flows import STEP_LISTENERS

    STEP_LISTENERS.append(listener)
    try:
        yield
    finally:
        STEP_LISTENERS.remove(listener)


@contextmanager
def _keeping_offline_outputs(
    offline: bool, blocks: dict[str, str], prefix: str, out_dir: Path
) -> Iterator[None]:
    """With `offline`, copy the run's outputs out of its local S3 (which stops with the
    command) when the block ends, well or not, and say where; a failed copy is one line
    and never hides how the run ended."""
    from botocore.exceptions import BotoCoreError, ClientError

    from prefect_legnext.demo import copy_outputs

    try:
        yield
    finally:
        if offline:
            said = ""  # nothing to say of a run refused before any output
            try:
                count = copy_outputs(blocks["storage_block"], prefix, out_dir)
                if count:
                    said = (f"{count} files copied to {out_dir}/ "
                            "(the local S3 stops with this command)")  # fmt: skip
            except (OSError, BotoCoreError, ClientError) as exc:
                said = f"could not copy the outputs to {out_dir}/: {exc}"
            if said:
                console.print(said, highlight=False, soft_wrap=True, markup=False)


def _print_results(chains: list[Any], total_points: int) -> None:
    """The steps of every chain (short job ids), their sidecars, the points spent."""
    from prefect_legnext.demo import steps_table

    numbered = len(chains) > 1
    for number, chain_result in enumerate(chains, start=1):
        table = steps_table(chain_result.steps, chain=number if numbered else None)
        console.print(table)
    for chain_result in chains:
        for step in chain_result.steps:
            console.print(f"  {step.sidecar_uri}", highlight=False, soft_wrap=True, markup=False)
            if step.review is not None:
                console.print(f"    reviewed: {step.review.describe()}", highlight=False,
                              soft_wrap=True, markup=False)  # fmt: skip
    console.print(f"total points: {total_points}", highlight=False)


@app.command()
def receiver(
    host: Annotated[
        str, typer.Option(help="Interface to bind (loopback; put a proxy in front).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8788,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="LEGNEXT_CALLBACK_SECRET",
            show_envvar=True,
            show_default=False,
            help="Verify X-Legnext-Signature with this secret (prefer the variable).",
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Seconds a signed timestamp may be off.")
    ] = 300.0,
    storage_block: StorageOption = "legnext-outputs",
    ledger_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="A local ledger directory instead of the bucket's."),
    ] = None,
) -> None:
    """Receive Legnext's callbacks: record, emit legnext.job.*, resume the waiting run.

    Uses the Prefect API at PREFECT_API_URL (else Prefect's temporary server) and the
    ledger of the flows: the one in --storage-block's bucket, or --ledger-dir.
    """
    from prefect_legnext.demo import quiet_logs

    with user_errors():
        if secret is not None and not secret.strip():
            raise ValueError("the callback secret (LEGNEXT_CALLBACK_SECRET or --secret) is empty")
        if tolerance <= 0:
            raise ValueError(f"--tolerance must be above 0 seconds (got {tolerance:g})")
    check_listen_address(host, port)
    if secret is None and not _is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/yellow] listening on {escape(host)} without a secret: anyone "
            "who reaches it can post deliveries (set LEGNEXT_CALLBACK_SECRET)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    quiet_logs()
    _log_to_stderr("prefect_legnext")  # the receiver's decisions, one line each
    with user_errors(), ExitStack() as stack:
        from prefect_legnext.orchestration.ledger import LocalLedger, S3Ledger
        from prefect_legnext.orchestration.receiver import build_receiver, serve
        from prefect_legnext.orchestration.resolve import load_bucket
        from prefect_legnext.prefect_api import prefect_api

        with console.status("starting Prefect"):
            stack.enter_context(prefect_api())
            ledger = (
                LocalLedger(ledger_dir) if ledger_dir is not None
                else S3Ledger(load_bucket(storage_block))
            )  # fmt: skip
        app = build_receiver(secret.strip() if secret else None, ledger, tolerance=tolerance)

        def ready(url: str) -> None:
            checked = "signatures checked" if secret else "signatures NOT checked (no secret)"
            console.print(f"Legnext callback receiver listening on {url}", highlight=False)
            console.print(f"  {checked}; ledger {ledger!r}", highlight=False)

        _serve_in_foreground(lambda: serve(app, host, port, on_ready=ready), host, port)


@app.command()
def sweep() -> None:
    """Settle flow runs whose Legnext callback is overdue, once (callback mode's safety
    net; schedule the legnext-sweeper deployment to run it every minute).

    GETs each overdue job once, resumes its run when it finished, releases its
    legnext-account slot, and renews the slots of jobs still running. Uses the Prefect
    API at PREFECT_API_URL.
    """
    from prefect_legnext.demo import quiet_logs

    quiet_logs()
    _log_to_stderr("prefect_legnext")
    with user_errors(), ExitStack() as stack:
        from prefect_legnext.orchestration.sweeper import sweep_once
        from prefect_legnext.prefect_api import prefect_api

        stack.enter_context(prefect_api())
        report = sweep_once()
    console.print(
        f"{len(report.waiting)} waiting, {len(report.checked)} checked, "
        f"{len(report.resumed)} resumed, {len(report.still_running)} still running, "
        f"{len(report.released)} slots released",
        highlight=False,
    )


def _log_to_stderr(name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def chain(
    prompt: str,
    steps: StepsOption = ALL_STEPS,
    image_no: ImageNoOption = 0,
    inpaint_prompt: InpaintPromptOption = "a small red sailboat",
    mask_rect: MaskRectOption = None,
    mask_url: MaskUrlOption = None,
    mask_file: MaskFileOption = None,
    retexture_prompt: RetexturePromptOption = "as a watercolour painting",
    retexture_source: SourceOption = RetextureSource.S3,
    credentials_block: CredentialsOption = "legnext",
    storage_block: StorageOption = "legnext-outputs",
    key_prefix: PrefixOption = "legnext",
    max_points: MaxPointsOption = None,
    max_wait_seconds: MaxWaitOption = 900.0,
    offline: OfflineOption = False,
    offline_output: OfflineOutputOption = Path("offline-output"),
    review: ReviewOption = False,
) -> None:
    """Run the chain generate -> enhance -> inpaint -> retexture for one prompt."""
    options = _chain_options(
        steps, image_no, inpaint_prompt, parse_mask(mask_rect, mask_url, mask_file),
        retexture_prompt, retexture_source, credentials_block, storage_block, key_prefix,
        max_points, max_wait_seconds, offline,
    )  # fmt: skip
    if review:
        options["review"] = options["steps"]
    asker = TerminalReview(console) if review else None
    with _flow_environment(offline) as blocks, listening(StepLines(console)), reviewing(asker):
        from prefect_legnext.orchestration.flows import legnext_chain

        with _keeping_offline_outputs(offline, blocks, key_prefix, offline_output):
            result = legnext_chain(prompt=prompt, **(options | blocks))
    _print_results([result], result.total_points)


@app.command()
def batch(
    prompts: Annotated[list[str] | None, typer.Argument(help="Prompts, one chain each.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="A file of prompts, one per line."),
    ] = None,
    steps: StepsOption = ALL_STEPS,
    image_no: ImageNoOption = 0,
    inpaint_prompt: InpaintPromptOption = "a small red sailboat",
    mask_rect: MaskRectOption = None,
    mask_url: MaskUrlOption = None,
    mask_file: MaskFileOption = None,
    retexture_prompt: RetexturePromptOption = "as a watercolour painting",
    retexture_source: SourceOption = RetextureSource.S3,
    credentials_block: CredentialsOption = "legnext",
    storage_block: StorageOption = "legnext-outputs",
    key_prefix: PrefixOption = "legnext",
    max_points: MaxPointsOption = None,
    max_wait_seconds: MaxWaitOption = 900.0,
    offline: OfflineOption = False,
    offline_output: OfflineOutputOption = Path("offline-output"),
    review: ReviewOption = False,
) -> None:
    """Run one chain per prompt, side by side inside the account's limit."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    wanted = list(prompts or [])
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except OSError as exc:
            raise fail(escape(f"--file: cannot read {file}: {exc.strerror or exc}")) from None
        wanted += [line.strip() for line in lines if line.strip()]
    if not wanted:
        raise fail("no prompts: pass them as arguments or with --file")
    options = _chain_options(
        steps, image_no, inpaint_prompt, parse_mask(mask_rect, mask_url, mask_file),
        retexture_prompt, retexture_source, credentials_block, storage_block, key_prefix,
        max_points, max_wait_seconds, offline,
    )  # fmt: skip
    if review:
        options["review"] = options["steps"]
    asker = TerminalReview(console) if review else None
    # The bar redraws its line, over a question asked in the terminal: none when asking.
    progress = Progress(
        "chains", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
        disable=asker is not None,
    )  # fmt: skip
    bar = progress.add_task("chains", total=len(wanted))

    def advance(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    from prefect_legnext.orchestration.flows import BATCH_LISTENERS, chain_label, legnext_batch

    numbers: dict[str, int] = {}
    for number, prompt in enumerate(wanted, start=1):
        numbers.setdefault(chain_label(prompt, f"chain {number}"), number)
    lines_out = StepLines(console, chains=numbers, phases=("submitted", "reused", "persisted"))
    BATCH_LISTENERS.append(advance)
    try:
        with (
            _flow_environment(offline) as blocks, listening(lines_out), reviewing(asker), progress,
            _keeping_offline_outputs(offline, blocks, key_prefix, offline_output),
        ):  # fmt: skip
            result = legnext_batch(prompts=wanted, **(options | blocks))
    finally:
        BATCH_LISTENERS.remove(advance)
    _print_results(result.chains, result.total_points)


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
    """Prepare the Prefect server at PREFECT_API_URL: blocks, legnext-account limit, work pool.

    Refuses to run without PREFECT_API_URL: Prefect would start a temporary server
    that vanishes when this command exits, taking the work pool with it.
    """
    from urllib.parse import urlsplit, urlunsplit

    import httpx
    from prefect.settings import PREFECT_API_URL
    from rich.markup import escape

    api_url = str(PREFECT_API_URL.value() or "").strip()
    if not api_url:
        raise fail(
            "no Prefect server configured: PREFECT_API_URL is not set, so setup would prepare "
            "a temporary server that vanishes when it exits; start one with `prefect server "
            "start`, then run `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` "
            "and setup again"
        )
    parts = urlsplit(api_url)
    if parts.username or parts.password:  # never print credentials embedded in the URL
        netloc = parts.hostname or ""
        parts = parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port else netloc)
    shown = urlunsplit(parts)

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
    except (httpx.HTTPError, RuntimeError) as exc:
        problem = exc
    if problem is not None:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise fail(
            escape(
                f"cannot reach the Prefect server at {shown} ({reason}): start it with "
                "`prefect server start` or fix PREFECT_API_URL"
            )
        )
    console.print(f"Prefect server: {shown}", highlight=False, soft_wrap=True)

    from prefect_legnext.orchestration.errors import ConfigurationError
    from prefect_legnext.orchestration.provisioning import (
        ACCOUNT_LIMIT,
        ensure_process_pool,
        register_blocks,
        upsert_account_limit,
    )
    from prefect_legnext.orchestration.resolve import DEFAULT_CREDENTIALS_BLOCK, load_credentials

    with user_errors():
        try:
            if concurrent_jobs is None:  # before changing anything on the server
                try:
                    concurrent_jobs = load_credentials(credentials_block).concurrent_jobs
                except ConfigurationError:
                    if credentials_block not in ("", DEFAULT_CREDENTIALS_BLOCK):
                        raise  # a block named on purpose that does not exist
                    concurrent_jobs = 6  # nothing saved or configured yet: Legnext's cap
            names = register_blocks()
            console.print(f"registered blocks: {', '.join(names)}", highlight=False)
            upsert_account_limit(concurrent_jobs)
            console.print(f"global concurrency limit {ACCOUNT_LIMIT}: {concurrent_jobs} slots")
            if work_pool:
                created = ensure_process_pool(work_pool)
                console.print(f"work pool {work_pool}: {'created' if created else 'exists'}")
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise fail(escape(f"the Prefect server at {shown} failed: {reason}")) from None


@app.command()
def demo(
    output_dir: Annotated[str, typer.Option(help="Where the contact sheet goes.")] = "demo-output",
) -> None:
    """Run the whole chain: offline (embedded simulator, local S3, nothing to configure)
    unless LEGNEXT_API_KEY is set, then on Legnext with your bucket."""
    from prefect_legnext.demo import run_demo
    from prefect_legnext.orchestration.resolve import (
        DEFAULT_CREDENTIALS_BLOCK,
        DEFAULT_STORAGE_BLOCK,
    )

    offline = not os.environ.get("LEGNEXT_API_KEY", "").strip()
    with user_errors():
        require_simulator("the demo")  # its contact sheet needs Pillow, offline or not
    if not offline:
        check_configuration(DEFAULT_CREDENTIALS_BLOCK, DEFAULT_STORAGE_BLOCK)
    with user_errors(), listening(StepLines(console)):
        run_demo(console, output_dir, offline)


def main() -> None:
    """The ``prefect-legnext`` entry point: a usage mistake is one line too."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            fail(escape(" ".join(exc.format_message().split()) + hint))
        code = exc.exit_code
    except typer.Abort:
        fail("aborted")
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
