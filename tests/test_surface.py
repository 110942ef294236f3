"""The typed endpoint surface: the client methods and submit tasks generated from the
endpoint table are up to date with it, take exactly the request's fields, and are seen
by a type checker (a misspelt method, keyword or task is an error, not a runtime surprise).
"""

from __future__ import annotations

import functools
import inspect
import operator
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import pytest

from prefect_legnext import AsyncLegnextClient, Job, LegnextClient, codegen
from prefect_legnext.core import models
from prefect_legnext.core.endpoints import (
    CREATE_ENDPOINTS,
    PER_IMAGE_ACTIONS,
    PROMPT_FIELDS,
    VENDOR_ACTION_KEYS,
    CreateEndpoint,
    ParentKind,
)
from prefect_legnext.orchestration import tasks as legnext_tasks

CONTROL_DEFAULTS = {"idempotency_key": None, "ledger": None, "on_unknown": "raise"}
KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
by_name = pytest.mark.parametrize("endpoint", CREATE_ENDPOINTS, ids=lambda e: e.name)


# -- the generated modules follow the table ------------------------------------------


def test_the_generated_modules_are_what_the_table_generates() -> None:
    stale = [path.name for path in codegen.stale_modules()]
    assert not stale, (
        f"{', '.join(stale)} out of date with endpoints.CREATE_ENDPOINTS: run `make generate`"
    )


def test_the_check_notices_a_table_that_changed(capsys: pytest.CaptureFixture[str]) -> None:
    assert codegen.main(["--check"]) == 0
    assert capsys.readouterr().out == ""
    without_last = CREATE_ENDPOINTS[:-1]
    assert codegen.stale_modules(without_last) == [codegen.CLIENT_MODULE, codegen.TASKS_MODULE]


def test_an_undocumented_field_stops_the_generator() -> None:
    class NewRequest(models.LegnextRequest):
        colour: str

    new = CreateEndpoint("paint", "paint", NewRequest, CREATE_ENDPOINTS[0].output, 1, (1, 2), "x")
    with pytest.raises(ValueError, match=r"NewRequest\.colour has no documentation"):
        codegen.render_client([new])


# -- every endpoint: a method on both clients and a task pair, with its fields -------


