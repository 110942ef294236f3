"""Request models: every rule Legnext enforces refuses bad input before a paid call,
accepts good input, and puts camelCase on the wire."""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic.alias_generators import to_camel, to_snake

from prefect_legnext import CREATE_ENDPOINTS, InvalidRequestError, endpoint
from prefect_legnext.core.models import PROMPT_MAX, URL_MAX, InpaintRequest, Mask, Polygon

JOB = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
IMG = "https://img.example.test/cat.png"
IMG2 = "https://img.example.test/dog.png"
MASK_URL = "https://img.example.test/mask.png"
SQUARE = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500, 10, 500]}
CANVAS = {"width": 1024, "height": 1024}
IMG_POS = {"width": 512, "height": 512, "x": 256, "y": 256}

# One valid request per endpoint, snake_case, required fields only.
BASE: dict[str, dict[str, Any]] = {
    "diffusion": {"text": "a lighthouse at dawn --v 7"},
    "variation": {"job_id": JOB, "image_no": 0, "type": 0},
    "upscale": {"job_id": JOB, "image_no": 1, "type": 1},
    "reroll": {"job_id": JOB},
    "blend": {"img_urls": [IMG, IMG2], "aspect_ratio": "1:1"},
    "describe": {"img_url": IMG},
    "shorten": {"prompt": "a very long and winding prompt about a lighthouse"},
    "pan": {"job_id": JOB, "image_no": 2, "direction": 1, "scale": 1.5},
    "outpaint": {"job_id": JOB, "image_no": 3, "scale": 1.5},
    "inpaint": {"job_id": JOB, "image_no": 0, "mask": {"areas": [SQUARE]}},
    "remix": {"job_id": JOB, "image_no": 0, "remix_prompt": "in autumn"},
    "edit": {
        "job_id": JOB,
        "image_no": 0,
        "canvas": CANVAS,
        "img_pos": IMG_POS,
        "remix_prompt": "on a beach",
    },
    "upload_paint": {
        "img_url": IMG,
        "canvas": CANVAS,
        "img_pos": IMG_POS,
        "remix_prompt": "on a beach",
        "mask": {"url": MASK_URL},
    },
    "retexture": {"img_url": IMG, "remix_prompt": "oil painting"},
    "remove_background": {"img_url": IMG},
    "enhance": {"job_id": JOB, "image_no": 0},
    "video_diffusion": {"job_id": JOB, "image_no": 0},
    "extend_video": {"job_id": JOB, "video_no": 0},
    "video_upscale": {"job_id": JOB, "video_no": 0},
}
ENDPOINT_NAMES = [e.name for e in CREATE_ENDPOINTS]


def url_of_length(length: int) -> str:
    prefix = "https://img.example.test/"
    return prefix + "a" * (length - len(prefix))


def with_fields(name: str, **changes: Any) -> dict[str, Any]:
    return {**BASE[name], **changes}


