"""Inpaint masks from the command line's descriptions and the flows' UI forms
(`prefect_legnext.core.masks`): the exact polygons each gives, their refusals, and the
simulator accepting them."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from prefect_legnext.core.masks import (
    FRAME,
    MaskForm,
    as_mask,
    mask_from_json,
    parse_rect,
    pixel_rect_mask,
    rect_mask,
    region_mask,
    url_mask,
)
from prefect_legnext.core.models import Mask, Polygon
from prefect_legnext.orchestration.plans import ChainStep, default_mask
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.testing import legnext_client_for


def test_the_centre_quarter_is_the_flows_default() -> None:
    assert rect_mask(0.25, 0.25, 0.5, 0.5) == default_mask()
    assert parse_rect(" 0.25, 0.25 ,0.5,0.5") == default_mask()


def test_a_rectangle_is_a_clockwise_polygon_from_the_top_left() -> None:
    mask = rect_mask(0.1, 0.2, 0.3, 0.4)
    assert mask.areas is not None
    (polygon,) = mask.areas
    assert (polygon.width, polygon.height) == (FRAME, FRAME)
    assert polygon.vertices() == [(102, 205), (410, 205), (410, 614), (102, 614)]
    whole = rect_mask(0, 0, 1, 1).areas
    assert whole is not None
    assert whole[0].points == [0, 0, 1024, 0, 1024, 1024, 0, 1024]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.1,0.2,0.3", "expected X,Y,W,H"),
        ("0.1,0.2,0.3,0.4,0.5", "expected X,Y,W,H"),
        ("a,0,0.5,0.5", "as numbers"),
        ("-0.1,0,0.5,0.5", "x must be a fraction between 0 and 1 (got -0.1)"),
        ("0,1.5,0.5,0.5", "y must be a fraction between 0 and 1"),
        ("0,0,nan,0.5", "width must be a fraction"),
        ("0,0,0.5,inf", "height must be a fraction"),
        ("0.6,0,0.5,0.5", "leaves the image"),
        ("0,0.75,0.5,0.3", "leaves the image"),
        ("0.5,0.5,0,0.2", "empty"),
        ("0.5,0.5,0.0001,0.2", "empty"),
    ],
)
def test_bad_rectangles_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rect(text)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_mask_by_url() -> None:
    assert url_mask("https://cdn.example.test/mask.png") == Mask(
        url="https://cdn.example.test/mask.png"
    )
    with pytest.raises(ValueError, match="http"):
        url_mask("file:///etc/passwd")
    with pytest.raises(ValueError, match="url: "):
        url_mask("cdn.example.test/mask.png")


def test_a_mask_from_json() -> None:
    square = {"width": 1000, "height": 800, "points": [0, 0, 500, 0, 500, 400, 0, 400]}
    assert mask_from_json(json.dumps({"areas": [square]})) == Mask(areas=[Polygon(**square)])
    assert mask_from_json('{"url": "https://x.test/m.png"}').url == "https://x.test/m.png"
    for text, problem in [
        ("[1, 2]", "a JSON object"),
        ("{", "not JSON"),
        ("{}", "exactly one of areas or url"),
        ('{"areas": [], "url": "https://x.test/m.png"}', "areas"),
        ('{"shape": "circle"}', "shape"),
    ]:
        with pytest.raises(ValueError) as caught:
            mask_from_json(text)
        assert problem in str(caught.value), (text, str(caught.value))
        assert "\n" not in str(caught.value)


# The polygons docs/flows.md and core/masks.py document, exactly.
REGION_POLYGONS = {
    "center": [256, 256, 768, 256, 768, 768, 256, 768],
    "left_half": [0, 0, 512, 0, 512, 1024, 0, 1024],
    "right_half": [512, 0, 1024, 0, 1024, 1024, 512, 1024],
    "top_half": [0, 0, 1024, 0, 1024, 512, 0, 512],
    "bottom_half": [0, 512, 1024, 512, 1024, 1024, 0, 1024],
}
FORMS = TypeAdapter(MaskForm)


def only_polygon(mask: Mask) -> Polygon:
    assert mask.areas is not None and mask.url is None
    (polygon,) = mask.areas
    return polygon


@pytest.mark.parametrize(("region", "points"), REGION_POLYGONS.items())
def test_named_regions_are_the_documented_polygons(region: str, points: list[int]) -> None:
    for mask in (
        region_mask(region),
        as_mask(FORMS.validate_python({"kind": "region", "region": region})),
    ):
        polygon = only_polygon(mask)
        assert (polygon.width, polygon.height, polygon.points) == (1024, 1024, points)


def test_a_pixel_rectangle_is_drawn_on_the_image_itself() -> None:
    polygon = only_polygon(pixel_rect_mask(100, 50, 300, 200, 2048, 1536))
    assert (polygon.width, polygon.height) == (2048, 1536)
    assert polygon.points == [100, 50, 400, 50, 400, 250, 100, 250]
    form = {"kind": "pixel_rectangle", "x": 0, "y": 0, "width": 1024, "height": 1024}
    assert only_polygon(as_mask(FORMS.validate_python(form))).points == [
        0, 0, 1024, 0, 1024, 1024, 0, 1024,
    ]  # fmt: skip


def test_the_rectangle_form_is_rect_mask() -> None:
    form = {"kind": "rectangle", "x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4}
    assert as_mask(FORMS.validate_python(form)) == rect_mask(0.1, 0.2, 0.3, 0.4)
    assert only_polygon(rect_mask(0.1, 0.2, 0.3, 0.4)).points == [
        102, 205, 410, 205, 410, 614, 102, 614,
    ]  # fmt: skip


def test_the_raw_polygon_and_url_forms_stay() -> None:
    square = {"width": 1000, "height": 800, "points": [0, 0, 500, 0, 500, 400, 0, 400]}
    assert as_mask(FORMS.validate_python({"areas": [square]})) == Mask(areas=[Polygon(**square)])
    url = "https://x.test/m.png"
    assert as_mask(FORMS.validate_python({"url": url})) == Mask(url=url)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"kind": "rectangle", "x": 0.6, "y": 0, "width": 0.5, "height": 0.5},
         "leaves the image"),
        ({"kind": "rectangle", "x": 0.5, "y": 0.5, "width": 0.0001, "height": 0.2}, "empty"),
        ({"kind": "pixel_rectangle", "x": 900, "y": 0, "width": 200, "height": 10},
         "(900, 0) to (1100, 10) leaves the 1024x1024 image"),
        ({"kind": "pixel_rectangle", "x": 0, "y": 0, "width": 10, "height": 10,
          "image_width": 499}, "image_width"),
        ({"kind": "region", "region": "middle"}, "region"),
        ({"kind": "circle"}, "circle"),
        ({"kind": "region", "region": "center", "x": 1}, "x"),
    ],
)  # fmt: skip
def test_bad_forms_say_why(form: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FORMS.validate_python(form)
    assert problem in str(caught.value)


def test_an_unknown_region_says_which_exist() -> None:
    with pytest.raises(ValueError) as caught:
        region_mask("middle")
    assert str(caught.value) == (
        "unknown region 'middle'; one of center, left_half, right_half, top_half, bottom_half"
    )


def test_a_pipeline_step_takes_every_form_and_sends_the_polygon() -> None:
    step = ChainStep(action="inpaint", mask={"kind": "region", "region": "top_half"})
    assert step.mask is not None
    assert only_polygon(as_mask(step.mask)).points == REGION_POLYGONS["top_half"]


@pytest.mark.parametrize(
    "form",
    [
        {"kind": "region", "region": "left_half"},
        {"kind": "rectangle", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5},
        {"kind": "pixel_rectangle", "x": 10, "y": 20, "width": 300, "height": 200},
    ],
    ids=["region", "rectangle", "pixels"],
)
def test_the_simulator_accepts_the_forms_polygons(
    legnext_simulator: LegnextSimulator, form: dict[str, object]
) -> None:
    mask = as_mask(FORMS.validate_python(form))
    with legnext_client_for(legnext_simulator) as client:
        parent = client.wait_for_job(client.diffusion(text="a quiet harbour"))
        job = client.wait_for_job(
            client.inpaint(job_id=parent.job_id, image_no=1, mask=mask, remix_prompt="a boat")
        )
    assert job.is_completed and job.output is not None
    assert len(job.output.image_urls or []) == 4
