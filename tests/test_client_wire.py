"""What the clients put on the wire and how they read Legnext's answers (respx)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_legnext import (
    CREATE_ENDPOINTS,
    AuthenticationError,
    BadRequestError,
    Balance,
    ContentRejectedError,
    InsufficientPointsError,
    InvalidRequestError,
    Job,
    JobStatus,
    LegnextAPIError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    endpoint,
)
from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.core.errors import api_error_from_body
from prefect_legnext.core.responses import AccountInfo, ActiveTasks
from prefect_legnext.core.retry import NO_RETRY

JOB = "5dd94ec3-7282-4f04-9445-59e850ef1822"
IMG = "https://img.example.test/cat.png"
IMG2 = "https://img.example.test/dog.png"
HOOK = "https://hooks.example.test/legnext"
CANVAS = {"width": 1500, "height": 1000}
IMG_POS = {"width": 1000, "height": 1000, "x": 250, "y": 0}
AREA = {"width": 1024, "height": 1024, "points": [10, 10, 100, 10, 100, 100, 10, 100]}

# One valid request per create endpoint: (path, snake_case kwargs, the exact JSON body expected).
# Written out by hand, so that they check to_wire() rather than repeat it.
WIRE_EXAMPLES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "diffusion": (
        "/api/v1/diffusion",
        {"text": "a lighthouse --v 7", "callback": HOOK},
        {"text": "a lighthouse --v 7", "callback": HOOK},
    ),
    "variation": (
        "/api/v1/variation",
        {"job_id": JOB, "image_no": 1, "type": 1, "remix_prompt": "in red"},
        {"jobId": JOB, "imageNo": 1, "type": 1, "remixPrompt": "in red"},
    ),
    "upscale": (
        "/api/v1/upscale",
        {"job_id": JOB, "image_no": 2, "type": 0},
        {"jobId": JOB, "imageNo": 2, "type": 0},
    ),
    "reroll": ("/api/v1/reroll", {"job_id": JOB}, {"jobId": JOB}),
    "blend": (
        "/api/v1/blend",
        {"img_urls": [IMG, IMG2], "aspect_ratio": "2:3"},
        {"imgUrls": [IMG, IMG2], "aspect_ratio": "2:3"},
    ),
    "describe": ("/api/v1/describe", {"img_url": IMG}, {"imgUrl": IMG}),
    "shorten": ("/api/v1/shorten", {"prompt": "a long prompt"}, {"prompt": "a long prompt"}),
    "pan": (
        "/api/v1/pan",
        {"job_id": JOB, "image_no": 0, "direction": 3, "scale": 1.5, "remix_prompt": "sea"},
        {"jobId": JOB, "imageNo": 0, "direction": 3, "scale": 1.5, "remixPrompt": "sea"},
    ),
    "outpaint": (
        "/api/v1/outpaint",
        {"job_id": JOB, "image_no": 3, "scale": 2.0},
        {"jobId": JOB, "imageNo": 3, "scale": 2.0},
    ),
    "inpaint": (
        "/api/v1/inpaint",
        {"job_id": JOB, "image_no": 0, "mask": {"areas": [AREA]}, "remix_prompt": "a tree"},
        {"jobId": JOB, "imageNo": 0, "mask": {"areas": [AREA]}, "remixPrompt": "a tree"},
    ),
    "remix": (
        "/api/v1/remix",
        {"job_id": JOB, "image_no": 1, "remix_prompt": "winter", "mode": 1},
        {"jobId": JOB, "imageNo": 1, "remixPrompt": "winter", "mode": 1},
    ),
    "edit": (
        "/api/v1/edit",
        {"job_id": JOB, "image_no": 0, "canvas": CANVAS, "img_pos": IMG_POS, "remix_prompt": "x"},
        {"jobId": JOB, "imageNo": 0, "canvas": CANVAS, "imgPos": IMG_POS, "remixPrompt": "x"},
    ),
    "upload_paint": (
        "/api/v1/upload-paint",
        {
            "img_url": IMG,
            "canvas": CANVAS,
            "img_pos": IMG_POS,
            "remix_prompt": "x",
            "mask": {"url": IMG2},
        },
        {
            "imgUrl": IMG,
            "canvas": CANVAS,
            "imgPos": IMG_POS,
            "remixPrompt": "x",
            "mask": {"url": IMG2},
        },
    ),
    "retexture": (
        "/api/v1/retexture",
        {"img_url": IMG, "remix_prompt": "oil painting"},
        {"imgUrl": IMG, "remixPrompt": "oil painting"},
    ),
    "remove_background": ("/api/v1/remove-background", {"img_url": IMG}, {"imgUrl": IMG}),
    "enhance": (
        "/api/v1/enhance",
        {"job_id": JOB, "image_no": 0},
        {"jobId": JOB, "imageNo": 0},
    ),
    "video_diffusion": (
        "/api/v1/video-diffusion",
        {"job_id": JOB, "image_no": 2, "prompt": "slow zoom", "video_type": 1},
        {"jobId": JOB, "imageNo": 2, "prompt": "slow zoom", "videoType": 1},
    ),
    "extend_video": (
        "/api/v1/extend-video",
        {"job_id": JOB, "video_no": 3, "prompt": "keep going"},
        {"jobId": JOB, "videoNo": 3, "prompt": "keep going"},
    ),
    "video_upscale": (
        "/api/v1/video-upscale",
        {"job_id": JOB, "video_no": 1},
        {"jobId": JOB, "videoNo": 1},
    ),
}
ENDPOINT_IDS = [e.name for e in CREATE_ENDPOINTS]


def wire_example(name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if name not in WIRE_EXAMPLES:
        pytest.fail(f"endpoint {name!r} has no example in WIRE_EXAMPLES: add one")
    return WIRE_EXAMPLES[name]


def test_examples_match_the_endpoint_table() -> None:
    assert set(WIRE_EXAMPLES) == set(ENDPOINTS_BY_NAME)


def assert_sent(route: Any, legnext: Any, method: str, path: str, body: Any | None) -> None:
    assert route.call_count == 1
    request: httpx.Request = route.calls.last.request
    assert request.method == method
    assert request.url.path == path
    assert request.url.host == httpx.URL(legnext.base_url).host
    assert request.headers["x-api-key"] == legnext.api_key
    assert request.headers["accept"] == "application/json"
    if body is None:
        assert request.content == b""
    else:
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == body


# --- create endpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_create_method_sends_camel_case_json_and_reads_the_task(
    legnext: Any, api: Any, task_object: Any, name: str
) -> None:
    path, fields, body = wire_example(name)
    route = api.post(path).respond(200, json=task_object(task_type=name))

    job = legnext(name, **fields)

    assert_sent(route, legnext, "POST", path, body)
    assert isinstance(job, Job)
    assert job.job_id == task_object()["job_id"]
    assert job.status is JobStatus.PENDING
    assert job.task_type == name
    assert job.meta.usage.frozen == 80
    assert not job.is_finished


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_create_with_a_built_request_sends_the_same_body(
    legnext: Any, api: Any, task_object: Any, name: str
) -> None:
    path, fields, body = wire_example(name)
    route = api.post(path).respond(200, json=task_object(task_type=name))

    job = legnext("create", endpoint(name).build(**fields))

    assert_sent(route, legnext, "POST", path, body)
    assert job.task_type == name


def nulls_in(value: Any, where: str = "$") -> list[str]:
    """JSON paths of every null in `value`, at any depth."""
    if value is None:
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls_in(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls_in(v, f"{where}[{i}]")]
    return []


def with_explicit_nones(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` plus None for every optional field left out, nested mask fields included."""
    model = endpoint(name).request
    nones = {f: None for f, info in model.model_fields.items() if not info.is_required()}
    given = {**nones, **fields}
    if isinstance(given.get("mask"), dict):
        given["mask"] = {"areas": None, "url": None, **given["mask"]}
    return given