def reject(name: str, **fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        endpoint(name).build(**fields)
    assert info.value.endpoint == name
    return info.value


def _names(where: str, rule: str, field: str) -> bool:
    located = ".".join(to_snake(part) for part in where.split(".")) if where else ""
    if located == field or located.startswith(field + "."):
        return True
    return not where and field in rule  # a model-level rule names its fields in its text


def assert_only_names(error: InvalidRequestError, field: str) -> None:
    """Every problem in `error` is about `field` (dotted snake_case path; the wire's
    camelCase spelling counts as the same field), and its message says so."""
    assert error.problems, "an InvalidRequestError must list its problems"
    for where, rule in error.problems:
        assert _names(where, rule, field), f"{field!r} not named by ({where!r}, {rule!r})"
    top = field.split(".")[0]
    assert top in str(error) or to_camel(top) in str(error)


def test_every_endpoint_has_a_valid_base_request() -> None:
    assert set(BASE) == set(ENDPOINT_NAMES)
    for name, fields in BASE.items():
        request = endpoint(name).build(**fields)
        assert type(request) is endpoint(name).request


# --- one rule per row: (field, endpoints, accepted (value, wire value), refused values) -----------


def having(field: str) -> list[str]:
    return [e.name for e in CREATE_ENDPOINTS if field in e.request.model_fields]


PROMPT_OK = [("x", "x"), ("x" * PROMPT_MAX, "x" * PROMPT_MAX)]
PROMPT_BAD = ["", "x" * (PROMPT_MAX + 1)]
URL_OK = [(u, u) for u in ("http://img.example.test/a.png", url_of_length(URL_MAX))]
URL_BAD = [
    "ftp://img.example.test/a.png",
    "img.example.test/a.png",
    "https://",
    "javascript:alert(1)",
    url_of_length(URL_MAX + 1),
]
FIVE_URLS = [f"https://img.example.test/{i}.png" for i in range(5)]

RULES: list[tuple[str, list[str], list[tuple[Any, Any]], list[Any]]] = [
    ("text", ["diffusion"], PROMPT_OK, PROMPT_BAD),
    ("prompt", ["shorten", "extend_video"], PROMPT_OK, PROMPT_BAD),
    ("remix_prompt", having("remix_prompt"), PROMPT_OK, PROMPT_BAD),
    ("img_url", having("img_url"), URL_OK, URL_BAD),
    ("callback", ENDPOINT_NAMES, URL_OK, [u for u in URL_BAD if len(u) <= URL_MAX]),
    (
        "job_id",
        having("job_id"),
        [(JOB, JOB), (JOB.upper(), JOB), (uuid.UUID(JOB), JOB)],
        ["job_12345", "", "3c90c3cc-0d44-4b50-8888", 12345],
    ),
    ("image_no", having("image_no"), [(0, 0), (3, 3)], [-1, 4]),
    ("video_no", having("video_no"), [(0, 0), (3, 3)], [-1, 4]),
    ("type", ["variation", "upscale"], [(0, 0), (1, 1)], [-1, 2, "strong"]),
    ("mode", ["remix"], [(0, 0), (1, 1)], [-1, 2]),
    ("video_type", ["video_diffusion"], [(0, 0), (1, 1)], [-1, 2]),
    ("direction", ["pan"], [(d, d) for d in range(4)], [-1, 4]),
    ("scale", ["pan"], [(1.1, 1.1), (2.0, 2.0), (3.0, 3.0)], [1.0, 1.09, 3.01]),
    ("scale", ["outpaint"], [(1.1, 1.1), (2.0, 2.0)], [1.09, 2.01, 3.0]),
    (
        "img_urls",
        ["blend"],
        [
            (FIVE_URLS[:2], FIVE_URLS[:2]),
            (FIVE_URLS, FIVE_URLS),
            # imgUrls has no length limit in the vendor's spec (only imgUrl has 1024).
            ([IMG, url_of_length(2000)], [IMG, url_of_length(2000)]),
        ],
        [FIVE_URLS[:1], [*FIVE_URLS, IMG], [IMG, "ftp://img.example.test/b.png"], []],
    ),
    ("aspect_ratio", ["blend"], [(r, r) for r in ("2:3", "1:1", "3:2")], ["4:3", "16:9", ""]),
    ("canvas", having("canvas"), [({"width": 1, "height": 1}, {"width": 1, "height": 1})], [
        {"width": 0, "height": 100},
        {"width": 100},
    ]),
    ("img_pos", having("img_pos"), [(IMG_POS, IMG_POS)], [
        {"width": 0, "height": 10, "x": 0, "y": 0},
        {"width": 10, "height": 10, "x": 0},
    ]),
]  # fmt: skip

ACCEPTED = [
    pytest.param(name, field, value, wire, id=f"{name}.{field}={str(value)[:20]}")
    for field, names, good, _bad in RULES
    for name in names
    for value, wire in good
]
REFUSED = [
    pytest.param(name, field, value, id=f"{name}.{field}={str(value)[:20]}")
    for field, names, _good, bad in RULES
    for name in names
    for value in bad
]


def test_rule_table_covers_every_field_rule() -> None:
    # Each rule above applies to at least one endpoint (a typo would silently test nothing).
    for field, names, good, bad in RULES:
        assert names and good and bad, field
        for name in names:
            assert field in endpoint(name).request.model_fields, (name, field)


@pytest.mark.parametrize(("name", "field", "value", "wire"), ACCEPTED)
def test_rule_accepts(name: str, field: str, value: Any, wire: Any) -> None:
    request = endpoint(name).build(**with_fields(name, **{field: value}))
    key = "aspect_ratio" if field == "aspect_ratio" else to_camel(field)
    assert request.to_wire()[key] == wire


@pytest.mark.parametrize(("name", "field", "value"), REFUSED)
def test_rule_refuses(name: str, field: str, value: Any) -> None:
    error = reject(name, **with_fields(name, **{field: value}))
    assert_only_names(error, field)


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_required_fields_are_required(name: str) -> None:
    required = [f for f, info in endpoint(name).request.model_fields.items() if info.is_required()]
    for field in required:
        fields = dict(BASE[name])
        del fields[field]
        assert_only_names(reject(name, **fields), field)


# --- masks and polygons ---------------------------------------------------------------------------


def polygon(width: int = 1024, height: int = 1024, points: list[int] | None = None) -> dict:
    if points is None:
        points = [0, 0, 100, 0, 100, 100]
    return {"width": width, "height": height, "points": points}


@pytest.mark.parametrize("name", ["inpaint", "upload_paint"])
@pytest.mark.parametrize(
    "mask", [{"areas": [SQUARE]}, {"areas": [SQUARE, polygon()]}, {"url": MASK_URL}]
)
def test_mask_with_exactly_one_of_areas_or_url_is_accepted(name: str, mask: dict) -> None:
    request = endpoint(name).build(**with_fields(name, mask=mask))
    assert request.to_wire()["mask"] == mask


@pytest.mark.parametrize("name", ["inpaint", "upload_paint"])
@pytest.mark.parametrize(
    ("mask", "field"),
    [
        ({"areas": [SQUARE], "url": MASK_URL}, "mask"),
        ({}, "mask"),
        ({"areas": []}, "mask.areas"),
        ({"url": "ftp://img.example.test/mask.png"}, "mask.url"),
        ({"url": "mask.png"}, "mask.url"),
        ({"url": MASK_URL, "feather": 3}, "mask.feather"),
    ],
)
def test_mask_rules(name: str, mask: dict, field: str) -> None:
    assert_only_names(reject(name, **with_fields(name, mask=mask)), field)


@pytest.mark.parametrize("name", ["inpaint", "upload_paint"])
def test_a_mask_url_has_no_length_limit(name: str) -> None:
    # The vendor limits imgUrl to 1024 characters, not mask.url (openapi-complete.yaml).
    long_url = url_of_length(2000)
    request = endpoint(name).build(**with_fields(name, mask={"url": long_url}))
    assert request.to_wire()["mask"] == {"url": long_url}


@pytest.mark.parametrize("name", ["inpaint", "upload_paint"])
def test_mask_is_required(name: str) -> None:
    fields = dict(BASE[name])
    del fields["mask"]
    assert_only_names(reject(name, **fields), "mask")


@pytest.mark.parametrize("size", [500, 4096])
def test_polygon_size_bounds_are_inclusive(size: int) -> None:
    endpoint("inpaint").build(**with_fields("inpaint", mask={"areas": [polygon(size, size)]}))


@pytest.mark.parametrize(
    ("area", "field"),
    [
        (polygon(width=499), "width"),
        (polygon(width=4097), "width"),
        (polygon(height=499), "height"),
        (polygon(height=4097), "height"),
    ],
)
def test_polygon_size_out_of_bounds_is_refused(area: dict, field: str) -> None:
    error = reject("inpaint", **with_fields("inpaint", mask={"areas": [area]}))
    assert_only_names(error, f"mask.areas.0.{field}")


@pytest.mark.parametrize(
    "points",
    [
        [],
        [0, 0, 10, 10],
        [0, 0, 10, 0, 10],
        [0, 0, 10, 0, 10, 10, 0],
        [0, 0, 10, 0, 10, 10, 0, 10, 5],
    ],
)
def test_polygon_needs_an_even_count_of_at_least_six(points: list[int]) -> None:
    error = reject("inpaint", **with_fields("inpaint", mask={"areas": [polygon(points=points)]}))
    assert_only_names(error, "mask.areas.0")
    assert "even count of at least 6" in str(error)


@pytest.mark.parametrize(
    "points",
    [
        [0, 0, 1025, 0, 100, 100],  # x beyond width
        [0, 0, 100, 1025, 100, 100],  # y beyond height
        [-1, 0, 100, 0, 100, 100],  # x negative
        [0, 0, 100, 0, 100, -5],  # y negative
    ],
)
def test_polygon_points_must_lie_inside_the_image(points: list[int]) -> None:
    area = polygon(1024, 1024, points)
    error = reject("upload_paint", **with_fields("upload_paint", mask={"areas": [area]}))
    assert_only_names(error, "mask.areas.0")
    assert "outside the 1024x1024 image" in str(error)


def test_polygon_points_on_the_edge_are_inside() -> None:
    area = polygon(1024, 768, [0, 0, 1024, 0, 1024, 768, 0, 768])
    request = endpoint("inpaint").build(**with_fields("inpaint", mask={"areas": [area]}))
    assert request.to_wire()["mask"]["areas"] == [area]


def test_deprecated_area_goes_out_as_the_required_mask() -> None:
    fields = {"job_id": JOB, "image_no": 0, "area": SQUARE}
    with pytest.warns(DeprecationWarning, match="mask"):
        request = endpoint("inpaint").build(**fields)
    assert request.to_wire() == {"jobId": JOB, "imageNo": 0, "mask": {"areas": [SQUARE]}}
    assert request.mask == Mask(areas=[Polygon(**SQUARE)])
    assert request.area is None
    assert endpoint("inpaint").parse(request.to_wire()) == request


def _warnings_of(build: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [w for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize(
    "build",
    [
        lambda: InpaintRequest(job_id=JOB, image_no=0, area=SQUARE),
        lambda: InpaintRequest.model_validate({"jobId": JOB, "imageNo": 0, "area": SQUARE}),
        lambda: endpoint("inpaint").build(job_id=JOB, image_no=0, area=SQUARE),
    ],
    ids=["constructor", "model_validate", "endpoint.build"],
)
def test_the_area_deprecation_warning_points_at_the_callers_line(build: Any) -> None:
    [warning] = _warnings_of(build)
    assert warning.filename == __file__  # not pydantic's internals, not our validator
    assert "area= is deprecated" in str(warning.message)


def test_the_area_deprecation_warning_points_at_the_client_call(legnext: Any, api: Any) -> None:
    route = api.post("/api/v1/inpaint").respond(200, json={"job_id": JOB, "status": "pending"})
    with pytest.warns(DeprecationWarning) as caught:
        legnext("inpaint", job_id=JOB, image_no=0, area=SQUARE)
    # The runner's own line calls the client method: the first frame outside the package.
    assert {Path(w.filename).name for w in caught} == {"conftest.py"}
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"jobId": JOB, "imageNo": 0, "mask": {"areas": [SQUARE]}}


def test_a_json_body_with_area_is_read_silently_as_mask() -> None:
    # How the simulator reads a body (strict JSON): lenient, as the vendor documents area.
    raw = json.dumps({"jobId": JOB, "imageNo": 0, "area": SQUARE})
    assert _warnings_of(lambda: endpoint("inpaint").parse_json(raw)) == []
    assert endpoint("inpaint").parse_json(raw).to_wire()["mask"] == {"areas": [SQUARE]}


def test_mask_and_the_deprecated_area_together_are_refused() -> None:
    fields = {"job_id": JOB, "image_no": 0, "mask": {"url": MASK_URL}, "area": SQUARE}
    error = reject("inpaint", **fields)
    assert error.problems == [("area", "give mask or the deprecated area, not both")]


def test_deprecated_area_follows_the_polygon_rules() -> None:
    fields = {"job_id": JOB, "image_no": 0, "area": polygon(width=100)}
    assert_only_names(reject("inpaint", **fields), "area.width")


# Hypothesis: polygons generated inside their bounds are always accepted; any point outside,
# or an odd or too small count, is always refused.

sizes = st.integers(min_value=500, max_value=4096)


@st.composite
def valid_polygons(draw: st.DrawFn) -> dict[str, Any]:
    width, height = draw(sizes), draw(sizes)
    count = draw(st.integers(min_value=3, max_value=12))
    points: list[int] = []
    for _ in range(count):
        points += [draw(st.integers(0, width)), draw(st.integers(0, height))]
    return {"width": width, "height": height, "points": points}


@given(areas=st.lists(valid_polygons(), min_size=1, max_size=3))
def test_valid_polygons_are_accepted_and_round_trip(areas: list[dict[str, Any]]) -> None:
    request = endpoint("inpaint").build(job_id=JOB, image_no=0, mask={"areas": areas})
    wire = request.to_wire()
    assert wire["mask"] == {"areas": areas}
    assert endpoint("inpaint").parse(wire) == request
    mask = Mask.model_validate(wire["mask"])
    assert mask.to_wire() == wire["mask"]
    assert [p.vertices() for p in mask.areas or []] == [
        list(zip(a["points"][::2], a["points"][1::2], strict=True)) for a in areas
    ]


@given(data=st.data(), area=valid_polygons())
def test_any_point_outside_is_refused(data: st.DataObject, area: dict[str, Any]) -> None:
    points = list(area["points"])
    index = data.draw(st.integers(0, len(points) - 1), label="coordinate")
    bound = area["width"] if index % 2 == 0 else area["height"]
    points[index] = data.draw(
        st.one_of(st.integers(max_value=-1), st.integers(min_value=bound + 1)), label="value"
    )
    with pytest.raises(ValueError, match="lies outside"):
        Polygon(width=area["width"], height=area["height"], points=points)
    fields = {"job_id": JOB, "image_no": 0, "mask": {"areas": [{**area, "points": points}]}}
    assert_only_names(reject("inpaint", **fields), "mask.areas.0")


@given(data=st.data(), area=valid_polygons())
def test_odd_or_short_point_lists_are_refused(data: st.DataObject, area: dict[str, Any]) -> None:
    points = area["points"]
    odd = points[: data.draw(st.sampled_from(range(1, len(points), 2)), label="odd length")]
    short = points[: data.draw(st.sampled_from([0, 2, 4]), label="short length")]
    for bad in (odd, short):
        fields = {"job_id": JOB, "image_no": 0, "mask": {"areas": [{**area, "points": bad}]}}
        assert_only_names(reject("inpaint", **fields), "mask.areas.0")


@given(has_areas=st.booleans(), has_url=st.booleans(), area=valid_polygons())
def test_mask_needs_exactly_one_source(has_areas: bool, has_url: bool, area: dict) -> None:
    mask: dict[str, Any] = {}
    if has_areas:
        mask["areas"] = [area]
    if has_url:
        mask["url"] = MASK_URL
    if has_areas != has_url:
        assert Mask.model_validate(mask).to_wire() == mask
    else:
        with pytest.raises(ValueError, match="exactly one of areas or url"):
            Mask.model_validate(mask)


# --- video-diffusion: job_id + image_no, or a prompt starting with an image URL -------------------


@pytest.mark.parametrize(
    ("fields", "wire"),
    [
        ({"job_id": JOB, "image_no": 2}, {"jobId": JOB, "imageNo": 2}),
        (
            {"job_id": JOB, "image_no": 2, "prompt": "slow pan", "video_type": 1},
            {"jobId": JOB, "imageNo": 2, "prompt": "slow pan", "videoType": 1},
        ),
        ({"prompt": f"{IMG} a cat walks"}, {"prompt": f"{IMG} a cat walks"}),
        ({"prompt": IMG, "video_type": 0}, {"prompt": IMG, "videoType": 0}),
    ],
)
def test_video_diffusion_accepts_a_parent_image_or_an_image_prompt(
    fields: dict, wire: dict
) -> None:
    assert endpoint("video_diffusion").build(**fields).to_wire() == wire


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"job_id": JOB}, "image_no"),
        ({"image_no": 0}, "job_id"),
        ({"job_id": JOB, "prompt": f"{IMG} a cat"}, "image_no"),
        ({}, "prompt"),
        ({"video_type": 1}, "prompt"),
        ({"prompt": "a cat walks"}, "prompt"),
        ({"prompt": "a cat walks " + IMG}, "prompt"),
        ({"prompt": "ftp://img.example.test/a.png a cat"}, "prompt"),
    ],
)
def test_video_diffusion_refuses_a_request_without_a_source(fields: dict, named: str) -> None:
    assert_only_names(reject("video_diffusion", **fields), named)


