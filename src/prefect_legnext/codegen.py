"""Write the typed per-endpoint surface out of the endpoint table.

`endpoints.CREATE_ENDPOINTS` declares each endpoint once. From it this module writes
the client methods (``_generated_client.py``: the `_SyncEndpoints` and `_AsyncEndpoints`
mixins of `LegnextClient` and `AsyncLegnextClient`) and the Prefect tasks
(``_generated_tasks.py``: ``submit_<endpoint>`` and ``asubmit_<endpoint>``) as ordinary
definitions, so that type checkers and editors see their real keyword arguments. The
generated files are checked in; regenerate them after changing the table or a request
model, and ``tests/test_surface.py`` fails while they are out of date::

    make generate                              # python -m prefect_legnext.codegen
    python -m prefect_legnext.codegen --check  # exit status 1 when a file is stale

Output is formatted with the project's ruff settings, so it needs the dev tools and a
source tree. The generator imports the package, and with it the generated modules as
they are: should a model they import be renamed, fix that import by hand first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from prefect_legnext.core import models
from prefect_legnext.core.endpoints import CREATE_ENDPOINTS, CreateEndpoint

PACKAGE_DIR = Path(__file__).resolve().parent
CLIENT_MODULE = PACKAGE_DIR / "core" / "_generated_client.py"
TASKS_MODULE = PACKAGE_DIR / "orchestration" / "_generated_tasks.py"
LINE_LENGTH = 100
GENERATED_NOTICE = (
    "Generated from `endpoints.CREATE_ENDPOINTS` by ``python -m prefect_legnext.codegen``\n"
    "(``make generate``): do not edit by hand."
)

# What each request field means, for the Args sections. "<endpoint>.<field>" wins over
# "<field>"; a field with neither falls back to its pydantic description, else the
# generator stops, so a new field cannot go out undocumented. An entry without a full
# stop gets the field's bounds from its model appended: " (0 to 3)."
FIELD_DOCS = {
    "callback": "an http(s) URL Legnext POSTs the job to when it finishes.",
    "text": "the prompt, Midjourney parameters included (``--ar 3:2``, ``--v 7``, ``--draft``).",
    "job_id": "the parent job's id.",
    "image_no": "which image of the parent job",
    "video_no": "which video of the parent job",
    "remix_prompt": "a prompt that steers the result.",
    "variation.type": "`VariationType.SUBTLE` or `VariationType.STRONG`.",
    "upscale.type": "`UpscaleType.SUBTLE` (120 points) or `UpscaleType.CREATIVE` (160 points).",
    "img_urls": "the http(s) URLs of the images to blend",
    "aspect_ratio": "the aspect ratio of the blend.",
    "img_url": "the http(s) URL of the image (at most 1024 characters).",
    "shorten.prompt": "the prompt to shorten.",
    "video_diffusion.prompt": (
        '``"<image url> <text>"``: the image to animate and how, instead of job_id and image_no.'
    ),
    "video_diffusion.job_id": "the id of the image job to animate (with image_no).",
    "video_diffusion.image_no": "which image of that job to animate",
    "extend_video.prompt": "how the video goes on.",
    "direction": "which way to extend the image.",
    "scale": "how many times larger the result is",
    "mask": "the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` "
    "(white is repainted).",
    "inpaint.mask": "the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` "
    "(white is repainted); required unless the deprecated area is given.",
    "area": "deprecated by Legnext (a DeprecationWarning): use mask.",
    "mode": "how closely the result follows the new prompt.",
    "canvas": "the size of the new canvas.",
    "img_pos": "the size and position of the image on the canvas.",
    "video_type": "`VideoType.SD_480P` (the default) or `VideoType.HD_720P` (1536 points).",
}
CREDENTIALS_DOC = ("credentials", "the Legnext credentials block.")
TASK_CONTROL_DOCS = (
    (
        "idempotency_key",
        "reuse the job submitted under this key before; derived from the flow run and the "
        "request when omitted (see `submit_request`).",
    ),
    (
        "ledger",
        "where keys are recorded: an `S3Bucket`, a directory path, or None for "
        "``$PREFECT_HOME/legnext/ledger``.",
    ),
    (
        "on_unknown",
        '"raise" (the default) stops when an earlier submit\'s outcome cannot be '
        'reconciled; "resubmit" accepts the risk of paying twice.',
    ),
)
TASK_CONTROL_PARAMETERS = (
    "idempotency_key: str | None = None",
    "ledger: LedgerArg = None",
    'on_unknown: OnUnknown = "raise"',
)
CLIENT_RETURNS = "The new job (status pending): pass it to `wait_for_job`."
CLIENT_RAISES = (
    ("InvalidRequestError", "a field breaks a rule (named with the rule); nothing was sent."),
    ("OutcomeUnknownError", "it was sent but the answer was lost; never retried blindly."),
    ("LegnextAPIError", "Legnext refused it (see its subclasses)."),
)
TASK_RETURNS = "The job as Legnext answered it (status pending), or the job reused under the key."
TASK_RAISES = (
    ("InvalidRequestError", "a field breaks a rule; nothing was sent, and it is not retried."),
    ("OutcomeUnknownError", "an earlier submit's outcome is unknown (see on_unknown)."),
    ("LegnextAPIError", "Legnext refused it (see its subclasses)."),
)


@dataclass(frozen=True)
class Parameter:
    """A request field as a keyword-only parameter, in source text."""

    name: str
    annotation: str
    default: str | None  # None: required
    doc: str

    def source(self) -> str:
        if self.default is None:
            return f"{self.name}: {self.annotation}"
        return f"{self.name}: {self.annotation} = {self.default}"


_BUILTINS: dict[Any, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    None: "None",
    type(None): "None",
}


class _Names:
    """The names of `prefect_legnext.core.models` that rendered annotations use."""

    def __init__(self) -> None:
        self.models: set[str] = {"LegnextRequest"}  # the parameter of `create`/`_submit`
        self.uses_literal = False


def render_annotation(annotation: Any, names: _Names) -> str:
    """Source text of a field's type, for a caller: validation metadata (``Annotated``)
    dropped; enums, models, ``Literal``, ``list`` and ``None`` unions kept.

    Raises:
        TypeError: a type this renderer does not know how to spell.
    """
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return render_annotation(args[0], names)
    if origin in (Union, types.UnionType):
        return " | ".join(render_annotation(arg, names) for arg in args)
    if origin is Literal:
        names.uses_literal = True
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is list:
        return f"list[{render_annotation(args[0], names)}]"
    if annotation in _BUILTINS:
        return _BUILTINS[annotation]
    name = getattr(annotation, "__name__", "")
    is_model_type = isinstance(annotation, type) and issubclass(annotation, Enum | BaseModel)
    if is_model_type and getattr(models, name, None) is annotation:
        names.models.add(name)
        return name
    raise TypeError(f"cannot render the annotation {annotation!r}")


def _bounds(info: FieldInfo) -> str:
    """`` (0 to 3)``-style bounds of a number or list field, from its validation metadata."""
    metadata = list(info.metadata)
    pending = [info.annotation]
    while pending:  # bounds declared inside the type (``ImageNo | None``)
        annotation = pending.pop()
        if get_origin(annotation) is Annotated:
            for item in get_args(annotation)[1:]:  # a nested Field(...) holds its own
                metadata += [item, *getattr(item, "metadata", [])]
        pending.extend(get_args(annotation))
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.MinLen):
            low = item.ge if isinstance(item, annotated_types.Ge) else item.min_length
        if isinstance(item, annotated_types.Le | annotated_types.MaxLen):
            high = item.le if isinstance(item, annotated_types.Le) else item.max_length
    if low is None or high is None:
        return ""
    return f" ({low} to {high})"


def _field_doc(endpoint: CreateEndpoint, name: str, info: FieldInfo) -> str:
    doc = FIELD_DOCS.get(f"{endpoint.name}.{name}") or FIELD_DOCS.get(name) or info.description
    if not doc:
        raise ValueError(
            f"{endpoint.request.__name__}.{name} has no documentation: add it to FIELD_DOCS"
        )
    if doc.endswith("."):
        return doc
    return f"{doc}{_bounds(info)}."


def parameters(endpoint: CreateEndpoint, names: _Names) -> list[Parameter]:
    """The request model's fields: required ones, then optional ones, then those every
    request shares (``callback``), each group in model order."""
    fields = endpoint.request.model_fields
    shared = models.LegnextRequest.model_fields
    ordered = [n for n, i in fields.items() if i.is_required() and n not in shared]
    ordered += [n for n, i in fields.items() if not i.is_required() and n not in shared]
    ordered += [n for n in fields if n in shared]
    result = []
    for name in ordered:
        info = fields[name]
        default = None
        if not info.is_required():
            if info.default is not None and not isinstance(info.default, str | int | float):
                raise TypeError(f"{endpoint.request.__name__}.{name}: unsupported default")
            default = repr(info.default)
        annotation = render_annotation(info.annotation, names)
        result.append(Parameter(name, annotation, default, _field_doc(endpoint, name, info)))
    return result


def _docstring(paragraphs: Sequence[str], sections: Sequence[tuple[str, Any]], indent: int) -> str:
    """A Google-style docstring at `indent`, wrapped to the line length."""
    width = LINE_LENGTH - indent
    lines: list[str] = []
    for paragraph in paragraphs:
        # The first line also holds the opening quotes.
        lines += [*textwrap.wrap(paragraph, width - 3 if not lines else width), ""]
    for title, content in sections:
        lines.append(f"{title}:")
        if isinstance(content, str):
            lines += textwrap.wrap(content, width, initial_indent="    ", subsequent_indent="    ")
        else:
            for name, text in content:
                lines += textwrap.wrap(
                    f"{name}: {text}", width, initial_indent="    ", subsequent_indent="        "
                )
        lines.append("")
    lines[0] = '"""' + lines[0]
    lines[-1] = '"""'
    pad = " " * indent
    return "\n".join(pad + line if line else "" for line in lines)