def caller_type(annotation: Any) -> Any:
    """A field's type as a caller passes it: without validation metadata."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return caller_type(args[0])
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, [caller_type(arg) for arg in args])
    if origin is list:
        return list[caller_type(args[0])]
    return annotation


def field_parameters(endpoint: CreateEndpoint) -> dict[str, tuple[Any, Any]]:
    """Each request field: (type, default), the default `empty` when it is required."""
    return {
        name: (
            caller_type(info.annotation),
            inspect.Parameter.empty if info.is_required() else info.default,
        )
        for name, info in endpoint.request.model_fields.items()
    }


@by_name
@pytest.mark.parametrize("client_class", [LegnextClient, AsyncLegnextClient])
def test_each_client_has_a_method_taking_the_request_fields(
    endpoint: CreateEndpoint, client_class: type[Any]
) -> None:
    method = getattr(client_class, endpoint.name)
    signature = inspect.signature(method)
    hints = typing.get_type_hints(method)
    self_param, *params = signature.parameters.values()
    assert self_param.name == "self"
    assert all(p.kind is KEYWORD_ONLY for p in params)
    assert {p.name: (hints[p.name], p.default) for p in params} == field_parameters(endpoint)
    assert hints["return"] is Job
    assert inspect.iscoroutinefunction(method) is (client_class is AsyncLegnextClient)
    assert endpoint.summary in (method.__doc__ or "")


def test_the_clients_resolve_no_attribute_dynamically() -> None:
    for client_class in (LegnextClient, AsyncLegnextClient):
        assert not any("__getattr__" in vars(cls) for cls in client_class.__mro__[:-1])
    assert "__getattr__" not in vars(legnext_tasks)


@by_name
def test_each_endpoint_has_a_task_pair_taking_the_request_fields(
    endpoint: CreateEndpoint,
) -> None:
    sync_task = getattr(legnext_tasks, f"submit_{endpoint.name}")
    async_task = getattr(legnext_tasks, f"asubmit_{endpoint.name}")
    assert legnext_tasks.ENDPOINT_TASKS[endpoint.name] == (sync_task, async_task)
    assert {f"submit_{endpoint.name}", f"asubmit_{endpoint.name}"} <= set(legnext_tasks.__all__)
    assert sync_task.aio is async_task
    client_annotations = getattr(LegnextClient, endpoint.name).__annotations__
    for task_obj in (sync_task.__wrapped__, async_task):
        assert task_obj.name == f"legnext-{endpoint.slug}"
        assert task_obj.retries == 3
        submit_request = legnext_tasks.asubmit_request
        assert task_obj.retry_condition_fn.__name__ == submit_request.retry_condition_fn.__name__
        credentials, *params = inspect.signature(task_obj.fn).parameters.values()
        assert credentials.name == "credentials"
        assert all(p.kind is KEYWORD_ONLY for p in params)
        defaults = {p.name: p.default for p in params}
        fields = field_parameters(endpoint)
        assert defaults == {**{n: d for n, (_, d) in fields.items()}, **CONTROL_DEFAULTS}
        annotations = task_obj.fn.__annotations__
        assert {n: annotations[n] for n in fields} == {n: client_annotations[n] for n in fields}
    assert inspect.iscoroutinefunction(async_task.fn)
    assert not inspect.iscoroutinefunction(sync_task.__wrapped__.fn)


def test_the_generated_tasks_import_on_their_own() -> None:
    # Task functions pickle by reference to their module: it must import first, alone.
    code = (
        "import prefect_legnext.orchestration._generated_tasks as g;"
        " print(g.submit_diffusion.aio.name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "legnext-diffusion", done.stderr


# -- one definition each, in the table -----------------------------------------------


def test_per_image_actions_are_the_image_actions_the_vendor_shows() -> None:
    assert set(PER_IMAGE_ACTIONS) == {
        "edit", "inpaint", "outpaint", "pan", "remix", "upscale", "variation",
    }  # fmt: skip
    image_actions = {e.action for e in CREATE_ENDPOINTS if e.parent is ParentKind.IMAGE}
    assert image_actions - set(PER_IMAGE_ACTIONS) == {"enhance"}  # no vendor text shows it
    assert VENDOR_ACTION_KEYS - set(PER_IMAGE_ACTIONS) == {"reroll"}


def constraints(annotation: Any) -> list[Any]:
    """The validation metadata inside a type (``Prompt | None`` keeps it there)."""
    found: list[Any] = []
    if get_origin(annotation) is Annotated:
        for item in get_args(annotation)[1:]:
            found += [item, *getattr(item, "metadata", [])]
    for arg in get_args(annotation):
        found += constraints(arg)
    return found


def test_prompt_fields_name_every_prompt_and_no_request_has_two() -> None:
    prompt_rule = annotated_types.MaxLen(models.PROMPT_MAX)
    seen: set[str] = set()
    for endpoint in CREATE_ENDPOINTS:
        fields = endpoint.request.model_fields
        prompts = {
            name
            for name, info in fields.items()
            if prompt_rule in [*info.metadata, *constraints(info.annotation)]
        }
        assert len(prompts) <= 1 and prompts == set(PROMPT_FIELDS) & set(fields), endpoint.name
        seen |= prompts
    assert seen == set(PROMPT_FIELDS)


# -- a type checker sees the surface -------------------------------------------------

MISSPELT = """\
from prefect_legnext import LegnextClient
from prefect_legnext.orchestration.tasks import submit_difusion


def generate(client: LegnextClient) -> None:
    client.difusion(text="a lighthouse")
    client.diffusion(txt="a lighthouse")
"""

CORRECT = """\
from prefect import flow

from prefect_legnext import AsyncLegnextClient, Job, LegnextClient
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.core.models import Mask, UpscaleType
from prefect_legnext.orchestration.tasks import asubmit_diffusion, submit_diffusion


def upscale_first(client: LegnextClient) -> Job:
    grid = client.wait_for_job(client.diffusion(text="a lighthouse at dawn --v 7"))
    return client.upscale(job_id=grid.job_id, image_no=0, type=UpscaleType.CREATIVE)


async def repaint(client: AsyncLegnextClient, job: Job) -> Job:
    mask = Mask(url="https://example.com/mask.png")
    return await client.inpaint(job_id=job.job_id, image_no=1, mask=mask, remix_prompt="a door")


@flow
def generate(credentials: LegnextCredentials) -> None:
    submit_diffusion(credentials, text="a fox", idempotency_key="fox-1")


@flow
async def agenerate(credentials: LegnextCredentials) -> Job:
    return await asubmit_diffusion(credentials, text="a fox", on_unknown="raise")
"""


def test_mypy_reports_a_misspelt_method_keyword_and_task(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    (tmp_path / "misspelt.py").write_text(MISSPELT)
    (tmp_path / "correct.py").write_text(CORRECT)
    pytest_cache = getattr(pytestconfig, "cache", None)  # kept between runs: mypy is slow cold
    cache = pytest_cache.mkdir("mypy-surface") if pytest_cache else tmp_path / ".mypy_cache"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
         "--show-error-codes", "misspelt.py", "correct.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("correct.py")], report
    expected = {
        2: 'Module "prefect_legnext.orchestration.tasks" has no attribute "submit_difusion"',
        6: '"LegnextClient" has no attribute "difusion"',
        7: 'Unexpected keyword argument "txt"',
    }
    for line, message in expected.items():
        assert any(e.startswith(f"misspelt.py:{line}:") and message in e for e in errors), report
    assert done.returncode == 1, report