def test_video_diffusion_prompt_url_has_no_length_limit_of_its_own() -> None:
    # The prompt is 1..8192 characters (the spec); the 1024 limit is imgUrl's alone.
    prompt = url_of_length(URL_MAX + 1) + " a cat"
    assert endpoint("video_diffusion").build(prompt=prompt).to_wire() == {"prompt": prompt}


# --- unknown fields, camelCase on the wire --------------------------------------------------------


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
@pytest.mark.parametrize("extra", ["bogus_field", "JobID", "apiKey"])
def test_unknown_fields_are_refused(name: str, extra: str) -> None:
    error = reject(name, **with_fields(name, **{extra: 1}))
    assert [where for where, _rule in error.problems] == [extra]
    assert extra in str(error)


@pytest.mark.parametrize(("name", "nested"), [("edit", "canvas"), ("edit", "img_pos")])
def test_unknown_nested_fields_are_refused(name: str, nested: str) -> None:
    value = {**BASE[name][nested], "depth": 3}
    assert_only_names(reject(name, **with_fields(name, **{nested: value})), f"{nested}.depth")


@pytest.mark.parametrize(
    ("name", "fields", "wire"),
    [
        (
            "variation",
            {"job_id": JOB, "image_no": 1, "type": 1, "remix_prompt": "red", "callback": IMG},
            {"jobId": JOB, "imageNo": 1, "type": 1, "remixPrompt": "red", "callback": IMG},
        ),
        (
            "blend",
            {"img_urls": [IMG, IMG2], "aspect_ratio": "3:2"},
            {"imgUrls": [IMG, IMG2], "aspect_ratio": "3:2"},
        ),
        (
            "edit",
            BASE["edit"],
            {
                "jobId": JOB,
                "imageNo": 0,
                "canvas": CANVAS,
                "imgPos": IMG_POS,
                "remixPrompt": "on a beach",
            },
        ),
        (
            "upload_paint",
            with_fields("upload_paint", mask={"areas": [SQUARE]}),
            {
                "imgUrl": IMG,
                "canvas": CANVAS,
                "imgPos": IMG_POS,
                "remixPrompt": "on a beach",
                "mask": {"areas": [SQUARE]},
            },
        ),
        (
            "video_diffusion",
            {"job_id": JOB, "image_no": 3, "video_type": 1},
            {"jobId": JOB, "imageNo": 3, "videoType": 1},
        ),
        ("extend_video", {"job_id": JOB, "video_no": 2}, {"jobId": JOB, "videoNo": 2}),
        (
            "remix",
            with_fields("remix", mode=1),
            {"jobId": JOB, "imageNo": 0, "remixPrompt": "in autumn", "mode": 1},
        ),
    ],
)
def test_to_wire_is_camel_case(name: str, fields: dict, wire: dict) -> None:
    request = endpoint(name).build(**fields)
    assert request.to_wire() == wire
    assert endpoint(name).parse(wire) == request  # the wire form reads back


