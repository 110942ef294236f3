"""Inpaint masks from simple descriptions: a rectangle in fractions of the image, a
mask image URL, or a JSON document; pure functions, shared by the CLI and any UI.

Legnext takes polygons on a reference frame of `width` x `height` pixels (scaled to
the image), as flat ``x1, y1, x2, y2, ...`` lists clockwise from the top-left.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from prefect_legnext.core.endpoints import problems_of
from prefect_legnext.core.models import Mask, Polygon

FRAME = 1024  # pixels of the reference frame a rectangle is drawn on


def rect_mask(x: float, y: float, width: float, height: float, frame: int = FRAME) -> Mask:
    """The rectangle at (`x`, `y`) of `width` x `height`, all fractions of the image
    (0..1, from the top-left corner), as a one-polygon mask on a `frame`-pixel square.

    Raises:
        ValueError: a value outside 0..1, an empty rectangle, or one that leaves the image.
    """
    values = {"x": x, "y": y, "width": width, "height": height}
    for name, value in values.items():
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a fraction between 0 and 1 (got {value:g})")
    if x + width > 1 + 1e-9 or y + height > 1 + 1e-9:
        raise ValueError("the rectangle leaves the image: x + width and y + height must be <= 1")
    left, top = round(x * frame), round(y * frame)
    right, bottom = min(frame, round((x + width) * frame)), min(frame, round((y + height) * frame))
    if right <= left or bottom <= top:
        raise ValueError(f"the rectangle is empty on a {frame}x{frame} frame")
    points = [left, top, right, top, right, bottom, left, bottom]  # clockwise from top-left
    return Mask(areas=[Polygon(width=frame, height=frame, points=points)])


def parse_rect(text: str) -> Mask:
    """``"X,Y,W,H"`` (fractions of the image) as a mask, e.g. ``"0.25,0.25,0.5,0.5"``
    for the centre quarter.

    Raises:
        ValueError: not four numbers, or not a rectangle inside the image.
    """
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"expected X,Y,W,H (four fractions of the image), got {text!r}")
    try:
        x, y, width, height = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected X,Y,W,H as numbers, got {text!r}") from None
    return rect_mask(x, y, width, height)


def url_mask(url: str) -> Mask:
    """A black-and-white mask image (white is repainted) by URL.

    Raises:
        ValueError: not an http(s) URL.
    """
    return _validated({"url": url})


def mask_from_json(text: str) -> Mask:
    """A mask from JSON: ``{"areas": [{"width": ..., "height": ..., "points": [...]}]}``
    or ``{"url": "https://..."}``.

    Raises:
        ValueError: not JSON, or not a valid mask.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object with "areas" or "url"')
    return _validated(data)


def _validated(data: dict[str, Any]) -> Mask:
    try:
        return Mask.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{field}: {rule}" if field else rule for field, rule in problems_of(exc)
        )
        raise ValueError(problems) from None