def _summary(endpoint: CreateEndpoint) -> list[str]:
    return [
        endpoint.summary,
        f"A paid call: ``POST {endpoint.path}``, {endpoint.points} points base; the keyword "
        f"arguments are the fields of `{endpoint.request.__name__}`.",
    ]


def _build_call(endpoint: CreateEndpoint, params: Sequence[Parameter]) -> str:
    arguments = ", ".join(f"{p.name}={p.name}" for p in params)
    return f'ENDPOINTS_BY_NAME["{endpoint.name}"].build({arguments})'


def _client_method(endpoint: CreateEndpoint, names: _Names, is_async: bool) -> str:
    params = parameters(endpoint, names)
    signature = ", ".join(["self", "*", *(p.source() for p in params)])
    doc = _docstring(
        _summary(endpoint),
        [
            ("Args", [(p.name, p.doc) for p in params]),
            ("Returns", CLIENT_RETURNS),
            ("Raises", CLIENT_RAISES),
        ],
        indent=8,
    )
    prefix, wait = ("async ", "await ") if is_async else ("", "")
    return (
        f"    {prefix}def {endpoint.name}({signature}) -> Job:\n"
        f"{doc}\n"
        f"        return {wait}self.create({_build_call(endpoint, params)})\n"
    )


def render_client(endpoints: Sequence[CreateEndpoint] = CREATE_ENDPOINTS) -> str:
    """The source of ``_generated_client.py`` (before formatting)."""
    names = _Names()
    sync_methods = "\n".join(_client_method(e, names, is_async=False) for e in endpoints)
    async_methods = "\n".join(_client_method(e, names, is_async=True) for e in endpoints)
    literal = "from typing import Literal\n" if names.uses_literal else ""
    model_names = ", ".join(sorted(names.models))
    return f'''"""The create methods of the Legnext clients, one per endpoint of the table.

{GENERATED_NOTICE}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
{literal}
from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.core.models import {model_names}
from prefect_legnext.core.responses import Job


class _SyncEndpoints(ABC):
    """`LegnextClient`'s create methods: each validates its keyword arguments into the
    endpoint's request model, then submits it with `create`."""

    @abstractmethod
    def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call)."""

{sync_methods}

class _AsyncEndpoints(ABC):
    """`AsyncLegnextClient`'s create methods: `_SyncEndpoints`, awaited."""

    @abstractmethod
    async def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call)."""

{async_methods}'''