def test_blend_keeps_its_snake_case_aspect_ratio_on_the_wire() -> None:
    wire = endpoint("blend").build(**BASE["blend"]).to_wire()
    assert "aspect_ratio" in wire
    assert "aspectRatio" not in wire
    camel = {"imgUrls": [IMG, IMG2], "aspectRatio": "1:1"}
    error = reject("blend", **camel)
    assert {to_snake(where) for where, _ in error.problems} == {"aspect_ratio"}


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_unset_optional_fields_stay_off_the_wire(name: str) -> None:
    wire = endpoint(name).build(**BASE[name]).to_wire()
    assert None not in wire.values()
    assert "callback" not in wire
    assert all(key == "aspect_ratio" or key == to_camel(key) for key in wire)
    assert endpoint(name).parse(wire) == endpoint(name).build(**BASE[name])


def test_endpoint_lookup_takes_hyphens_or_underscores() -> None:
    assert endpoint("remove-background") is endpoint("remove_background")
    with pytest.raises(KeyError, match="unknown Legnext endpoint"):
        endpoint("imagine")


# --- the client methods validate before sending ---------------------------------------------------


@pytest.mark.parametrize("name", ENDPOINT_NAMES)
def test_client_methods_refuse_unknown_fields_without_a_call(
    legnext: Any, api: Any, name: str
) -> None:
    # A method's keyword-only parameters are exactly its request's fields: Python refuses
    # any other keyword (as a type checker does), before anything is built or sent.
    anything = api.route()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus_field'"):
        legnext(name, **with_fields(name, bogus_field=1))
    assert anything.call_count == 0


