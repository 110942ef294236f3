"""Inpaint masks from the command line's descriptions (`prefect_legnext.core.masks`)."""

from __future__ import annotations

import json

import pytest

from prefect_legnext.core.masks import FRAME, mask_from_json, parse_rect, rect_mask, url_mask
from prefect_legnext.core.models import Mask, Polygon
from prefect_legnext.orchestration.plans import default_mask


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