def _task_pair(endpoint: CreateEndpoint, names: _Names) -> str:
    params = parameters(endpoint, names)
    signature = ", ".join(
        [
            "credentials: LegnextCredentials",
            "*",
            *(p.source() for p in params),
            *TASK_CONTROL_PARAMETERS,
        ]
    )
    doc = _docstring(
        [
            *_summary(endpoint),
            "Submitted at most once per idempotency key: a retried task or a re-run flow "
            "reuses the job instead of paying again.",
        ],
        [
            (
                "Args",
                [CREDENTIALS_DOC, *((p.name, p.doc) for p in params), *TASK_CONTROL_DOCS],
            ),
            ("Returns", TASK_RETURNS),
            ("Raises", TASK_RAISES),
        ],
        indent=4,
    )
    options = f'**{{**SUBMIT_OPTIONS, "name": "legnext-{endpoint.slug}"}}'
    submit = "_submit, credentials, request, idempotency_key, ledger, on_unknown"
    async_doc = _docstring(
        [
            endpoint.summary,
            f"The async form of `submit_{endpoint.name}`; see it for the arguments.",
        ],
        [],
        indent=4,
    )
    return f"""
@task({options})
async def asubmit_{endpoint.name}({signature}) -> Job:
{async_doc}
    request = {_build_call(endpoint, params)}
    return await run_sync_in_worker_thread({submit})


@async_dispatch(asubmit_{endpoint.name})
@task({options})
def submit_{endpoint.name}({signature}) -> Job:
{doc}
    request = {_build_call(endpoint, params)}
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)

"""


