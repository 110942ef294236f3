"""Our request models against the vendor's OpenAPI document: what we send validates
against its schemas, what it refuses we refuse, and both list the same endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, FormatChecker

from prefect_legnext import CREATE_ENDPOINTS, InvalidRequestError, endpoint
from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME, CreateEndpoint

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "legnext" / "openapi-complete.yaml"
if not SPEC_PATH.is_file():
    pytest.skip(f"vendor OpenAPI document not found at {SPEC_PATH}", allow_module_level=True)

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
# Paths whose POST is not a create endpoint of ours (none today).
NOT_CREATES: set[str] = set()
# Fields we accept that the spec leaves out: inpaint's deprecated single polygon (seeds/).
EXTRA_FIELDS = {("inpaint", "area")}

JOB = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
IMG = "https://img.example.test/cat.png"
MASK_URL = "https://img.example.test/mask.png"
AREA = {"width": 2298, "height": 2298, "points": [10, 10, 2000, 10, 2000, 2000, 10, 2000]}
CANVAS = {"width": 2048, "height": 1024}
IMG_POS = {"width": 1024, "height": 1024, "x": 512, "y": 0}
HOOK = "https://hooks.example.test/legnext"

# Valid requests per endpoint: the smallest, then ones using every optional field.
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "diffusion": [{"text": "a cat"}, {"text": "a cat --v 7 --draft", "callback": HOOK}],
    "variation": [
        {"job_id": JOB, "image_no": 0, "type": 0},
        {"job_id": JOB, "image_no": 3, "type": 1, "remix_prompt": "red", "callback": HOOK},
    ],
    "upscale": [
        {"job_id": JOB, "image_no": 1, "type": 0},
        {"job_id": JOB, "image_no": 2, "type": 1},
    ],
    "reroll": [{"job_id": JOB}, {"job_id": JOB, "callback": HOOK}],
    "blend": [
        {"img_urls": [IMG, MASK_URL], "aspect_ratio": "1:1"},
        {"img_urls": [IMG] * 5, "aspect_ratio": "2:3", "callback": HOOK},
    ],
    "describe": [{"img_url": IMG}],
    "shorten": [{"prompt": "a long prompt"}],
    "pan": [
        {"job_id": JOB, "image_no": 0, "direction": 0, "scale": 1.1},
        {"job_id": JOB, "image_no": 1, "direction": 3, "scale": 3.0, "remix_prompt": "sea"},
    ],
    "outpaint": [
        {"job_id": JOB, "image_no": 0, "scale": 2.0},
        {"job_id": JOB, "image_no": 0, "scale": 1.3, "remix_prompt": "sky"},
    ],
    "inpaint": [
        {"job_id": JOB, "image_no": 0, "mask": {"areas": [AREA]}},
        {"job_id": JOB, "image_no": 2, "mask": {"url": MASK_URL}, "remix_prompt": "a tree"},
    ],
    "remix": [
        {"job_id": JOB, "image_no": 0, "remix_prompt": "winter"},
        {"job_id": JOB, "image_no": 0, "remix_prompt": "winter", "mode": 1},
    ],
    "edit": [
        {"job_id": JOB, "image_no": 0, "canvas": CANVAS, "img_pos": IMG_POS, "remix_prompt": "x"}
    ],
    "upload_paint": [
        {
            "img_url": IMG,
            "canvas": CANVAS,
            "img_pos": IMG_POS,
            "remix_prompt": "x",
            "mask": {"areas": [AREA, AREA]},
        },
        {
            "img_url": IMG,
            "canvas": CANVAS,
            "img_pos": IMG_POS,
            "remix_prompt": "x",
            "mask": {"url": MASK_URL},
        },
    ],
    "retexture": [{"img_url": IMG, "remix_prompt": "oil painting"}],
    "remove_background": [{"img_url": IMG}],
    "enhance": [{"job_id": JOB, "image_no": 3}],
    "video_diffusion": [
        {"job_id": JOB, "image_no": 0},
        {"job_id": JOB, "image_no": 0, "prompt": "slow zoom", "video_type": 1},
        {"prompt": f"{IMG} waves crash", "video_type": 0},
    ],
    "extend_video": [
        {"job_id": JOB, "video_no": 0},
        {"job_id": JOB, "video_no": 3, "prompt": "on"},
    ],
    "video_upscale": [{"job_id": JOB, "video_no": 2}],
}
ENDPOINT_IDS = [e.name for e in CREATE_ENDPOINTS]


def spec_path(e: CreateEndpoint) -> str:
    return f"/v1/{e.slug}"


def request_schema(e: CreateEndpoint) -> dict[str, Any]:
    """The endpoint's request schema, with ``$ref``s resolved against the document."""
    operation = SPEC["paths"][spec_path(e)]["post"]
    [media] = operation["requestBody"]["content"].values()  # JSON (upload-paint: multipart)
    return resolve(media["schema"])


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = SPEC["components"]["schemas"][name]
    return schema


