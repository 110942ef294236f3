"""Request models: every create body Legnext accepts, with every rule it enforces.

Python names are snake_case; `to_wire()` gives the camelCase JSON Legnext expects.
Each rule lives here once so that bad input fails before a paid call is made, and
the simulator validates incoming bodies with the very same models.
"""

from __future__ import annotations

import re
import uuid
import warnings
from enum import IntEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

PROMPT_MAX = 8192
URL_MAX = 1024
POLYGON_SIZE_MIN, POLYGON_SIZE_MAX = 500, 4096
UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DRAFT_FLAGS = re.compile(r"--draft\b")
VERSION_7 = re.compile(r"--v(?:ersion)?\s+7(?:\.\d+)?\b")


def _http_url(value: str) -> str:
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


Prompt = Annotated[str, Field(min_length=1, max_length=PROMPT_MAX)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
# Legnext limits the URLs of images it fetches (imgUrl) to 1024 characters.
ImageUrl = Annotated[str, AfterValidator(_image_url)]
JobId = Annotated[str, BeforeValidator(parse_job_id)]
ImageNo = Annotated[int, Field(ge=0, le=3, description="image number 0..3")]
VideoNo = Annotated[int, Field(ge=0, le=3, description="video number 0..3")]


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


def _not_bool(value: Any) -> Any:
    # bool is an int in Python, and pydantic would read true as 1: Legnext would not.
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


NoBool = BeforeValidator(_not_bool)


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

    def to_wire(self) -> dict[str, Any]:
        """The JSON body Legnext expects: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Polygon(WireModel):
    """A region on an image of `width` x `height` pixels, as a flat x1,y1,x2,y2,... list
    of at least three points, clockwise from top-left."""

    width: int = Field(ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX)
    height: int = Field(ge=POLYGON_SIZE_MIN, le=POLYGON_SIZE_MAX)
    points: list[int]

    @model_validator(mode="after")
    def _points_inside(self) -> Polygon:
        count = len(self.points)
        if count % 2 or count < 6:
            raise ValueError(f"points must be an even count of at least 6 (got {count})")
        for i in range(0, count, 2):
            x, y = self.points[i], self.points[i + 1]
            if not (0 <= x <= self.width and 0 <= y <= self.height):
                raise ValueError(
                    f"point {i // 2} ({x}, {y}) lies outside the {self.width}x{self.height} image"
                )
        return self

    def vertices(self) -> list[tuple[int, int]]:
        return list(zip(self.points[::2], self.points[1::2], strict=True))


class Mask(WireModel):
    """What to repaint: exactly one of `areas` (polygons) or `url` (white = repaint)."""

    areas: list[Polygon] | None = Field(default=None, min_length=1)
    url: ImageUrl | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Mask:
        if (self.areas is None) == (self.url is None):
            raise ValueError("mask needs exactly one of areas or url")
        return self


class Canvas(WireModel):
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ImagePosition(WireModel):
    """Where the image sits on the canvas: its size and top-left offset."""

    width: int = Field(ge=1)
    height: int = Field(ge=1)
    x: int
    y: int


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
    img_urls: list[ImageUrl] = Field(min_length=2, max_length=5)
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
    scale: float = Field(ge=1.1, le=3.0)
    remix_prompt: Prompt | None = None


class OutpaintRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    scale: float = Field(ge=1.1, le=2.0)
    remix_prompt: Prompt | None = None


class InpaintRequest(LegnextRequest):
    job_id: JobId
    image_no: ImageNo
    mask: Mask | None = None
    remix_prompt: Prompt | None = None
    area: Polygon | None = Field(default=None, description="deprecated: use mask")

    @model_validator(mode="after")
    def _has_region(self) -> InpaintRequest:
        if self.mask is None and self.area is None:
            raise ValueError("mask is required")
        if self.area is not None:
            warnings.warn(
                "inpaint area= is deprecated by Legnext: use mask=Mask(areas=[...])",
                DeprecationWarning,
                stacklevel=2,
            )
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
        if (self.job_id is None) != (self.image_no is None):
            raise ValueError("job_id and image_no go together")
        if self.job_id is None:
            if self.prompt is None:
                raise ValueError("needs job_id and image_no, or a prompt")
            first = self.prompt.split(maxsplit=1)[0]
            try:
                _image_url(first)
            except ValueError:
                raise ValueError(
                    'without job_id, prompt must start with an image URL: "<image url> <text>"'
                ) from None
        return self


class ExtendVideoRequest(LegnextRequest):
    job_id: JobId
    video_no: VideoNo
    prompt: Prompt | None = None


class VideoUpscaleRequest(LegnextRequest):
    job_id: JobId
    video_no: VideoNo