def test_nulls_in_finds_nested_nulls() -> None:
    assert nulls_in({"a": [1, {"b": None}], "c": None, "d": {}}) == ["$.a[1].b", "$.c"]


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_no_null_reaches_the_wire_at_any_depth(
    legnext: Any, api: Any, task_object: Any, name: str
) -> None:
    # Only `nullable` fields may be null for Legnext (and the simulator answers 400 to the
    # others): the client leaves every unset field out, however the caller spelt "unset".
    path, fields, body = wire_example(name)
    given = with_explicit_nones(name, fields)
    wire = endpoint(name).build(**given).to_wire()
    assert nulls_in(wire) == []
    route = api.post(path).respond(200, json=task_object(task_type=name))

    legnext(name, **given)

    sent = json.loads(route.calls.last.request.content)
    assert nulls_in(sent) == []
    assert sent == body == wire


# --- reads ----------------------------------------------------------------------------------------


def test_get_job_reads_a_completed_task(legnext: Any, api: Any, task_object: Any) -> None:
    body = task_object(job_id=JOB, status="completed", task_type="upscale")
    route = api.get(f"/api/v1/job/{JOB}").respond(200, json=body)

    job = legnext("get_job", JOB.upper())  # any UUID spelling; the canonical one is sent

    assert_sent(route, legnext, "GET", f"/api/v1/job/{JOB}", None)
    assert job.is_completed
    assert job.output_urls == body["output"]["image_urls"]
    assert job.output is not None and job.output.allows("upscale", 3)
    assert job.points == 80
    assert job.meta.ended_at == datetime(2025, 10, 14, 4, 15, 43, tzinfo=UTC)


