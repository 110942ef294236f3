"""Conformance of the offline simulator to Legnext's published spec and pages.

What a client meets on the wire is checked with raw JSON (no request models in
between), against cases derived from the vendor's own texts in ``/work/shared``:

1. every create endpoint accepts a valid body, the seeds' example requests, and every
   boundary value of its spec schema; every constraint violation of that schema (and of
   the rules API.md adds) is a 400 with body shape A that creates no job;
2. bad keys, unknown jobs, moderation, missing points and non-JSON bodies answer with
   the status and body shape API.md assigns them;
3. the vendor's sample task objects and the simulator's agree key by key, and both
   parse with `prefect_legnext.core.responses.Job`.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from prefect_legnext.core.endpoints import CREATE_ENDPOINTS, CreateEndpoint, ParentKind, endpoint
from prefect_legnext.core.responses import Job, JobStatus
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import legnext_client_for

SHARED = Path(__file__).resolve().parents[2] / "shared"
VENDOR = SHARED / "legnext"
if not (VENDOR / "openapi-complete.yaml").is_file() or not (VENDOR / "seeds").is_dir():
    pytest.skip(
        f"the vendor spec and pages (openapi-complete.yaml, seeds/) are not under {VENDOR}",
        allow_module_level=True,
    )

SPEC: dict[str, Any] = yaml.safe_load((VENDOR / "openapi-complete.yaml").read_text())
POSTMAN: dict[str, Any] = (
    yaml.safe_load((VENDOR / "openapi-postman.yaml").read_text())
    if (VENDOR / "openapi-postman.yaml").is_file()
    else {}
)
SEEDS = "\n".join(path.read_text() for path in sorted((VENDOR / "seeds").glob("*.txt")))

# API.md, "Errors": body shape A.
SHAPE_A_KEYS = frozenset({"code", "message", "raw_message", "detail"})
NOT_A_UUID = "job_12345"  # the vendor's own placeholder in the inpaint page
NOT_A_URL = "not a url"

PathKey = str | int
Path_ = tuple[PathKey, ...]


# -- placeholders for ids and URLs that exist only once the simulator runs ----------------


@dataclass(frozen=True)
class Ref:
    """A job id or output URL of the module's simulator, filled in at run time.

    `key` is a parent job ("image_job", "video_job", ...) or "image_url" (output
    `index` of the image job); `suffix` is appended; `length` pads a URL with a query
    string to exactly that many characters.
    """

    key: str
    index: int = 0
    suffix: str = ""
    length: int | None = None

    def resolve(self, jobs: dict[str, str], image_urls: list[str]) -> str:
        if self.key == "image_url":
            value = image_urls[self.index % len(image_urls)]
        else:
            value = jobs[self.key]
        value += self.suffix
        if self.length is not None:
            padding = self.length - len(value) - len("?pad=")
            assert padding >= 0, f"{value} is longer than {self.length}"
            value = f"{value}?pad={'a' * padding}"
        return value


IMAGE_JOB = Ref("image_job")  # a completed "--v 7 --draft" diffusion: every image action
VIDEO_JOB = Ref("video_job")  # a completed video-diffusion of IMAGE_JOB
PLAIN_JOB = Ref("plain_job")  # a completed diffusion without --draft
DRAFT_ONLY_JOB = Ref("draft_only_job")  # a completed "--draft" diffusion without --v 7
IMG = Ref("image_url", 0)
IMG_2 = Ref("image_url", 1)

POLYGON = {"width": 1024, "height": 768, "points": [10, 10, 400, 10, 400, 400, 10, 400]}
CANVAS = {"width": 1024, "height": 1024}
IMG_POS = {"width": 512, "height": 512, "x": 256, "y": 256}

# Valid wire bodies per endpoint name; the first is the one constraints are applied to.
VALID: dict[str, list[dict[str, Any]]] = {
    "diffusion": [{"text": "a lighthouse at dawn"}],
    "variation": [{"jobId": IMAGE_JOB, "imageNo": 0, "type": 0}],
    "upscale": [{"jobId": IMAGE_JOB, "imageNo": 1, "type": 1}],
    "reroll": [{"jobId": IMAGE_JOB}],
    "blend": [{"imgUrls": [IMG, IMG_2], "aspect_ratio": "1:1"}],
    "describe": [{"imgUrl": IMG}],
    "shorten": [{"prompt": "a very long and winding prompt about a lighthouse at dawn"}],
    "pan": [{"jobId": IMAGE_JOB, "imageNo": 2, "direction": 1, "scale": 1.5}],
    "outpaint": [{"jobId": IMAGE_JOB, "imageNo": 3, "scale": 1.5}],
    "inpaint": [
        {
            "jobId": IMAGE_JOB,
            "imageNo": 0,
            "mask": {"areas": [POLYGON]},
            "remixPrompt": "a tree in the center",
        }
    ],
    "remix": [{"jobId": IMAGE_JOB, "imageNo": 0, "remixPrompt": "in autumn"}],
    "edit": [
        {
            "jobId": IMAGE_JOB,
            "imageNo": 0,
            "canvas": CANVAS,
            "imgPos": IMG_POS,
            "remixPrompt": "on a beach",
        }
    ],
    "upload_paint": [
        {
            "imgUrl": IMG,
            "canvas": CANVAS,
            "imgPos": IMG_POS,
            "remixPrompt": "on a beach",
            "mask": {"areas": [POLYGON]},
        }
    ],
    "retexture": [{"imgUrl": IMG, "remixPrompt": "carved from oak"}],
    "remove_background": [{"imgUrl": IMG}],
    "enhance": [{"jobId": IMAGE_JOB, "imageNo": 0}],
    "video_diffusion": [
        {"jobId": IMAGE_JOB, "imageNo": 0},
        {"prompt": Ref("image_url", suffix=" the camera drifts slowly to the left")},
    ],
    "extend_video": [{"jobId": VIDEO_JOB, "videoNo": 0}],
    "video_upscale": [{"jobId": VIDEO_JOB, "videoNo": 0}],
}


def resolve(value: Any, jobs: dict[str, str], image_urls: list[str]) -> Any:
    """`value` with every Ref filled in."""
    if isinstance(value, Ref):
        return value.resolve(jobs, image_urls)
    if isinstance(value, dict):
        return {k: resolve(v, jobs, image_urls) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, jobs, image_urls) for v in value]
    return value


PARENT_KEYS = ("image_job", "video_job", "plain_job", "draft_only_job")
PARENT_FOR = {ParentKind.IMAGE: IMAGE_JOB, ParentKind.JOB: IMAGE_JOB, ParentKind.VIDEO: VIDEO_JOB}


# -- cases derived mechanically from the spec's request schemas ---------------------------


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()  # the change removes the key


@dataclass(frozen=True)
class Change:
    """One edit of a valid body: `value` at `path` (or DROP). `accepted` says whether
    Legnext takes the result (a boundary value) or refuses it (a violation)."""

    rule: str
    path: Path_
    value: Any
    accepted: bool


@dataclass(frozen=True)
class Retyped:
    """The valid value at a path in another JSON type: ``"text"`` ("1" for 1) or
    ``"boolean"`` (only for 0 and 1). A lax decoder would turn it back into the valid
    value, so the wrong type is the only thing wrong with the body."""

    as_type: str
    fallback: Any = None  # the value to retype when the valid body leaves the key out

    def of(self, current: Any) -> Any:
        if self.as_type == "text":
            return None if current is None else str(current)
        return {0: False, 1: True}.get(current) if isinstance(current, int) else None


# Values of the wrong JSON type for each spec type.
WRONG_TYPE: dict[str, dict[str, Any]] = {
    "integer": {
        "fraction": 1.5,
        "text": "one",
        "numeric-text": Retyped("text"),
        "boolean": Retyped("boolean"),
    },
    "number": {"text": "wide", "numeric-text": Retyped("text"), "boolean": Retyped("boolean")},
    "string": {"number": 123, "boolean": True},
    "array": {"text": "not a list"},
    "object": {"text": "not an object"},
}


def deref(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return deref(target)


def request_schema(ep: CreateEndpoint) -> dict[str, Any]:
    content = SPEC["paths"][f"/v1/{ep.slug}"]["post"]["requestBody"]["content"]
    (media,) = content.values()
    return deref(media["schema"])


def json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 schema as plain JSON Schema: refs inlined, nullable as a null type."""
    node = deref(node)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {name: json_schema(prop) for name, prop in value.items()}
        elif key == "items":
            result[key] = json_schema(value)
        elif key == "anyOf":
            result[key] = [json_schema(branch) for branch in value]
        elif key != "nullable":
            result[key] = value
    if node.get("nullable"):
        result["type"] = [node["type"], "null"]
    return result


