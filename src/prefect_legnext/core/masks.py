"""Inpaint masks from simple descriptions: a rectangle in fractions of the image or in
pixels, a named region, a mask image URL, or a JSON document; shared by the CLI and the
flows' UI forms (`MaskForm`).

Legnext takes polygons on a reference frame of `width` x `height` pixels (scaled to
the image), as flat ``x1, y1, x2, y2, ...`` lists clockwise from the top-left. The
polygons these forms give (on the 1024-pixel `FRAME` unless in pixels):

========================  =============================================
form                      polygon ``points``
========================  =============================================
region ``center``         ``[256, 256, 768, 256, 768, 768, 256, 768]``
region ``left_half``      ``[0, 0, 512, 0, 512, 1024, 0, 1024]``
region ``right_half``     ``[512, 0, 1024, 0, 1024, 1024, 512, 1024]``
region ``top_half``       ``[0, 0, 1024, 0, 1024, 512, 0, 512]``
region ``bottom_half``    ``[0, 512, 1024, 512, 1024, 1024, 0, 1024]``
rectangle x, y, w, h      ``[X, Y, X2, Y, X2, Y2, X, Y2]`` with ``X = round(x * 1024)``,
                          ``X2 = min(1024, round((x + w) * 1024))`` (same for Y)
pixel rectangle           ``[x, y, x + w, y, x + w, y + h, x, y + h]`` on a frame of
                          ``image_width`` x ``image_height``
========================  =============================================
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from prefect_legnext.core.endpoints import problems_of
from prefect_legnext.core.models import POLYGON_SIZE_MAX, POLYGON_SIZE_MIN, Mask, Polygon

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


def pixel_rect_mask(
    x: int, y: int, width: int, height: int, image_width: int, image_height: int
) -> Mask:
    """The rectangle at (`x`, `y`) of `width` x `height` pixels on an image of
    `image_width` x `image_height` pixels (the polygon's frame), clockwise from its
    top-left corner.

    Raises:
        ValueError: an empty rectangle, one that leaves the image, or an image size
            outside the vendor's 500..4096 pixels.
    """
    if width < 1 or height < 1:
        raise ValueError(f"the rectangle is empty ({width}x{height} pixels)")
    right, bottom = x + width, y + height
    if x < 0 or y < 0 or right > image_width or bottom > image_height:
        raise ValueError(
            f"the rectangle ({x}, {y}) to ({right}, {bottom}) leaves the "
            f"{image_width}x{image_height} image"
        )
    points = [x, y, right, y, right, bottom, x, bottom]  # clockwise from top-left
    return _validated({"areas": [{"width": image_width, "height": image_height, "points": points}]})


# Named regions as (x, y, width, height) fractions of the image.
Region = Literal["center", "left_half", "right_half", "top_half", "bottom_half"]
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "center": (0.25, 0.25, 0.5, 0.5),
    "left_half": (0.0, 0.0, 0.5, 1.0),
    "right_half": (0.5, 0.0, 0.5, 1.0),
    "top_half": (0.0, 0.0, 1.0, 0.5),
    "bottom_half": (0.0, 0.5, 1.0, 0.5),
}


def region_mask(region: str) -> Mask:
    """A named region (`REGIONS`: the centre quarter or a half) as a one-polygon mask on
    the `FRAME`; the module's docstring lists the exact polygons.

    Raises:
        ValueError: an unknown region name.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; one of {', '.join(REGIONS)}")
    return rect_mask(*REGIONS[region])


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


# -- the forms a person fills in (the flows' `inpaint_mask` parameter) ---------------


class _Form(BaseModel):
    """A mask form a person fills in; `to_mask` gives the vendor's polygon."""

    model_config = ConfigDict(extra="forbid")

    def to_mask(self) -> Mask:
        raise NotImplementedError

    @model_validator(mode="after")
    def _converts(self) -> _Form:
        # What a JSON Schema cannot say (x + width <= 1...) is refused here, when the
        # flow validates its parameters: before any paid call.
        self.to_mask()
        return self


class RectangleForm(_Form):
    """A rectangle in fractions of the image, from its top-left corner."""

    model_config = ConfigDict(title="Rectangle (fractions of the image)")

    kind: Literal["rectangle"] = Field(title="Kind")
    x: float = Field(ge=0, le=1, title="Left (0-1)")
    y: float = Field(ge=0, le=1, title="Top (0-1)")
    width: float = Field(gt=0, le=1, title="Width (0-1)")
    height: float = Field(gt=0, le=1, title="Height (0-1)")

    def to_mask(self) -> Mask:
        return rect_mask(self.x, self.y, self.width, self.height)


class PixelRectangleForm(_Form):
    """A rectangle in pixels of an image of `image_width` x `image_height`."""

    model_config = ConfigDict(title="Rectangle (pixels)")

    kind: Literal["pixel_rectangle"] = Field(title="Kind")
    x: int = Field(ge=0, le=POLYGON_SIZE_MAX, title="Left (px)")
    y: int = Field(ge=0, le=POLYGON_SIZE_MAX, title="Top (px)")
    width: int = Field(ge=1, le=POLYGON_SIZE_MAX, title="Width (px)")
    height: int = Field(ge=1, le=POLYGON_SIZE_MAX, title="Height (px)")
    image_width: int = Field(
        default=FRAME, ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX, title="Image width (px)"
    )
    image_height: int = Field(
        default=FRAME, ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX, title="Image height (px)"
    )

    def to_mask(self) -> Mask:
        return pixel_rect_mask(
            self.x, self.y, self.width, self.height, self.image_width, self.image_height
        )


class RegionForm(_Form):
    """A named region: the centre quarter or a half of the image."""

    model_config = ConfigDict(title="Named region")

    kind: Literal["region"] = Field(title="Kind")
    region: Region = Field(title="Region")

    def to_mask(self) -> Mask:
        return region_mask(self.region)


def _form_kind(value: Any) -> str:
    """The union member of a mask value: its `kind`, or the raw polygon / URL form (the
    vendor's own shape, which has no `kind`)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return str(kind) if kind is not None else "mask"


class _AnyOf:
    """Say a tagged union as ``anyOf``: the Prefect UI offers a choice of forms for
    ``anyOf`` and knows no ``oneOf``. The members exclude each other anyway (each form's
    `kind` is a constant, and no member takes another's fields)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
        return schema


# Every form a mask parameter takes: the vendor's polygons or URL (`Mask`), a rectangle
# in fractions or pixels, or a named region. `as_mask` turns any into the vendor's.
MaskForm = Annotated[
    Annotated[Mask, Tag("mask")]
    | Annotated[RectangleForm, Tag("rectangle")]
    | Annotated[PixelRectangleForm, Tag("pixel_rectangle")]
    | Annotated[RegionForm, Tag("region")],
    Discriminator(_form_kind),
    _AnyOf,
]


MaskFormModel = RectangleForm | PixelRectangleForm | RegionForm


def as_mask(form: Mask | MaskFormModel) -> Mask:
    """The vendor's mask (polygons or URL) for any `MaskForm`."""
    return form if isinstance(form, Mask) else form.to_mask()