def test_get_job_accepts_a_job(legnext: Any, api: Any, task_object: Any) -> None:
    route = api.get(f"/api/v1/job/{JOB}").respond(200, json=task_object(job_id=JOB))
    job = legnext("get_job", Job.model_validate(task_object(job_id=JOB)))
    assert route.call_count == 1
    assert job.job_id == JOB


@pytest.mark.parametrize("bad", ["job_12345", "", "../account/balance"])
def test_get_job_refuses_a_non_uuid_without_a_call(legnext: Any, api: Any, bad: str) -> None:
    anything = api.route()
    with pytest.raises(InvalidRequestError, match="job_id"):
        legnext("get_job", bad)
    assert anything.call_count == 0


BALANCE_DATA = {
    "account_id": 1,
    "balance_usd": 72.048,
    "available_credits": 71000,
    "available_points": 1048,
    "alert_threshold": 10,
    "low_balance_alert": False,
    "updated_at": "2025-11-05T08:22:37.784663288Z",
    "new_field": {"ignored": True},
}


@pytest.mark.parametrize(
    "body",
    [{"code": 200, "message": "success", "data": BALANCE_DATA}, BALANCE_DATA],
    ids=["wrapped", "bare"],
)
def test_balance(legnext: Any, api: Any, body: dict) -> None:
    route = api.get("/api/account/balance").respond(200, json=body)

    balance = legnext("balance")

    assert_sent(route, legnext, "GET", "/api/account/balance", None)
    assert isinstance(balance, Balance)
    assert balance.available_points == 1048
    assert balance.balance_usd == pytest.approx(72.048)
    assert balance.available_credits == 71000
    assert balance.low_balance_alert is False
    assert balance.updated_at is not None and balance.updated_at.year == 2025


def test_account_info(legnext: Any, api: Any) -> None:
    data = {"account_id": "a1b2", "email": "ops@example.test", "plan": "pro", "quota": {"x": 1}}
    route = api.get("/api/account/info").respond(200, json={"code": 200, "data": data})

    info = legnext("account_info")

    assert_sent(route, legnext, "GET", "/api/account/info", None)
    assert isinstance(info, AccountInfo)
    assert (info.account_id, info.email, info.plan) == ("a1b2", "ops@example.test", "pro")


def test_active_tasks(legnext: Any, api: Any) -> None:
    data = {
        "total_active": 2,
        "concurrent_limit": 6,
        "tasks": [
            {"job_id": JOB, "task_type": "remove-background", "status": "processing"},
            {"job_id": JOB, "task_type": "diffusion", "status": "queued_somewhere", "progress": 5},
        ],
    }
    route = api.get("/api/account/active_tasks").respond(200, json={"code": 200, "data": data})

    active = legnext("active_tasks")

    assert_sent(route, legnext, "GET", "/api/account/active_tasks", None)
    assert isinstance(active, ActiveTasks)
    assert (active.total_active, active.concurrent_limit) == (2, 6)
    assert active.tasks[0].task_type == "remove_background"
    assert active.tasks[0].status is JobStatus.PROCESSING
    assert active.tasks[1].status == "queued_somewhere"


# --- error mapping --------------------------------------------------------------------------------

