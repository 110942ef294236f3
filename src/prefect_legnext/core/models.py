"""Request models: every create body Legnext accepts, with every rule it enforces.

Python names are snake_case; `to_wire()` gives the camelCase JSON Legnext expects.
Each rule lives here once so that bad input fails before a paid call is made, and
the simulator validates incoming bodies with the very same models. Where each rule
comes from (vendor page, OpenAPI document, API.md, or our own decision) and which
test covers it: ``docs/request-rules.md``.

Python callers get pydantic's lax reading (``"1"`` for 1, ``None`` for "not set");
JSON bodies (the simulator's ``parse_json``) are read strictly, as Legnext does, and an
explicit ``null`` is refused wherever the vendor's schema does not mark a field nullable.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
import warnings
from enum import IntEnum
from types import FrameType
from typing import Annotated, Any, ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import InitErrorDetails, PydanticCustomError

PROMPT_MAX = 8192
URL_MAX = 1024
POLYGON_SIZE_MIN, POLYGON_SIZE_MAX = 500, 4096
UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DRAFT_FLAGS = re.compile(r"--draft\b")
VERSION_7 = re.compile(r"--v(?:ersion)?\s+7(?:\.\d+)?\b")


# What `_http_url` accepts, as a JSON Schema pattern (a necessary condition): flow
# parameter schemas carry it so that Prefect refuses a bad URL when a run is created.
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\s][^\s]*$"


def _http_url(value: str) -> str:
    # A URI holds no whitespace or control character (the spec's `format: uri`); urlsplit
    # would silently drop some of them, so the URL sent would not be the one given.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must be an http(s) URL without spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


def _image_url(value: str) -> str:
    if len(value) > URL_MAX:
        raise ValueError(f"must be at most {URL_MAX} characters (got {len(value)})")
    return _http_url(value)


def parse_job_id(value: Any) -> str:
    """A job id in canonical UUID form.

    Raises:
        ValueError: `value` is not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not UUID_FORM.match(value):
        raise ValueError("must be a job id: a UUID like 3c90c3cc-0d44-4b50-8888-8dd25736052a")
    return value.lower()


def _not_bool(value: Any) -> Any:
    # bool is an int in Python, and pydantic would read True as 1: JSON Schema (and so
    # Legnext's schemas) does not count true as an integer.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


NoBool = BeforeValidator(_not_bool)

Prompt = Annotated[str, Field(min_length=1, max_length=PROMPT_MAX)]
HttpUrl = Annotated[
    str, AfterValidator(_http_url), Field(json_schema_extra={"pattern": HTTP_URL_PATTERN})
]
# `imgUrl` only: the vendor limits it to 1024 characters (openapi-complete.yaml, the
# retexture page; API.md extends it to describe). Other URLs have no vendor length limit.
ImageUrl = Annotated[str, AfterValidator(_image_url)]
JobId = Annotated[str, BeforeValidator(parse_job_id)]
Integer = Annotated[int, NoBool]
ImageNo = Annotated[int, NoBool, Field(ge=0, le=3, description="image number 0..3")]
VideoNo = Annotated[int, NoBool, Field(ge=0, le=3, description="video number 0..3")]


class VariationType(IntEnum):
    SUBTLE = 0
    STRONG = 1


class UpscaleType(IntEnum):
    SUBTLE = 0
    CREATIVE = 1


class PanDirection(IntEnum):
    DOWN = 0
    RIGHT = 1
    UP = 2
    LEFT = 3


class RemixMode(IntEnum):
    STRONG = 0
    SUBTLE = 1


class VideoType(IntEnum):
    SD_480P = 0
    HD_720P = 1


AspectRatio = Literal["2:3", "1:1", "3:2"]


def _refuse(model: type[BaseModel], field: str, message: str) -> NoReturn:
    """Fail validation of `model` with `message` located at `field`, so that a rule
    spanning several fields still names the one to fix (a plain ValueError raised in a
    model validator would name no field)."""
    error = PydanticCustomError("request_rule", message)
    raise ValidationError.from_exception_data(
        model.__name__, [InitErrorDetails(type=error, loc=(field,), input=None)]
    )