@pytest.mark.parametrize(
    ("name", "fields", "named"),
    [
        ("diffusion", {"text": ""}, "text"),
        ("blend", {"img_urls": [IMG], "aspect_ratio": "1:1"}, "img_urls"),
        ("pan", with_fields("pan", scale=3.5), "scale"),
        ("inpaint", with_fields("inpaint", mask={"areas": [polygon(width=100)]}), "mask.areas.0"),
        ("video_diffusion", {"prompt": "no url here"}, "prompt"),
    ],
)
def test_client_methods_name_the_broken_rule(
    legnext: Any, api: Any, name: str, fields: dict, named: str
) -> None:
    anything = api.route()
    with pytest.raises(InvalidRequestError) as info:
        legnext(name, **fields)
    assert info.value.endpoint == name
    assert_only_names(info.value, named)
    assert anything.call_count == 0


def test_errors_do_not_echo_the_refused_value() -> None:
    secretish = "https://img.example.test/" + "s3cr3t" * 200
    error = reject("describe", img_url=secretish)
    assert "s3cr3t" not in str(error)


# --- costs ----------------------------------------------------------------------------------------

FIXED_POINTS = {
    "variation": 120,
    "blend": 80,
    "describe": 20,
    "shorten": 20,
    "pan": 80,
    "outpaint": 80,
    "inpaint": 120,
    "remix": 120,
    "edit": 120,
    "upload_paint": 120,
    "retexture": 120,
    "remove_background": 80,
    "enhance": 80,
    "video_upscale": 480,
}