STATUS_CLASSES: dict[int, type[LegnextAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientPointsError,
    403: ContentRejectedError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
    500: ServerError,
    503: ServerError,
}


def error_body(shape: str, status: int, task_object: Any) -> dict[str, Any]:
    message = f"problem number {status}"
    if shape == "A":
        return {"code": status, "message": message, "raw_message": "upstream no", "detail": None}
    if shape == "B":
        error = {"code": 10000 + status, "raw_message": "upstream no", "message": message}
        return task_object(job_id=JOB, status="failed", error={**error, "detail": None})
    return {"error": {"code": status, "message": message}}


def raised(call: Any) -> LegnextAPIError:
    with pytest.raises(LegnextAPIError) as info:
        call()
    return info.value


@pytest.mark.parametrize("shape", ["A", "B", "C"])
@pytest.mark.parametrize("status", STATUS_CLASSES)
def test_error_status_and_body_shape_map_to_the_error_class(
    legnext: Any, api: Any, task_object: Any, status: int, shape: str
) -> None:
    headers = {"Retry-After": "7"} if status == 429 else {}
    body = error_body(shape, status, task_object)
    api.get(f"/api/v1/job/{JOB}").respond(status, json=body, headers=headers)

    error = raised(lambda: legnext.with_options({"retry": NO_RETRY}, "get_job", JOB))

    assert type(error) is STATUS_CLASSES[status]
    assert error.status_code == status
    assert error.message == f"problem number {status}"
    assert str(error).startswith(f"HTTP {status}: problem number {status}")
    if shape == "A":
        assert (error.code, error.raw_message, error.job) == (status, "upstream no", None)
    elif shape == "B":
        assert error.code == 10000 + status
        assert error.raw_message == "upstream no"
        assert isinstance(error.job, Job)
        assert error.job.is_failed and error.job.job_id == JOB
        assert error.job.error.code == 10000 + status
    else:
        assert (error.code, error.job) == (status, None)
    if status == 429:
        assert isinstance(error, RateLimitedError)
        assert error.retry_after == 7.0


@pytest.mark.parametrize("status", [s for s in STATUS_CLASSES if s < 500])
def test_create_errors_map_the_same_way(legnext: Any, api: Any, status: int) -> None:
    body = {"code": status, "message": "refused", "raw_message": "", "detail": {"field": "text"}}
    api.post("/api/v1/diffusion").respond(status, json=body)

    error = raised(lambda: legnext.with_options({"retry": NO_RETRY}, "diffusion", text="a cat"))

    assert type(error) is STATUS_CLASSES[status]
    assert (error.status_code, error.code, error.detail) == (status, status, {"field": "text"})


def test_moderation_403_carries_the_failed_job(legnext: Any, api: Any, task_object: Any) -> None:
    error_info = {
        "code": 10003,
        "raw_message": "Banned prompt detected",
        "message": "sensitive content",
        "detail": {"words": ["x"]},
    }
    body = task_object(status="failed", task_type="diffusion", error=error_info)
    api.post("/api/v1/diffusion").respond(403, json=body)

    error = raised(lambda: legnext("diffusion", text="something forbidden"))

    assert isinstance(error, ContentRejectedError)
    assert (error.code, error.message, error.detail) == (
        10003,
        "sensitive content",
        {"words": ["x"]},
    )
    assert error.job is not None and error.job.task_type == "diffusion"


def test_rate_limit_without_retry_after(legnext: Any, api: Any) -> None:
    api.get(f"/api/v1/job/{JOB}").respond(429, json={"code": 429, "message": "slow down"})
    error = raised(lambda: legnext.with_options({"retry": NO_RETRY}, "get_job", JOB))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("status", "text", "cls", "message"),
    [
        (400, "Bad request: text too long", BadRequestError, "Bad request: text too long"),
        (502, "<html><h1>502 Bad Gateway</h1></html>", ServerError, "502 Bad Gateway"),
        (401, "", AuthenticationError, "no message"),
        (404, "[1, 2]", NotFoundError, "no message"),
        (418, "I'm a teapot", LegnextAPIError, "teapot"),
    ],
)
def test_non_json_and_odd_error_bodies_keep_the_status(
    legnext: Any, api: Any, status: int, text: str, cls: type, message: str
) -> None:
    api.get(f"/api/v1/job/{JOB}").respond(status, text=text, headers={"content-type": "text/html"})

    error = raised(lambda: legnext.with_options({"retry": NO_RETRY}, "get_job", JOB))

    assert type(error) is cls
    assert error.status_code == status
    assert message in error.message