def closed(schema: Any) -> Any:
    """`schema` with every object closed to keys it does not list, so that a misspelt or
    snake_case key fails validation instead of being ignored."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in resolve(schema).items()}
    if "properties" in result:
        result.setdefault("additionalProperties", False)
    return result


def validator(e: CreateEndpoint) -> Draft7Validator:
    # OpenAPI 3.0's `nullable` and `example` are not JSON Schema: Draft 7 ignores them.
    # Formats are checked where jsonschema can (uuid; uri needs an extra package).
    return Draft7Validator(closed(request_schema(e)), format_checker=FormatChecker())


def examples(name: str) -> list[dict[str, Any]]:
    if not EXAMPLES.get(name):
        pytest.fail(f"endpoint {name!r} has no example in EXAMPLES: add one")
    return EXAMPLES[name]


def wire_examples(name: str) -> list[dict[str, Any]]:
    return [endpoint(name).build(**fields).to_wire() for fields in examples(name)]


def test_examples_match_the_endpoint_table() -> None:
    assert set(EXAMPLES) == set(ENDPOINTS_BY_NAME)


def test_every_spec_post_is_in_our_table_and_vice_versa() -> None:
    spec_posts = {
        path for path, item in SPEC["paths"].items() if path.startswith("/v1/") and "post" in item
    }
    ours = {spec_path(e) for e in CREATE_ENDPOINTS}
    assert spec_posts - NOT_CREATES == ours


def test_every_spec_task_type_is_one_of_ours() -> None:
    spec_types = set(SPEC["components"]["schemas"]["TaskType"]["enum"])
    assert {e.slug for e in CREATE_ENDPOINTS} == spec_types


def test_our_paths_sit_under_the_spec_server() -> None:
    # The spec's server is .../api and its paths /v1/{slug}; ours are /api/v1/{slug}.
    assert [s["url"] for s in SPEC["servers"]] == ["https://api.legnext.ai/api"]
    for e in CREATE_ENDPOINTS:
        assert e.path == "/api" + spec_path(e)


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_our_requests_validate_against_the_spec(name: str) -> None:
    check = validator(ENDPOINTS_BY_NAME[name])
    for wire in wire_examples(name):
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(wire)]
        assert not problems, f"{name} {wire} breaks the spec: {problems}"


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_every_spec_field_is_a_field_of_ours_and_vice_versa(name: str) -> None:
    e = ENDPOINTS_BY_NAME[name]
    spec_fields = set(request_schema(e)["properties"])
    our_fields = {info.alias or field for field, info in e.request.model_fields.items()}
    assert spec_fields <= our_fields
    assert {(name, f) for f in our_fields - spec_fields} <= EXTRA_FIELDS


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_fields_the_spec_requires_are_required_by_us(name: str) -> None:
    e = ENDPOINTS_BY_NAME[name]
    required = request_schema(e).get("required", [])
    full = max(wire_examples(name), key=len)
    for field in required:
        without = {k: v for k, v in full.items() if k != field}
        with pytest.raises(InvalidRequestError):
            e.parse(without)


def test_video_diffusion_needs_one_of_the_specs_alternatives() -> None:
    e = ENDPOINTS_BY_NAME["video_diffusion"]
    alternatives = [set(option["required"]) for option in request_schema(e)["anyOf"]]
    assert alternatives == [{"jobId", "imageNo"}, {"prompt"}]
    with pytest.raises(InvalidRequestError):
        e.parse({"videoType": 1})
    for fields in alternatives:
        wire = {"jobId": JOB, "imageNo": 0, "prompt": f"{IMG} waves"}
        e.parse({k: v for k, v in wire.items() if k in fields})


def spec_violations(prop: dict[str, Any], valid: Any) -> list[Any]:
    """Values the spec refuses for a property, derived from its own constraints."""
    kind, bad = prop.get("type"), []
    step = 1 if kind == "integer" else 0.01
    if "enum" in prop:
        bad.append(max(prop["enum"]) + 1 if kind == "integer" else "not-in-enum")
    if "minimum" in prop:
        bad.append(prop["minimum"] - step)
    if "maximum" in prop:
        bad.append(prop["maximum"] + step)
    if prop.get("minLength"):
        bad.append("")
    if "maxLength" in prop:
        pad = "a" * prop["maxLength"]
        bad.append(f"https://img.example.test/{pad}" if prop.get("format") == "uri" else pad + "a")
    if prop.get("format") == "uuid":
        bad.append("not-a-uuid")
    if prop.get("format") == "uri":
        bad.append("not a uri")
    if "minItems" in prop:
        bad.append(valid[: prop["minItems"] - 1])
    if "maxItems" in prop:
        bad.append([valid[0]] * (prop["maxItems"] + 1))
    return bad


@pytest.mark.parametrize("name", ENDPOINT_IDS)
def test_what_the_spec_refuses_we_refuse(name: str) -> None:
    e = ENDPOINTS_BY_NAME[name]
    full = max(wire_examples(name), key=len)
    checked = 0
    for field, prop in request_schema(e)["properties"].items():
        for bad in spec_violations(resolve(prop), full.get(field)):
            if bad != "not a uri":  # jsonschema checks "uri" only with an extra package
                assert not validator(e).is_valid({**full, field: bad}), (field, bad)
            with pytest.raises(InvalidRequestError):
                e.parse({**full, field: bad})
            checked += 1
    assert checked, f"the spec gives {name} no constraint to check"


@pytest.mark.parametrize("name", ["inpaint", "upload_paint"])
def test_mask_polygon_sizes_follow_the_spec(name: str) -> None:
    e = ENDPOINTS_BY_NAME[name]
    area_schema = request_schema(e)["properties"]["mask"]["properties"]["areas"]["items"]
    full = max(wire_examples(name), key=len)
    for side in ("width", "height"):
        bounds = area_schema["properties"][side]
        low, high = bounds["minimum"], bounds["maximum"]
        for size, accepted in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            area = {"width": 2000, "height": 2000, "points": [0, 0, 400, 0, 400, 400], side: size}
            wire = {**full, "mask": {"areas": [area]}}
            assert validator(e).is_valid(wire) is accepted
            if accepted:
                e.parse(wire)
            else:
                with pytest.raises(InvalidRequestError):
                    e.parse(wire)
