"""Every request rule of `prefect_legnext.core.models`, each tested on both sides.

One row per case: the rule's id (as listed in ``docs/request-rules.md``), the endpoint,
the request, and for a refusal the field it must name and a recognisable part of its
message. The register and this table must list the same rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prefect_legnext import InvalidRequestError, endpoint

REGISTER = Path(__file__).resolve().parents[1] / "docs" / "request-rules.md"

JOB = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
IMG = "https://img.example.test/cat.png"
IMG2 = "https://img.example.test/dog.png"
HOOK = "https://hooks.example.test/legnext"
SQUARE = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500, 10, 500]}
CANVAS = {"width": 1024, "height": 1024}
IMG_POS = {"width": 512, "height": 512, "x": 256, "y": 256}


def url(length: int) -> str:
    prefix = "https://img.example.test/"
    return prefix + "a" * (length - len(prefix))


def polygon(width: int = 1024, height: int = 1024, points: list[int] | None = None) -> dict:
    return {"width": width, "height": height, "points": points or [0, 0, 100, 0, 100, 100]}


# Smallest valid requests (snake_case), changed by each row.
BASE: dict[str, dict[str, Any]] = {
    "diffusion": {"text": "a lighthouse"},
    "variation": {"job_id": JOB, "image_no": 0, "type": 0},
    "upscale": {"job_id": JOB, "image_no": 0, "type": 0},
    "reroll": {"job_id": JOB},
    "blend": {"img_urls": [IMG, IMG2], "aspect_ratio": "1:1"},
    "describe": {"img_url": IMG},
    "shorten": {"prompt": "a long prompt"},
    "pan": {"job_id": JOB, "image_no": 0, "direction": 1, "scale": 1.5},
    "outpaint": {"job_id": JOB, "image_no": 0, "scale": 1.5},
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
        "mask": {"url": IMG2},
    },
    "retexture": {"img_url": IMG, "remix_prompt": "oil painting"},
    "remove_background": {"img_url": IMG},
    "enhance": {"job_id": JOB, "image_no": 0},
    "video_diffusion": {"job_id": JOB, "image_no": 0},
    "extend_video": {"job_id": JOB, "video_no": 0},
    "video_upscale": {"job_id": JOB, "video_no": 0},
}


@dataclass(frozen=True)
class Row:
    """`changes` applied to the endpoint's BASE request (a key set to DROP is removed);
    refused when `field` is set: the error must name it and contain `text`. With
    `wire=True` the changes are camelCase JSON keys, read as the simulator reads a body."""

    rule: str
    name: str
    changes: dict[str, Any]
    field: str | None = None
    text: str = ""
    wire: bool = False

    @property
    def id(self) -> str:
        side = "refuses" if self.field else "accepts"
        return f"{self.rule}:{self.name}:{side}:{','.join(self.changes) or 'base'}"


DROP = object()


def ok(rule: str, name: str, /, *, wire: bool = False, **changes: Any) -> Row:
    return Row(rule, name, changes, wire=wire)


def bad(
    rule: str, name: str, where: str, says: str, /, *, wire: bool = False, **changes: Any
) -> Row:
    return Row(rule, name, changes, where, says, wire)


ROWS: list[Row] = [
    # --- lengths and forms of strings ---
    ok("prompt-length", "diffusion", text="x"),
    ok("prompt-length", "remix", remix_prompt="x" * 8192),
    bad("prompt-length", "diffusion", "text", "at least 1 character", text=""),
    bad("prompt-length", "shorten", "prompt", "at most 8192", prompt="x" * 8193),
    bad("prompt-length", "extend_video", "prompt", "at least 1", prompt=""),
    bad("prompt-length", "variation", "remix_prompt", "at most 8192", remix_prompt="x" * 8193),
    ok("img-url-max-1024", "retexture", img_url=url(1024)),
    ok("img-url-max-1024", "describe", img_url=url(1024)),
    bad("img-url-max-1024", "retexture", "img_url", "at most 1024", img_url=url(1025)),
    bad("img-url-max-1024", "describe", "img_url", "at most 1024", img_url=url(1025)),
    bad("img-url-max-1024", "remove_background", "img_url", "at most 1024", img_url=url(1025)),
    bad("img-url-max-1024", "upload_paint", "img_url", "at most 1024", img_url=url(1025)),
    ok("img-url-http", "describe", img_url="http://img.example.test/a.png"),
    bad("img-url-http", "describe", "img_url", "http(s) URL", img_url="ftp://img.example.test/a"),
    bad("img-url-http", "retexture", "img_url", "http(s) URL", img_url="img.example.test/a.png"),
    bad(
        "img-url-http", "describe", "img_url", "without spaces", img_url="https://img.test/a b.png"
    ),
    bad("img-url-http", "describe", "img_url", "without spaces", img_url="https://img.test/a\tb"),
    ok("blend-urls-http", "blend", img_urls=[IMG, url(2000)]),
    bad("blend-urls-http", "blend", "img_urls.1", "http(s) URL", img_urls=[IMG, "ftp://x.test/a"]),
    ok("mask-url-http", "inpaint", mask={"url": url(2000)}),
    ok("mask-url-http", "upload_paint", mask={"url": url(2000)}),
    bad("mask-url-http", "inpaint", "mask.url", "http(s) URL", mask={"url": "mask.png"}),
    bad(
        "mask-url-http", "inpaint", "mask.url", "without spaces", mask={"url": "https://m.test/ x"}
    ),
    ok("callback-http", "diffusion", callback=url(2000)),
    bad("callback-http", "reroll", "callback", "http(s) URL", callback="mailto:me@example.test"),
    bad("callback-http", "diffusion", "callback", "http(s) URL", callback="https://"),
    # --- ids and numbers ---
    ok("job-id-uuid", "reroll", job_id=JOB.upper()),
    bad("job-id-uuid", "reroll", "job_id", "UUID", job_id="job_12345"),
    bad("job-id-uuid", "enhance", "job_id", "UUID", job_id=12345),
    ok("image-no-range", "upscale", image_no=3),
    bad("image-no-range", "upscale", "image_no", "less than or equal to 3", image_no=4),
    bad("image-no-range", "enhance", "image_no", "greater than or equal to 0", image_no=-1),
    ok("video-no-range", "video_upscale", video_no=3),
    bad("video-no-range", "extend_video", "video_no", "less than or equal to 3", video_no=4),
    ok("no-booleans-for-numbers", "upscale", image_no=1),
    bad("no-booleans-for-numbers", "upscale", "image_no", "not a boolean", image_no=True),
    bad("no-booleans-for-numbers", "variation", "type", "not a boolean", type=False),
    bad("no-booleans-for-numbers", "pan", "scale", "not a boolean", scale=True),
    bad(
        "no-booleans-for-numbers",
        "edit",
        "img_pos.x",
        "not a boolean",
        img_pos={**IMG_POS, "x": True},
    ),
    ok("variation-type", "variation", type=1),
    bad("variation-type", "variation", "type", "0 or 1", type=2),
    ok("upscale-type", "upscale", type=1),
    bad("upscale-type", "upscale", "type", "0 or 1", type=-1),
    ok("remix-mode", "remix", mode=1),
    bad("remix-mode", "remix", "mode", "0 or 1", mode=2),
    ok("video-type", "video_diffusion", video_type=1),
    bad("video-type", "video_diffusion", "video_type", "0 or 1", video_type=2),
    ok("pan-direction", "pan", direction=3),
    bad("pan-direction", "pan", "direction", "0, 1, 2 or 3", direction=4),
    ok("pan-scale", "pan", scale=3.0),
    ok("pan-scale", "pan", scale=1.1),
    bad("pan-scale", "pan", "scale", "less than or equal to 3", scale=3.01),
    bad("pan-scale", "pan", "scale", "greater than or equal to 1.1", scale=1.09),
    ok("outpaint-scale", "outpaint", scale=2.0),
    bad("outpaint-scale", "outpaint", "scale", "less than or equal to 2", scale=2.01),
    bad("outpaint-scale", "outpaint", "scale", "greater than or equal to 1.1", scale=1.0),
    # --- blend ---
    ok("blend-count", "blend", img_urls=[IMG] * 5),
    bad("blend-count", "blend", "img_urls", "at least 2 items", img_urls=[IMG]),
    bad("blend-count", "blend", "img_urls", "at most 5 items", img_urls=[IMG] * 6),
    ok("blend-aspect-ratio", "blend", aspect_ratio="3:2"),
    bad("blend-aspect-ratio", "blend", "aspect_ratio", "'2:3', '1:1' or '3:2'", aspect_ratio="4:3"),
    # --- masks and polygons ---
    ok("polygon-size", "inpaint", mask={"areas": [polygon(500, 4096)]}),
    bad(
        "polygon-size",
        "inpaint",
        "mask.areas.0.width",
        "greater than or equal to 500",
        mask={"areas": [polygon(width=499)]},
    ),
    bad(
        "polygon-size",
        "upload_paint",
        "mask.areas.0.height",
        "less than or equal to 4096",
        mask={"areas": [polygon(height=4097)]},
    ),
    ok("polygon-points-count", "inpaint", mask={"areas": [polygon(points=[0, 0, 9, 0, 9, 9])]}),
    bad(
        "polygon-points-count",
        "inpaint",
        "mask.areas.0.points",
        "even count of at least 6",
        mask={"areas": [polygon(points=[0, 0, 9, 0, 9])]},
    ),
    bad(
        "polygon-points-count",
        "inpaint",
        "mask.areas.0.points",
        "even count of at least 6",
        mask={"areas": [polygon(points=[0, 0, 9, 9])]},
    ),
    ok(
        "polygon-points-inside",
        "inpaint",
        mask={"areas": [polygon(1024, 768, [0, 0, 1024, 0, 1024, 768])]},
    ),
    bad(
        "polygon-points-inside",
        "upload_paint",
        "mask.areas.0.points",
        "outside the 1024x768 image",
        mask={"areas": [polygon(1024, 768, [0, 0, 1024, 0, 1024, 769])]},
    ),
    bad(
        "polygon-points-inside",
        "inpaint",
        "mask.areas.0.points",
        "outside",
        mask={"areas": [polygon(points=[-1, 0, 9, 0, 9, 9])]},
    ),
    # Not enforced: the vendor's own example (the inpaint page) runs top-left, down, right,
    # up: counter-clockwise on screen (y down), clockwise with y up. Both orders pass.
    ok(
        "polygon-orientation",
        "inpaint",
        mask={"areas": [polygon(500, 500, [10, 10, 10, 100, 100, 100, 100, 10])]},
    ),
    ok(
        "polygon-orientation",
        "inpaint",
        mask={"areas": [polygon(500, 500, [10, 10, 100, 10, 100, 100, 10, 100])]},
    ),
    ok("mask-one-source", "inpaint", mask={"url": IMG2}),
    ok("mask-one-source", "upload_paint", mask={"areas": [SQUARE, polygon()]}),
    bad(
        "mask-one-source",
        "inpaint",
        "mask",
        "exactly one of areas or url",
        mask={"areas": [SQUARE], "url": IMG2},
    ),
    bad("mask-one-source", "upload_paint", "mask", "exactly one of areas or url", mask={}),
    ok("mask-areas-not-empty", "inpaint", mask={"areas": [SQUARE]}),
    bad("mask-areas-not-empty", "inpaint", "mask.areas", "at least 1 item", mask={"areas": []}),
    ok("inpaint-mask-required", "inpaint", remix_prompt="a tree"),
    bad("inpaint-mask-required", "inpaint", "mask", "mask is required", mask=DROP),
    ok("inpaint-area-deprecated", "inpaint", mask=DROP, area=SQUARE),
    bad(
        "inpaint-area-deprecated",
        "inpaint",
        "area.width",
        "greater than or equal to 500",
        mask=DROP,
        area=polygon(width=100),
    ),
    ok("inpaint-mask-or-area", "inpaint", mask=DROP, area=SQUARE),
    bad(
        "inpaint-mask-or-area",
        "inpaint",
        "area",
        "give mask or the deprecated area, not both",
        area=SQUARE,
    ),
    # --- canvas ---
    ok("canvas-size", "edit", canvas={"width": 1, "height": 1}),
    bad(
        "canvas-size",
        "edit",
        "canvas.width",
        "greater than or equal to 1",
        canvas={"width": 0, "height": 10},
    ),
    bad("canvas-size", "upload_paint", "canvas.height", "Field required", canvas={"width": 10}),
    ok("img-pos", "edit", img_pos={"width": 1, "height": 1, "x": -50, "y": 2000}),
    bad(
        "img-pos",
        "edit",
        "img_pos.width",
        "greater than or equal to 1",
        img_pos={**IMG_POS, "width": 0},
    ),
    bad(
        "img-pos",
        "upload_paint",
        "img_pos.y",
        "Field required",
        img_pos={"width": 1, "height": 1, "x": 0},
    ),
    # --- required fields ---
    ok("required-fields", "edit"),
    bad("required-fields", "edit", "remix_prompt", "Field required", remix_prompt=DROP),
    bad("required-fields", "upload_paint", "mask", "Field required", mask=DROP),
    bad("required-fields", "upscale", "type", "Field required", type=DROP),
    bad("required-fields", "blend", "aspect_ratio", "Field required", aspect_ratio=DROP),
    # --- video-diffusion sources ---
    ok("video-source", "video_diffusion", job_id=DROP, image_no=DROP, prompt=f"{IMG} a cat"),
    ok("video-source", "video_diffusion", prompt="slow zoom", video_type=1),
    bad(
        "video-source",
        "video_diffusion",
        "prompt",
        "needs job_id and image_no, or a prompt",
        job_id=DROP,
        image_no=DROP,
    ),
    ok("video-job-and-image-together", "video_diffusion", image_no=3),
    bad(
        "video-job-and-image-together",
        "video_diffusion",
        "image_no",
        "go together",
        image_no=DROP,
        prompt=f"{IMG} a cat",
    ),
    bad("video-job-and-image-together", "video_diffusion", "job_id", "go together", job_id=DROP),
    ok(
        "video-prompt-image-url",
        "video_diffusion",
        job_id=DROP,
        image_no=DROP,
        prompt=f"{url(1500)} a cat",
    ),
    bad(
        "video-prompt-image-url",
        "video_diffusion",
        "prompt",
        "must start with an image URL",
        job_id=DROP,
        image_no=DROP,
        prompt="a cat walks",
    ),
    bad(
        "video-prompt-image-url",
        "video_diffusion",
        "prompt",
        "must start with an image URL",
        job_id=DROP,
        image_no=DROP,
        prompt=f"a cat {IMG}",
    ),
    # --- the body as a whole ---
    ok("unknown-fields", "diffusion", callback=HOOK),
    bad(
        "unknown-fields",
        "diffusion",
        "bogus_field",
        "Extra inputs are not permitted",
        bogus_field=1,
    ),
    bad(
        "unknown-fields",
        "edit",
        "canvas.depth",
        "Extra inputs are not permitted",
        canvas={**CANVAS, "depth": 3},
    ),
    ok("no-null-on-the-wire", "variation", wire=True, remixPrompt=None),
    ok("no-null-on-the-wire", "diffusion", callback=None),  # Python's "not set": left out
    bad(
        "no-null-on-the-wire", "diffusion", "callback", "must not be null", wire=True, callback=None
    ),
    bad(
        "no-null-on-the-wire",
        "inpaint",
        "mask.url",
        "must not be null",
        wire=True,
        mask={"areas": [SQUARE], "url": None},
    ),
    bad(
        "no-null-on-the-wire",
        "pan",
        "remix_prompt",
        "must not be null",
        wire=True,
        remixPrompt=None,
    ),
    ok("strict-json-types", "upscale", wire=True, imageNo=2),
    bad("strict-json-types", "upscale", "image_no", "valid integer", wire=True, imageNo="2"),
    bad("strict-json-types", "upscale", "image_no", "valid integer", wire=True, imageNo=2.0),
]

ACCEPTS = [pytest.param(r, id=r.id) for r in ROWS if r.field is None]
REFUSES = [pytest.param(r, id=r.id) for r in ROWS if r.field is not None]


def request_of(row: Row) -> dict[str, Any]:
    body = endpoint(row.name).build(**BASE[row.name]).to_wire() if row.wire else BASE[row.name]
    merged = {**body, **row.changes}
    return {k: v for k, v in merged.items() if v is not DROP}


def submit(row: Row) -> Any:
    e = endpoint(row.name)
    if row.wire:
        return e.parse_json(json.dumps(request_of(row)))
    return e.build(**request_of(row))


@pytest.mark.filterwarnings("ignore:inpaint area= is deprecated:DeprecationWarning")
@pytest.mark.parametrize("row", ACCEPTS)
def test_rule_accepts(row: Row) -> None:
    request = submit(row)
    assert type(request) is endpoint(row.name).request
    wire = request.to_wire()
    assert endpoint(row.name).parse_json(json.dumps(wire)) == request  # and reads back


@pytest.mark.parametrize("row", REFUSES)
def test_rule_refuses(row: Row) -> None:
    with pytest.raises(InvalidRequestError) as info:
        submit(row)
    error = info.value
    assert error.endpoint == row.name
    assert [where for where, _ in error.problems] == [row.field], error.problems
    [(_, message)] = error.problems
    assert row.text in message
    assert f"{row.field}: " in str(error)


def register_rule_ids() -> list[str]:
    """The ids in the first column of the register's table (`` `id` ``)."""
    return re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", REGISTER.read_text(), flags=re.MULTILINE)


def test_the_register_and_this_table_list_the_same_rules() -> None:
    listed = register_rule_ids()
    assert len(listed) == len(set(listed)), "a rule is listed twice in the register"
    assert set(listed) == {row.rule for row in ROWS}


@pytest.mark.parametrize("rule", sorted({row.rule for row in ROWS}))
def test_every_rule_is_tested_on_both_sides(rule: str) -> None:
    sides = {row.field is None for row in ROWS if row.rule == rule}
    if rule == "polygon-orientation":  # written down, not enforced: only accepting cases
        assert sides == {True}
    else:
        assert sides == {True, False}, f"{rule} needs an accepting and a refusing case"


def test_the_register_names_this_test_for_every_rule() -> None:
    text = REGISTER.read_text()
    for rule in register_rule_ids():
        [line] = [ln for ln in text.splitlines() if ln.startswith(f"| `{rule}`")]
        assert "test_request_rules" in line, rule