def test_a_task_like_error_body_that_is_not_a_task_still_maps_by_status() -> None:
    body = {"job_id": JOB, "error": {"code": 10003, "message": "sensitive content"}}
    error = api_error_from_body(403, body)
    assert isinstance(error, ContentRejectedError)
    assert (error.code, error.message) == (10003, "sensitive content")


# --- lenient reading of task objects --------------------------------------------------------------


def test_unknown_keys_are_ignored(task_object: Any) -> None:
    body = task_object(brand_new_top_level={"a": 1})
    body["output"]["thumbnail_url"] = "https://cdn.example.test/t.png"
    body["meta"]["queue_position"] = 3
    body["error"]["trace_id"] = "abc"
    job = Job.model_validate(body)
    assert job.job_id == body["job_id"]
    assert "brand_new_top_level" not in job.model_dump()


@pytest.mark.parametrize("not_set", ["0001-01-01T00:00:00Z", "", None])
def test_not_set_timestamps_read_as_none(task_object: Any, not_set: str | None) -> None:
    body = task_object()
    body["meta"].update(created_at=not_set, started_at=not_set, ended_at=not_set)
    meta = Job.model_validate(body).meta
    assert (meta.created_at, meta.started_at, meta.ended_at) == (None, None, None)


def test_set_timestamps_are_read(task_object: Any) -> None:
    meta = Job.model_validate(task_object(status="completed")).meta
    assert meta.started_at == datetime(2025, 10, 14, 4, 14, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("remove-background", "remove_background"),
        ("remove_background", "remove_background"),
        ("video-diffusion", "video_diffusion"),
        ("Upload-Paint", "upload_paint"),
    ],
)
def test_task_type_hyphens_are_normalized(task_object: Any, sent: str, read: str) -> None:
    assert Job.model_validate(task_object(task_type=sent)).task_type == read


def test_available_actions_mix_lists_and_booleans(task_object: Any) -> None:
    body = task_object(status="completed")
    body["output"]["available_actions"] = {
        "upscale": [0, 1, 2, 3],
        "variation": [1],
        "reroll": True,
        "enhance": False,
        "upload-paint": [0],
    }
    output = Job.model_validate(body).output
    assert output is not None
    assert output.allows("reroll") and not output.allows("enhance")
    assert output.allows("variation", 1) and not output.allows("variation", 0)
    assert output.allows("upload_paint", 0) and output.allows("upload-paint", 0)
    assert not output.allows("pan", 0)


@pytest.mark.parametrize("actions", [None, {}])
def test_missing_available_actions_allow_nothing(task_object: Any, actions: Any) -> None:
    body = task_object(status="completed")
    body["output"]["available_actions"] = actions
    output = Job.model_validate(body).output
    assert output is not None and not output.allows("upscale", 0) and not output.allows("reroll")


@pytest.mark.parametrize("status", ["cancelled", "succeeded", "COMPLETED", "done", ""])
def test_an_unknown_status_is_kept_and_never_success(task_object: Any, status: str) -> None:
    job = Job.model_validate(task_object(status=status))
    assert job.status == status
    assert not job.is_known_status
    assert not job.is_completed
    assert not job.is_finished
    assert not job.is_failed


def test_null_error_meta_and_output_read_as_empty(task_object: Any) -> None:
    job = Job.model_validate(task_object(error=None, meta=None, output=None))
    assert not job.error.is_set
    assert job.points == 0
    assert job.output_urls == []


def failed_task(task_object: Any) -> dict[str, Any]:
    """A failed task object as Legnext sends it: 80 points were frozen at submit, none
    consumed (Legnext releases frozen points on failure), the error filled."""
    error = {"code": 10001, "raw_message": "upstream failed", "message": "failed", "detail": None}
    body: dict[str, Any] = task_object(job_id=JOB, status="failed", error=error)
    body["meta"]["usage"] = {"type": "point", "frozen": 80, "consume": 0}
    body["meta"]["ended_at"] = "2025-10-14T04:15:43Z"
    return body


def test_a_failed_job_cost_nothing(task_object: Any) -> None:
    job = Job.model_validate(failed_task(task_object))
    assert job.is_failed
    assert job.points == 0  # not the 80 frozen: they were released
    assert job.points_charged == 0
    assert job.points_held == 0