FORMATS = FormatChecker()  # uuid and the rest; uri needs a package we do not have, so:


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    """RFC 3986 in short: a scheme, a colon, and no spaces."""
    return not isinstance(value, str) or bool(re.fullmatch(r"[A-Za-z][\w+.-]*:\S+", value))


def schema_changes(schema: dict[str, Any], path: Path_ = ()) -> Iterator[Change]:
    """Every violation and boundary value of an object schema, nested ones included."""
    schema = deref(schema)
    for key in schema.get("required", []):
        yield Change("required", (*path, key), DROP, accepted=False)
    for branch in schema.get("anyOf", []):
        for key in branch.get("required", []):
            yield Change("anyOf-required", (*path, key), DROP, accepted=False)
    for name, prop in schema.get("properties", {}).items():
        prop = deref(prop)
        where = (*path, name)
        yield from value_changes(prop, where)
        if prop.get("type") == "object":
            yield from schema_changes(prop, where)
        elif prop.get("type") == "array":
            items = deref(prop["items"])
            if items.get("type") == "object":
                yield from schema_changes(items, (*where, 0))
            else:
                yield from value_changes(items, (*where, 0))


def value_changes(prop: dict[str, Any], path: Path_) -> Iterator[Change]:
    """Violations and boundary values of one property's own keywords."""
    kind = prop.get("type", "")
    for label, wrong in WRONG_TYPE.get(kind, {}).items():
        if isinstance(wrong, Retyped):
            wrong = Retyped(wrong.as_type, prop.get("minimum", (prop.get("enum") or [None])[0]))
        yield Change(f"{kind}-given-{label}", path, wrong, accepted=False)
    if "minLength" in prop:
        low = prop["minLength"]
        if low > 0:
            yield Change("minLength-1", path, _text(prop, low - 1), accepted=False)
        yield Change("at-minLength", path, _text(prop, low), accepted=True)
    if "maxLength" in prop:
        high = prop["maxLength"]
        yield Change("maxLength+1", path, _text(prop, high + 1), accepted=False)
        yield Change("at-maxLength", path, _text(prop, high), accepted=True)
    step = 1 if kind == "integer" else 0.05
    if "minimum" in prop:
        low = prop["minimum"]
        yield Change("below-minimum", path, round(low - step, 6), accepted=False)
        yield Change("at-minimum", path, low, accepted=True)
    if "maximum" in prop:
        high = prop["maximum"]
        yield Change("above-maximum", path, round(high + step, 6), accepted=False)
        yield Change("at-maximum", path, high, accepted=True)
    if "enum" in prop:
        members = prop["enum"]
        yield Change("enum-outside", path, _outside(members), accepted=False)
        for member in members:
            yield Change(f"enum-{member}", path, member, accepted=True)
    if "minItems" in prop:
        low = prop["minItems"]
        if low > 0:
            yield Change("minItems-1", path, _items(prop, low - 1), accepted=False)
        yield Change("at-minItems", path, _items(prop, low), accepted=True)
    if "maxItems" in prop:
        high = prop["maxItems"]
        yield Change("maxItems+1", path, _items(prop, high + 1), accepted=False)
        yield Change("at-maxItems", path, _items(prop, high), accepted=True)
    if prop.get("format") == "uuid":
        yield Change("format-uuid", path, NOT_A_UUID, accepted=False)
    if prop.get("format") == "uri":
        yield Change("format-uri", path, NOT_A_URL, accepted=False)
    if prop.get("nullable"):
        yield Change("nullable", path, None, accepted=True)
    else:  # an explicit null where the schema does not allow it
        yield Change("null", path, None, accepted=False)