def render_tasks(endpoints: Sequence[CreateEndpoint] = CREATE_ENDPOINTS) -> str:
    """The source of ``_generated_tasks.py`` (before formatting)."""
    names = _Names()
    pairs = "\n".join(_task_pair(e, names) for e in endpoints)
    typing_names = "TYPE_CHECKING, Any, Literal" if names.uses_literal else "TYPE_CHECKING, Any"
    model_names = ", ".join(sorted(names.models))
    table = "".join(f'"{e.name}": (submit_{e.name}, asubmit_{e.name}),\n' for e in endpoints)
    exported = ", ".join(
        sorted(f'"{prefix}{e.name}"' for e in endpoints for prefix in ("submit_", "asubmit_"))
    )
    return f'''"""The Prefect tasks of the create endpoints: ``submit_<endpoint>`` and
``asubmit_<endpoint>`` for each endpoint of the table, re-exported by
`prefect_legnext.orchestration.tasks` (import them from there).

Each validates its keyword arguments into the endpoint's request model (before any
paid call) and hands the request to `tasks._submit`, which submits it at most once per
idempotency key. This module imports nothing of `tasks` (which imports it) but at call
time, so either can be imported first.

{GENERATED_NOTICE}
"""

from __future__ import annotations

from typing import {typing_names}

from prefect import task
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.utilities.asyncutils import run_sync_in_worker_thread

from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.orchestration.ledger import OnUnknown
from prefect_legnext.core.models import {model_names}
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.task_options import SUBMIT_OPTIONS

if TYPE_CHECKING:
    from prefect_legnext.orchestration.tasks import LedgerArg


def _submit(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None,
    ledger: LedgerArg,
    on_unknown: OnUnknown,
) -> Job:
    """Submit once, through the ledger: `prefect_legnext.orchestration.tasks._submit`."""
    from prefect_legnext.orchestration import tasks

    return tasks._submit(credentials, request, idempotency_key, ledger, on_unknown)

{pairs}
# The (sync, async) task pair of each endpoint, by endpoint name.
ENDPOINT_TASKS: dict[str, tuple[Any, Any]] = {{
{table}}}

__all__: list[str] = [{exported}]
'''


RENDERERS: dict[Path, Callable[[Sequence[CreateEndpoint]], str]] = {
    CLIENT_MODULE: render_client,
    TASKS_MODULE: render_tasks,
}


def ruff_format(source: str, path: Path) -> str:
    """`source` as ``ruff`` leaves it in `path`: imports sorted, then formatted, with the
    project's settings (found from `path`).

    Raises:
        RuntimeError: ruff is missing or refused the source.
    """
    for command in (["check", "--fix", "--select", "I"], ["format"]):
        done = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
            [sys.executable, "-m", "ruff", *command, "--quiet", "--stdin-filename", str(path)],
            input=source,
            capture_output=True,
            text=True,
            check=False,
            cwd=path.parent,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ruff {command[0]} failed on {path.name}: {done.stderr.strip()}")
        source = done.stdout
    return source


def generate(endpoints: Sequence[CreateEndpoint] = CREATE_ENDPOINTS) -> dict[Path, str]:
    """The content of each generated module, formatted, for `endpoints`."""
    return {path: ruff_format(render(endpoints), path) for path, render in RENDERERS.items()}


def stale_modules(endpoints: Sequence[CreateEndpoint] = CREATE_ENDPOINTS) -> list[Path]:
    """The generated modules whose content differs from what `endpoints` generate."""
    return [
        path
        for path, content in generate(endpoints).items()
        if not path.exists() or path.read_text(encoding="utf-8") != content
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prefect_legnext.codegen",
        description="Write the typed client methods and tasks from the endpoint table.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a module is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_modules()
        for path in stale:
            print(f"{path.name} is out of date with the endpoint table: run `make generate`")
        return 1 if stale else 0
    for path, content in generate().items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