@pytest.mark.parametrize(
    ("status", "frozen", "consume", "points", "held", "charged"),
    [
        ("pending", 80, 0, 80, 80, 0),
        ("staged", 80, 0, 80, 80, 0),
        ("processing", 120, 0, 120, 120, 0),
        ("completed", 80, 80, 80, 0, 80),
        ("completed", 40, 40, 40, 0, 40),
        ("failed", 160, 0, 0, 0, 0),
        ("paused", 80, 0, 80, 80, 0),  # an unknown status: still held, never charged
    ],
)
def test_points_are_held_while_running_and_charged_once_finished(
    task_object: Any, status: str, frozen: int, consume: int, points: int, held: int, charged: int
) -> None:
    body = task_object(status=status)
    body["meta"]["usage"] = {"type": "point", "frozen": frozen, "consume": consume}
    job = Job.model_validate(body)
    assert (job.points, job.points_held, job.points_charged) == (points, held, charged)


def test_a_failed_job_read_by_the_client_reports_zero_points(
    legnext: Any, api: Any, task_object: Any
) -> None:
    api.get(f"/api/v1/job/{JOB}").respond(200, json=failed_task(task_object))
    job = legnext("get_job", JOB)
    assert job.is_failed and job.meta.usage.frozen == 80 and job.points == 0


def test_a_lenient_body_through_the_client(legnext: Any, api: Any, task_object: Any) -> None:
    body = task_object(task_type="remove-background", status="archived", surprise=[1, 2])
    body["meta"]["created_at"] = ""
    api.get(f"/api/v1/job/{JOB}").respond(200, json=body)
    job = legnext("get_job", JOB)
    assert (job.task_type, job.status, job.meta.created_at) == (
        "remove_background",
        "archived",
        None,
    )
    assert not job.is_completed


# --- the vendor's own sample responses (seeds/) ---------------------------------------------------

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "legnext" / "seeds"
SEED_FILES = sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []
needs_seeds = pytest.mark.skipif(not SEED_FILES, reason=f"vendor seed pages not found in {SEEDS}")


def json_blocks(text: str) -> list[tuple[int, Any]]:
    """(offset, value) of every JSON object starting at the beginning of a line."""
    decoder = json.JSONDecoder()
    blocks: list[tuple[int, Any]] = []
    end = 0
    for match in re.finditer(r"^\{", text, flags=re.MULTILINE):
        if match.start() < end:
            continue
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        blocks.append((match.start(), value))
    return blocks


def response_examples(text: str) -> list[Any]:
    """The JSON blocks that follow a "Response" heading of a vendor page."""
    headings = [m.start() for m in re.finditer(r"^Response\s*$", text, flags=re.MULTILINE)]
    return [value for at, value in json_blocks(text) if any(h < at for h in headings)]


def seed_responses() -> list[dict[str, Any]]:
    return [r for seed in SEED_FILES for r in response_examples(seed.read_text())]


@needs_seeds
@pytest.mark.parametrize("seed", SEED_FILES, ids=[s.stem for s in SEED_FILES])
def test_vendor_sample_responses_parse(seed: Path) -> None:
    examples = response_examples(seed.read_text())
    assert examples, f"no JSON after a 'Response' heading in {seed.name}"
    for example in examples:
        job = Job.model_validate(example)
        assert job.task_type in ENDPOINTS_BY_NAME
        assert job.is_known_status
        assert job.points == example["meta"]["usage"]["frozen"]
        if example["meta"]["created_at"] == "":
            assert job.meta.created_at is None
        assert not job.error.is_set


@needs_seeds
def test_the_completed_vendor_sample_is_fully_read() -> None:
    completed = [Job.model_validate(r) for r in seed_responses() if r["status"] == "completed"]
    assert completed, "expected the inpaint seed's completed task object"
    job = completed[0]
    assert job.is_completed
    assert len(job.output_urls) == 4
    assert job.output is not None
    assert job.output.allows("reroll") and job.output.allows("upscale", 3)
    assert job.meta.ended_at == datetime(2025, 10, 14, 4, 17, 43, tzinfo=UTC)
    assert job.meta.usage.consume == job.meta.usage.frozen == 120


@needs_seeds
def test_the_vendor_error_sample_reads_as_shape_a() -> None:
    errors = [
        value
        for seed in SEED_FILES
        for _at, value in json_blocks(seed.read_text())
        if {"code", "message"} <= set(value) and "job_id" not in value
    ]
    assert errors, "expected the retexture seed's 400 body"
    for body in errors:
        error = api_error_from_body(body["code"], body)
        assert type(error) is BadRequestError
        assert error.message == body["message"]