def _text(prop: dict[str, Any], length: int) -> Any:
    if prop.get("format") == "uri":
        return Ref("image_url", length=length)
    return "a" * length


def _items(prop: dict[str, Any], count: int) -> list[Any]:
    items = deref(prop["items"])
    if items.get("format") != "uri":
        raise ValueError(f"no sample items for {items}: extend _items")
    return [Ref("image_url", index) for index in range(count)]


def _outside(members: list[Any]) -> Any:
    if all(isinstance(member, int) for member in members):
        return max(members) + 1
    return next(v for v in ("4:3", "16:9", "invalid") if v not in members)


def _has(body: Any, path: Path_) -> bool:
    for key in path:
        in_dict = isinstance(body, dict) and key in body
        in_list = isinstance(body, list) and isinstance(key, int) and key < len(body)
        if in_dict or in_list:
            body = body[key]
        else:
            return False
    return True


def _get(body: Any, path: Path_) -> Any:
    for key in path:
        body = body[key]
    return body


def apply(body: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at `path` (DROP removes the key). A mask takes one of
    areas or url, so setting one removes the other: the change then tests only itself."""
    result = copy.deepcopy(body)
    container: Any = result
    for key in path[:-1]:
        container = container[key]
    last = path[-1]
    if value is DROP:
        assert last in container, f"{path} is not in the valid body"
        del container[last]
        return result
    container[last] = value
    if path[-2:-1] == ("mask",) and last in ("areas", "url"):
        container.pop("url" if last == "areas" else "areas", None)
    return result


@dataclass(frozen=True)
class Case:
    name: str  # endpoint name
    rule: str
    path: Path_
    body: Any
    accepted: bool

    @property
    def id(self) -> str:
        where = ".".join(str(part) for part in self.path) or "body"
        return f"{endpoint(self.name).slug}/{self.rule}/{where}"


def spec_cases(ep: CreateEndpoint) -> Iterator[Case]:
    bodies = VALID.get(ep.name, [])
    if not bodies:
        return  # test_every_create_endpoint_accepts_a_valid_body fails for it
    for change in schema_changes(request_schema(ep)):
        value = change.value
        if value is DROP:
            base = next(b for b in bodies if _has(b, change.path))
        else:
            base = next(b for b in bodies if _has(b, change.path[:-1]))
        if isinstance(value, Retyped):
            current = _get(base, change.path) if _has(base, change.path) else value.fallback
            value = value.of(current)
            if value is None:
                continue  # no value of that type stands for a valid one here
        body = apply(base, change.path, value)
        yield Case(ep.name, change.rule, change.path, body, change.accepted)


def api_md_cases() -> Iterator[Case]:
    """Rules API.md adds to the spec ("Wire basics", mask, parents, video-diffusion)."""

    def case(name: str, rule: str, path: Path_, value: Any, accepted: bool = False) -> Case:
        return Case(name, rule, path, apply(VALID[name][0], path, value), accepted)

    for name in ("inpaint", "upload_paint"):
        points = ("mask", "areas", 0, "points")
        yield case(name, "polygon-odd-count", points, [10, 10, 400, 10, 400, 400, 10])
        yield case(name, "polygon-two-points", points, [10, 10, 400, 10])
        yield case(name, "polygon-three-points", points, [10, 10, 400, 10, 400, 400], True)
        yield case(name, "polygon-x-beyond-width", points, [10, 10, 1100, 10, 400, 400])
        yield case(name, "polygon-y-beyond-height", points, [10, 10, 400, 10, 400, 800])
        yield case(name, "polygon-negative", points, [-5, 10, 400, 10, 400, 400])
        yield case(name, "mask-areas-and-url", ("mask",), {"areas": [POLYGON], "url": IMG_2})
        yield case(name, "mask-empty", ("mask",), {})
        yield case(name, "mask-url-only", ("mask", "url"), IMG_2, True)
    yield Case(
        "inpaint",
        "deprecated-area",
        ("area",),
        {"jobId": IMAGE_JOB, "imageNo": 0, "area": POLYGON, "remixPrompt": "a tree"},
        accepted=True,
    )
    for name in ("describe", "upload_paint", "retexture", "remove_background"):
        yield case(name, "imgUrl-1025-chars", ("imgUrl",), Ref("image_url", length=1025))
        yield case(name, "imgUrl-1024-chars", ("imgUrl",), Ref("image_url", length=1024), True)
        yield case(name, "imgUrl-not-http", ("imgUrl",), "ftp://img.example.test/cat.png")
    yield case("blend", "imgUrls-not-http", ("imgUrls", 0), "ftp://img.example.test/cat.png")
    video = "video_diffusion"
    for rule, body in {
        "no-source": {},
        "jobId-without-imageNo": {"jobId": IMAGE_JOB},
        "imageNo-without-jobId": {"imageNo": 0},
        "prompt-without-image-url": {"prompt": "a cat walking on the beach"},
        "prompt-with-ftp-url": {"prompt": "ftp://img.example.test/cat.png a cat walking"},
    }.items():
        yield Case(video, rule, (), body, accepted=False)
    yield Case(video, "prompt-mode-720p", (), {**VALID[video][1], "videoType": 1}, True)
    yield case(video, "image-mode-with-text", ("prompt",), "the camera drifts slowly", True)
    yield case("enhance", "parent-not-draft", ("jobId",), PLAIN_JOB)
    yield case("enhance", "parent-draft-without-v7", ("jobId",), DRAFT_ONLY_JOB)
    for name in ("extend_video", "video_upscale"):
        yield case(name, "parent-is-image-job", ("jobId",), IMAGE_JOB)
    for name in ("variation", "upscale", "enhance"):
        yield case(name, "parent-is-video-job", ("jobId",), VIDEO_JOB)


def _unique(cases: Iterable[Case]) -> list[Case]:
    """Cases with distinct bodies (a boundary may equal another case or a valid body)."""
    seen: dict[str, Case] = {}
    ids: set[str] = set()
    for c in cases:
        key = f"{c.name}:{c.accepted}:{c.body!r}"
        if key in seen:
            continue
        assert c.id not in ids, f"two different cases are named {c.id}"
        seen[key] = c
        ids.add(c.id)
    return list(seen.values())


def as_params(cases: list[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id) for c in cases]


SPEC_CASES = [c for ep in CREATE_ENDPOINTS for c in spec_cases(ep)]
ALL_CASES = _unique([*SPEC_CASES, *api_md_cases()])
ACCEPTED = [c for c in ALL_CASES if c.accepted]
REJECTED = [c for c in ALL_CASES if not c.accepted]
EXTRA_VALID = [
    Case(name, f"valid-{i + 1}", (), body, accepted=True)
    for name, bodies in VALID.items()
    for i, body in enumerate(bodies[1:], start=1)
]


# -- the vendor's pages ---------------------------------------------------------------------


def _json_objects(text: str, opening: str) -> list[Any]:
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, m.start())[0] for m in re.finditer(opening, text)]


EXAMPLE_REQUEST = re.compile(
    r'curl -X POST "https://api\.legnext\.ai/api/v1/([\w-]+)"[^{]*?-d \'(\{.*?\})\'', re.DOTALL
)
SEED_EXAMPLES: dict[str, dict[str, Any]] = {
    slug: json.loads(body) for slug, body in EXAMPLE_REQUEST.findall(SEEDS)
}
VENDOR_TASKS: dict[str, dict[str, Any]] = {
    task["task_type"]: task for task in _json_objects(SEEDS, r'\{\s*"job_id"')
}
VENDOR_ERRORS = [e for e in _json_objects(SEEDS, r'\{\s*"code"') if e["code"] >= 400]


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def key_path_mismatches(vendor: dict[str, Any], ours: Any, where: str = "$") -> list[str]:
    """Key paths of the vendor's object missing from ours, or holding another JSON type
    where the vendor's value is not empty; lists are compared by their first element."""
    if not isinstance(ours, dict):
        return [f"{where}: {json_type(ours)} where the vendor has an object"]
    problems = []
    for key, expected in vendor.items():
        path = f"{where}.{key}"
        if key not in ours:
            problems.append(f"{path}: missing")
            continue
        actual = ours[key]
        if expected is None or expected in ("", [], {}):
            continue
        if json_type(actual) != json_type(expected):
            problems.append(
                f"{path}: {json_type(actual)} where the vendor has {json_type(expected)}"
            )
        elif isinstance(expected, dict):
            problems += key_path_mismatches(expected, actual, path)
        elif isinstance(expected, list):
            if not actual:
                problems.append(f"{path}: empty where the vendor has items")
            elif isinstance(expected[0], dict):
                problems += key_path_mismatches(expected[0], actual[0], f"{path}[0]")
            elif json_type(actual[0]) != json_type(expected[0]):
                problems.append(
                    f"{path}[0]: {json_type(actual[0])} where the vendor has "
                    f"{json_type(expected[0])}"
                )
    return problems


# -- the module's simulator -----------------------------------------------------------------


@dataclass
class World:
    sim: LegnextSimulator
    http: httpx.Client
    jobs: dict[str, str]
    image_urls: list[str]

    def post(self, ep: CreateEndpoint, body: Any) -> httpx.Response:
        return self.http.post(ep.path, json=resolve(body, self.jobs, self.image_urls))

    def stats(self) -> dict[str, Any]:
        """The simulator's counters, over the kept-alive connection (sim.stats() is slow)."""
        response = self.http.get("/_sim/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def job_ids(self) -> set[str]:
        """Every job the simulator holds, moderation refusals included."""
        return set(self.stats()["gets_per_job"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """One simulator for the module, with the parent jobs the cases refer to."""
    sim = LegnextSimulator(time_scale=0.001, points=10_000_000)
    sim.start()
    try:
        with legnext_client_for(sim) as client:
            draft = client.diffusion(text="a lighthouse at dawn --v 7 --draft")
            plain = client.diffusion(text="a lighthouse at dusk")
            draft_only = client.diffusion(text="a lighthouse at noon --draft")
            draft = client.wait_for_job(draft)
            video = client.wait_for_job(client.video_diffusion(job_id=draft.job_id, image_no=0))
            plain, draft_only = client.wait_for_job(plain), client.wait_for_job(draft_only)
        assert draft.output is not None and draft.output.image_urls and draft.output.image_url
        parents = (draft.job_id, video.job_id, plain.job_id, draft_only.job_id)
        jobs = dict(zip(PARENT_KEYS, parents, strict=True))
        image_urls = [*draft.output.image_urls, draft.output.image_url]
        with httpx.Client(
            base_url=sim.base_url, headers={"x-api-key": sim.api_key}, timeout=30
        ) as http:
            yield World(sim, http, jobs, image_urls)
    finally:
        sim.stop()


def assert_shape_a(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == SHAPE_A_KEYS, body
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["raw_message"], str)
    assert body["detail"] is None
    return body


def assert_refused(world: World, send: Callable[[], httpx.Response], status: int) -> dict[str, Any]:
    """`send` answers `status` with shape A and leaves the job table as it was."""
    before = world.stats()
    body = assert_shape_a(send(), status)
    after = world.stats()
    assert after["jobs_total"] == before["jobs_total"]
    assert set(after["gets_per_job"]) == set(before["gets_per_job"])
    return body


def assert_accepted(world: World, ep: CreateEndpoint, body: Any) -> Job:
    """The create answers 200 with a pending task object of a new job of its type."""
    before = world.job_ids()
    response = world.post(ep, body)
    assert response.status_code == 200, response.text
    raw = response.json()
    job = Job.model_validate(raw)
    assert uuid.UUID(raw["job_id"])
    assert raw["model"] == "midjourney"
    assert raw["task_type"] == ep.task_type
    assert raw["status"] == "pending"
    assert job.meta.usage.frozen > 0 and job.meta.usage.consume == 0
    assert not job.error.is_set
    assert world.job_ids() - before == {raw["job_id"]}
    return job


# -- 1. valid requests, examples, boundaries and violations ---------------------------------


def test_spec_and_endpoint_table_list_the_same_create_endpoints() -> None:
    spec_slugs = {
        path.removeprefix("/v1/")
        for path, item in SPEC["paths"].items()
        if path.startswith("/v1/") and "post" in item
    }
    assert spec_slugs == {ep.slug for ep in CREATE_ENDPOINTS}
    assert len(CREATE_ENDPOINTS) == 19


@pytest.mark.parametrize("ep", CREATE_ENDPOINTS, ids=lambda ep: ep.slug)
def test_every_create_endpoint_accepts_a_valid_body(world: World, ep: CreateEndpoint) -> None:
    assert ep.name in VALID, f"no valid wire body for {ep.slug}"
    assert_accepted(world, ep, VALID[ep.name][0])


@pytest.mark.filterwarnings("ignore:inpaint area= is deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", as_params(EXTRA_VALID + ACCEPTED))
def test_accepts(world: World, case: Case) -> None:
    assert_accepted(world, endpoint(case.name), case.body)


@pytest.mark.parametrize("case", as_params(REJECTED))
def test_rejects_with_400(world: World, case: Case) -> None:
    ep = endpoint(case.name)
    body = assert_refused(world, lambda: world.post(ep, case.body), 400)
    assert body["message"] == VENDOR_ERRORS[0]["message"]


RULE_KINDS = (
    "required",
    "anyOf-required",
    "minLength-1",
    "at-minLength",
    "maxLength+1",
    "at-maxLength",
    "below-minimum",
    "at-minimum",
    "above-maximum",
    "at-maximum",
    "enum-outside",
    "minItems-1",
    "at-minItems",
    "maxItems+1",
    "at-maxItems",
    "format-uuid",
    "format-uri",
    "nullable",
    "null",
    "integer-given-text",
    "integer-given-numeric-text",
    "string-given-number",
)


def test_derivation_covers_every_rule_of_the_spec() -> None:
    """Guards the derivation itself: no rule kind, required key or nested bound is lost."""
    assert set(RULE_KINDS) <= {c.rule for c in SPEC_CASES}
    for ep in CREATE_ENDPOINTS:
        derived = {(c.rule, c.path) for c in SPEC_CASES if c.name == ep.name}
        assert ("format-uri", ("callback",)) in derived, ep.slug
        for key in request_schema(ep).get("required", []):
            assert ("required", (key,)) in derived, (ep.slug, key)
    for name in ("inpaint", "upload_paint"):
        paths = {(c.rule, c.path) for c in SPEC_CASES if c.name == name}
        for side in ("width", "height"):
            for rule in ("below-minimum", "above-maximum", "at-minimum", "at-maximum"):
                assert (rule, ("mask", "areas", 0, side)) in paths
    for name in ("edit", "upload_paint"):
        paths = {(c.rule, c.path) for c in SPEC_CASES if c.name == name}
        for nested in (("canvas", "width"), ("canvas", "height"), ("imgPos", "x"), ("imgPos", "y")):
            assert ("required", nested) in paths, (name, nested)


def test_derived_cases_agree_with_a_json_schema_validator() -> None:
    """An independent validator of the spec's schemas says valid exactly where the cases
    expect acceptance (the simulator is not involved)."""
    jobs = {key: str(uuid.uuid5(uuid.NAMESPACE_URL, key)) for key in PARENT_KEYS}
    urls = [f"https://cdn.example.test/mj/job_{i}.png" for i in range(5)]
    validators = {
        ep.name: Draft202012Validator(json_schema(request_schema(ep)), format_checker=FORMATS)
        for ep in CREATE_ENDPOINTS
    }
    for name, bodies in VALID.items():
        for body in bodies:
            assert validators[name].is_valid(resolve(body, jobs, urls)), (name, body)
    disagreements = [
        c.id
        for c in SPEC_CASES
        if validators[c.name].is_valid(resolve(c.body, jobs, urls)) != c.accepted
    ]
    assert disagreements == []
    assert not validators["blend"].is_valid({"imgUrls": [NOT_A_URL] * 2, "aspect_ratio": "1:1"})


def test_seed_example_requests_are_found() -> None:
    assert set(SEED_EXAMPLES) == {"enhance", "retexture", "inpaint"}
    assert SEED_EXAMPLES["inpaint"]["mask"]["areas"][0]["points"][:2] == [10, 10]


@pytest.mark.parametrize("slug", sorted(SEED_EXAMPLES))
def test_seed_example_request_is_accepted(world: World, slug: str) -> None:
    ep = endpoint(slug)
    body: dict[str, Any] = dict(SEED_EXAMPLES[slug])
    if "jobId" in body:
        body["jobId"] = PARENT_FOR[ep.parent]
    job = assert_accepted(world, ep, body)
    assert job.config is not None and job.config.webhook_config is not None
    assert job.config.webhook_config.endpoint == body["callback"]


# -- 2. other statuses, other shapes --------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["missing-key", "wrong-key"])
@pytest.mark.parametrize("route", ["create", "get-job"])
def test_bad_api_key_is_401_shape_a(world: World, key: str | None, route: str) -> None:
    headers = {} if key is None else {"x-api-key": key}

    def send() -> httpx.Response:
        if route == "create":
            return httpx.post(
                f"{world.sim.base_url}/api/v1/diffusion",
                json=VALID["diffusion"][0],
                headers=headers,
            )
        return httpx.get(
            f"{world.sim.base_url}/api/v1/job/{world.jobs['image_job']}", headers=headers
        )

    assert_refused(world, send, 401)


def test_unknown_job_is_404_shape_a(world: World) -> None:
    assert_refused(world, lambda: world.http.get(f"/api/v1/job/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize(
    ("name", "field"), [("diffusion", "text"), ("shorten", "prompt"), ("remix", "remixPrompt")]
)
def test_banned_word_is_403_with_a_failed_task_object(world: World, name: str, field: str) -> None:
    ep = endpoint(name)
    body = {**VALID[name][0], field: "a forbidden temple at night"}
    available = world.stats()["points"]["available"]
    response = world.post(ep, body)
    assert response.status_code == 403, response.text
    raw = response.json()
    assert set(VENDOR_TASKS["enhance"]) <= set(raw)
    job = Job.model_validate(raw)
    assert job.status is JobStatus.FAILED
    assert job.task_type == ep.task_type
    assert job.error.code != 0 and job.error.message and job.error.is_set
    assert world.stats()["points"]["available"] == available


def test_not_enough_points_is_402_shape_a(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    poor = legnext_simulator_factory(points=10)
    response = httpx.post(
        f"{poor.base_url}/api/v1/diffusion",
        json=VALID["diffusion"][0],
        headers={"x-api-key": poor.api_key},
    )
    assert_shape_a(response, 402)
    assert poor.stats()["jobs_total"] == 0
    assert poor.stats()["points"]["available"] == 10


@pytest.mark.parametrize(
    "content",
    [b"text=a lighthouse", b'{"text": "a lighthouse"', b"", b'["a lighthouse"]'],
    ids=["form-encoded", "truncated-json", "empty", "json-array"],
)
def test_body_that_is_not_a_json_object_is_400_shape_a(world: World, content: bytes) -> None:
    def send() -> httpx.Response:
        return world.http.post(
            "/api/v1/diffusion", content=content, headers={"content-type": "application/json"}
        )

    assert_refused(world, send, 400)


# -- 3. the vendor's task objects against the simulator's -----------------------------------


def test_vendor_samples_are_found() -> None:
    statuses = {task_type: task["status"] for task_type, task in VENDOR_TASKS.items()}
    assert statuses == {"enhance": "pending", "retexture": "pending", "inpaint": "completed"}
    assert [set(e) for e in VENDOR_ERRORS] == [SHAPE_A_KEYS]
    assert VENDOR_ERRORS[0]["code"] == 400 and VENDOR_ERRORS[0]["detail"] is None


@pytest.mark.parametrize("task_type", sorted(VENDOR_TASKS))
def test_simulator_task_object_has_the_vendor_sample_shape(world: World, task_type: str) -> None:
    vendor = VENDOR_TASKS[task_type]
    ep = endpoint(task_type)
    response = world.post(ep, VALID[ep.name][0])
    assert response.status_code == 200, response.text
    ours = response.json()
    if vendor["status"] == JobStatus.COMPLETED:
        with legnext_client_for(world.sim) as client:
            client.wait_for_job(ours["job_id"])
        ours = world.http.get(f"/api/v1/job/{ours['job_id']}").json()
    assert ours["status"] == vendor["status"]
    assert key_path_mismatches(vendor, ours) == []
    if vendor["status"] == JobStatus.PENDING:  # a create's answer, as the vendor's samples
        stamps = ("created_at", "started_at", "ended_at")
        assert [ours["meta"][k] for k in stamps] == [vendor["meta"][k] for k in stamps] == [""] * 3
    vendor_job, our_job = Job.model_validate(vendor), Job.model_validate(ours)
    assert our_job.task_type == vendor_job.task_type == ep.task_type
    assert our_job.status == vendor_job.status
    assert our_job.meta.usage == vendor_job.meta.usage
    if vendor_job.is_completed:
        assert vendor_job.output is not None and our_job.output is not None
        assert set(ours["output"]["available_actions"]) == set(
            vendor["output"]["available_actions"]
        )
        assert len(our_job.output_urls) == len(vendor_job.output_urls) == 4


def test_key_path_comparison_reports_drift() -> None:
    vendor = VENDOR_TASKS["inpaint"]
    assert key_path_mismatches(vendor, copy.deepcopy(vendor)) == []
    drifted = copy.deepcopy(vendor)
    del drifted["meta"]["usage"]["consume"]
    drifted["output"]["seed"] = 1573740627
    drifted["output"]["available_actions"]["reroll"] = [0]
    drifted["output"]["image_urls"] = [4]
    assert sorted(key_path_mismatches(vendor, drifted)) == [
        "$.meta.usage.consume: missing",
        "$.output.available_actions.reroll: array where the vendor has boolean",
        "$.output.image_urls[0]: integer where the vendor has string",
        "$.output.seed: integer where the vendor has string",
    ]


# -- 4. explicit nulls ------------------------------------------------------------------------


def optional_fields(ep: CreateEndpoint) -> list[str]:
    """The spec's optional top-level fields of an endpoint's body, `callback` first."""
    schema = request_schema(ep)
    required = set(schema.get("required", []))
    names = [name for name in schema["properties"] if name not in required]
    return sorted(names, key=lambda name: name != "callback")


def test_callback_is_optional_and_not_nullable_everywhere() -> None:
    for ep in CREATE_ENDPOINTS:
        assert optional_fields(ep)[0] == "callback", ep.slug
        assert not deref(request_schema(ep)["properties"]["callback"]).get("nullable"), ep.slug
    nullable = {
        (ep.slug, name)
        for ep in CREATE_ENDPOINTS
        for name, prop in request_schema(ep)["properties"].items()
        if deref(prop).get("nullable")
    }
    assert nullable == {("variation", "remixPrompt")}  # the only null the spec allows


@pytest.mark.parametrize("ep", CREATE_ENDPOINTS, ids=lambda ep: ep.slug)
def test_explicit_null_for_an_optional_field_is_400_shape_a(
    world: World, ep: CreateEndpoint
) -> None:
    """`"callback": null` (and null for each other optional field) breaks the schema:
    a 400 in shape A with the vendor's message, and no job."""
    valid = VALID[ep.name][0]
    for name in optional_fields(ep):
        prop = deref(request_schema(ep)["properties"][name])
        body = {**valid, name: None}
        if prop.get("nullable"):
            assert_accepted(world, ep, body)
            continue
        refused = assert_refused(world, lambda body=body: world.post(ep, body), 400)
        assert refused["message"] == VENDOR_ERRORS[0]["message"]
        assert "must not be null" in refused["raw_message"], refused


# -- 5. available_actions: the vendor's keys, no others -------------------------------------


def _find_key(node: Any, key: str) -> Any:
    """The first value under `key` anywhere in a YAML tree."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        children: Iterable[Any] = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def vendor_action_keys() -> set[str]:
    """The keys of `available_actions` in the vendor's completed sample (the inpaint page)."""
    [sample] = [t for t in VENDOR_TASKS.values() if t["status"] == "completed"]
    return set(sample["output"]["available_actions"])


def test_the_vendor_sample_and_the_postman_schema_agree_on_the_action_keys() -> None:
    keys = vendor_action_keys()
    assert keys == {"edit", "inpaint", "outpaint", "pan", "remix", "reroll", "upscale", "variation"}
    if POSTMAN:
        schema = _find_key(POSTMAN, "available_actions")
        assert schema is not None and set(schema["properties"]) == keys


@pytest.mark.parametrize("parent", ["image_job", "plain_job", "draft_only_job"])
def test_a_completed_diffusion_lists_exactly_the_vendors_action_keys(
    world: World, parent: str
) -> None:
    """A draft (--v 7 --draft) diffusion too: no `enhance` key, which no vendor text shows."""
    raw = world.http.get(f"/api/v1/job/{world.jobs[parent]}").json()
    assert raw["status"] == "completed"
    assert set(raw["output"]["available_actions"]) == vendor_action_keys()


def test_enhance_follows_the_draft_rule_without_an_enhance_key(world: World) -> None:
    ep = endpoint("enhance")
    draft = world.http.get(f"/api/v1/job/{world.jobs['image_job']}").json()
    assert "enhance" not in draft["output"]["available_actions"]
    assert_accepted(world, ep, {"jobId": IMAGE_JOB, "imageNo": 3})
    refused = assert_refused(world, lambda: world.post(ep, {"jobId": PLAIN_JOB, "imageNo": 0}), 400)
    assert "--v 7 --draft" in refused["raw_message"]


def test_video_jobs_list_no_undocumented_action_keys(world: World) -> None:
    raw = world.http.get(f"/api/v1/job/{world.jobs['video_job']}").json()
    assert raw["status"] == "completed"
    assert set(raw["output"]["available_actions"]) <= vendor_action_keys()
    for name, number in (("extend_video", 3), ("video_upscale", 0)):
        assert_accepted(world, endpoint(name), {"jobId": VIDEO_JOB, "videoNo": number})