@pytest.mark.parametrize(("name", "points"), FIXED_POINTS.items())
def test_fixed_costs(name: str, points: int) -> None:
    e = endpoint(name)
    assert e.cost(e.build(**BASE[name])) == points
    assert e.cost(e.build(**BASE[name]), parent_points=9999) == points


@pytest.mark.parametrize(
    ("text", "points"),
    [
        ("a cat", 80),
        ("a cat --v 7", 80),
        ("a cat --v 7 --draft", 40),
        ("a cat --draft --ar 3:2", 40),
        ("a cat --draftsman", 80),
    ],
)
def test_diffusion_cost_halves_in_draft_mode(text: str, points: int) -> None:
    e = endpoint("diffusion")
    assert e.cost(e.build(text=text)) == points


@pytest.mark.parametrize(("kind", "points"), [(0, 120), (1, 160)])
def test_upscale_cost_depends_on_type(kind: int, points: int) -> None:
    e = endpoint("upscale")
    assert e.cost(e.build(job_id=JOB, image_no=0, type=kind)) == points


@pytest.mark.parametrize(
    ("fields", "points"),
    [
        ({"job_id": JOB, "image_no": 0}, 480),
        ({"job_id": JOB, "image_no": 0, "video_type": 0}, 480),
        ({"job_id": JOB, "image_no": 0, "video_type": 1}, 1536),
        ({"prompt": f"{IMG} waves", "video_type": 1}, 1536),
    ],
)
def test_video_cost_depends_on_quality(fields: dict, points: int) -> None:
    e = endpoint("video_diffusion")
    assert e.cost(e.build(**fields)) == points


@pytest.mark.parametrize("parent", [40, 80, 120, 160])
def test_reroll_costs_as_its_parent(parent: int) -> None:
    e = endpoint("reroll")
    assert e.cost(e.build(job_id=JOB), parent_points=parent) == parent


def test_parent_priced_costs_without_the_parent_take_the_highest_price() -> None:
    reroll, extend = endpoint("reroll"), endpoint("extend_video")
    assert reroll.cost(reroll.build(job_id=JOB)) == 160
    assert extend.cost(extend.build(**BASE["extend_video"])) == 1536
    assert extend.cost(extend.build(**BASE["extend_video"]), parent_points=480) == 480