_INTERNAL_DIRS = tuple(
    os.path.dirname(module.__file__) + os.sep
    for module in (pydantic, sys.modules[__name__.rpartition(".")[0]])
    if module.__file__
)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by our caller point at the first
    frame outside pydantic and prefect_legnext: the user's line, not a validator's."""
    frame: FrameType | None = sys._getframe(1)  # the function that will call warnings.warn
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame = frame.f_back
        level += 1
    return level


class WireModel(BaseModel):
    """snake_case in Python, camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Errors name fields as callers write them (job_id), not as the wire does (jobId).
        loc_by_alias=False,
    )

    # Fields the vendor's schema marks `nullable: true` (openapi-complete.yaml): only these
    # may be an explicit null in a JSON body.
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_explicit_null(cls, value: Any, info: ValidationInfo) -> Any:
        # Python callers pass None for "not set" (it never reaches the wire); a JSON body
        # that sends null breaks the vendor's schema, so the simulator answers 400.
        if value is None and info.mode == "json" and info.field_name not in cls.NULLABLE:
            raise ValueError("must not be null: leave the key out instead")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The JSON body Legnext expects: camelCase keys, unset fields left out (never null)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Polygon(WireModel):
    """A region on an image of `width` x `height` pixels, as a flat x1,y1,x2,y2,... list
    of at least three points, each inside the image. The vendor says "clockwise from
    top-left"; that is not checked (see docs/request-rules.md)."""

    width: Integer = Field(ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX)
    height: Integer = Field(ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX)
    # For JSON Schemas only (the validator below gives the clearer message): what can be
    # said without the sibling width and height. An even count cannot be said at all.
    points: list[Integer] = Field(
        json_schema_extra={
            "minItems": 6,
            "items": {"type": "integer", "minimum": 0, "maximum": POLYGON_SIZE_MAX},
        }
    )

    @model_validator(mode="after")
    def _points_inside(self) -> Polygon:
        # Orientation ("clockwise from top-left", the inpaint page) is not checked.
        count = len(self.points)
        if count % 2 or count < 6:
            _refuse(
                type(self), "points", f"points must be an even count of at least 6 (got {count})"
            )
        for i in range(0, count, 2):
            x, y = self.points[i], self.points[i + 1]
            if not (0 <= x <= self.width and 0 <= y <= self.height):
                _refuse(
                    type(self),
                    "points",
                    f"point {i // 2} ({x}, {y}) lies outside the {self.width}x{self.height} image",
                )
        return self

    def vertices(self) -> list[tuple[int, int]]:
        return list(zip(self.points[::2], self.points[1::2], strict=True))


# `Mask._exactly_one` as JSON Schema, for flow parameter schemas (Prefect checks them
# when a run is created): areas without url, or url without areas (null counts as absent).
_ONE_MASK_SOURCE: JsonDict = {
    "oneOf": [
        {
            "required": ["areas"],
            "properties": {"areas": {"type": "array"}, "url": {"type": "null"}},
        },
        {"required": ["url"], "properties": {"url": {"type": "string"}, "areas": {"type": "null"}}},
    ]
}


class Mask(WireModel):
    """What to repaint: exactly one of `areas` (polygons) or `url` (white = repaint)."""

    model_config = ConfigDict(json_schema_extra=_ONE_MASK_SOURCE)

    areas: list[Polygon] | None = Field(default=None, min_length=1)
    # An http(s) URL; unlike imgUrl, the vendor sets no length limit on it.
    url: HttpUrl | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Mask:
        if (self.areas is None) == (self.url is None):
            raise ValueError("mask needs exactly one of areas or url")
        return self


class Canvas(WireModel):
    # ge=1 is our decision (the vendor gives no bound): a canvas of no size holds nothing.
    width: Integer = Field(ge=1)
    height: Integer = Field(ge=1)


class ImagePosition(WireModel):
    """Where the image sits on the canvas: its size and top-left offset (the offset may
    be negative: the image then hangs over the canvas edge)."""

    width: Integer = Field(ge=1)
    height: Integer = Field(ge=1)
    x: Integer
    y: Integer


class LegnextRequest(WireModel):
    """Base of every create body; all take an optional callback URL."""

    callback: HttpUrl | None = None


class DiffusionRequest(LegnextRequest):
    text: Prompt

    @property
    def is_draft(self) -> bool:
        """Draft mode (``--draft``): half price, and the only parent enhance accepts."""
        return bool(DRAFT_FLAGS.search(self.text))

    @property
    def is_enhanceable(self) -> bool:
        """Legnext enhances only jobs whose prompt has both ``--v 7`` and ``--draft``."""
        return self.is_draft and bool(VERSION_7.search(self.text))


class VariationRequest(LegnextRequest):
    NULLABLE = frozenset({"remix_prompt"})  # the one `nullable: true` request field

    job_id: JobId
    image_no: ImageNo
    type: Annotated[VariationType, NoBool]
    remix_prompt: Prompt | None = None


class UpscaleRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    type: Annotated[UpscaleType, NoBool]


class RerollRequest(LegnextRequest):
    job_id: JobId


class BlendRequest(LegnextRequest):
    # http(s), like every URL Legnext fetches; no length limit: the vendor sets none here.
    img_urls: list[HttpUrl] = Field(min_length=2, max_length=5)
    # The one snake_case key on Legnext's wire.
    aspect_ratio: AspectRatio = Field(alias="aspect_ratio")


class DescribeRequest(LegnextRequest):
    img_url: ImageUrl


class ShortenRequest(LegnextRequest):
    prompt: Prompt


class PanRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    direction: Annotated[PanDirection, NoBool]
    scale: Annotated[float, NoBool] = Field(ge=1.1, le=3.0)
    remix_prompt: Prompt | None = None


class OutpaintRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    scale: Annotated[float, NoBool] = Field(ge=1.1, le=2.0)
    remix_prompt: Prompt | None = None


class InpaintRequest(LegnextRequest):
    """Repaint the `mask`ed region of image `image_no` of job `job_id`.

    `area` (one polygon) is deprecated by Legnext but still documented: it is accepted,
    with a DeprecationWarning for Python callers, and turned into
    ``mask=Mask(areas=[area])``, so the wire always carries the required `mask` and
    never `area`. Giving both `mask` and `area` is refused: which one was meant is
    ambiguous (our decision).
    """

    job_id: JobId
    image_no: ImageNo
    mask: Mask | None = None
    remix_prompt: Prompt | None = None
    area: Polygon | None = Field(default=None, description="deprecated: use mask")

    @model_validator(mode="after")
    def _one_region(self, info: ValidationInfo) -> InpaintRequest:
        if self.area is None:
            if self.mask is None:
                _refuse(type(self), "mask", "mask is required")
            return self
        if self.mask is not None:
            _refuse(type(self), "area", "give mask or the deprecated area, not both")
        if info.mode == "python":  # a JSON body (the simulator) is read leniently, silently
            warnings.warn(
                "inpaint area= is deprecated by Legnext: use mask=Mask(areas=[...])",
                DeprecationWarning,
                stacklevel=_caller_stacklevel(),
            )
        # Frozen model: set the converted fields directly, as validation would have.
        object.__setattr__(self, "mask", Mask(areas=[self.area]))
        object.__setattr__(self, "area", None)
        self.__pydantic_fields_set__.discard("area")
        self.__pydantic_fields_set__.add("mask")
        return self


class RemixRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    remix_prompt: Prompt
    mode: Annotated[RemixMode, NoBool] | None = None


class EditRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    canvas: Canvas
    img_pos: ImagePosition
    remix_prompt: Prompt


class UploadPaintRequest(LegnextRequest):
    img_url: ImageUrl
    canvas: Canvas
    img_pos: ImagePosition
    remix_prompt: Prompt
    mask: Mask


class RetextureRequest(LegnextRequest):
    img_url: ImageUrl
    remix_prompt: Prompt


class RemoveBackgroundRequest(LegnextRequest):
    img_url: ImageUrl


class EnhanceRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo


class VideoDiffusionRequest(LegnextRequest):
    """Animate image `image_no` of job `job_id`, or a prompt "<image url> <text>"."""

    job_id: JobId | None = None
    image_no: ImageNo | None = None
    prompt: Prompt | None = None
    video_type: Annotated[VideoType, NoBool] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VideoDiffusionRequest:
        cls = type(self)
        if self.job_id is not None and self.image_no is None:
            _refuse(cls, "image_no", "image_no is required with job_id (they go together)")
        if self.image_no is not None and self.job_id is None:
            _refuse(cls, "job_id", "job_id is required with image_no (they go together)")
        if self.job_id is None:
            if self.prompt is None:
                _refuse(cls, "prompt", "needs job_id and image_no, or a prompt")
            first = self.prompt.split(maxsplit=1)[0]
            try:
                _http_url(first)
            except ValueError:
                _refuse(
                    cls,
                    "prompt",
                    'without job_id, prompt must start with an image URL: "<image url> <text>"',
                )
        return self


class ExtendVideoRequest(LegnextRequest):
    job_id: JobId
    video_no: VideoNo
    prompt: Prompt | None = None


class VideoUpscaleRequest(LegnextRequest):
    job_id: JobId
    video_no: VideoNo
