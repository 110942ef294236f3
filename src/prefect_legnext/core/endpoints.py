"""The one table of Legnext endpoints.

Each endpoint is declared here once: path, request model, output kind, cost and
typical duration. Client methods, Prefect tasks, CLI commands and simulator
routes are all derived from `CREATE_ENDPOINTS` and `QUERY_ENDPOINTS`; the client
methods and tasks are written out as typed source by `prefect_legnext.codegen`
(``make generate``), so that type checkers and editors see their arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from prefect_legnext.core import models as m
from prefect_legnext.core import responses as r
from prefect_legnext.core.errors import InvalidRequestError


class OutputKind(StrEnum):
    GRID = "grid"  # 4 images plus a composite
    IMAGE = "image"  # 1 image
    VIDEO = "video"  # 4 videos
    SINGLE_VIDEO = "single_video"  # 1 video
    TEXT = "text"  # prompts, no file
    AS_PARENT = "as_parent"  # reroll: whatever the parent produced


class ParentKind(StrEnum):
    NONE = "none"  # no parent job
    IMAGE = "image"  # jobId + imageNo of an image job
    JOB = "job"  # jobId only (reroll)
    VIDEO = "video"  # jobId + videoNo of a video job


CostRule = Callable[[Any, "int | None"], int]


@dataclass(frozen=True)
class CreateEndpoint:
    """A paid ``POST /api/v1/{slug}``.

    Attributes:
        name: snake_case name of the client method, task and task type.
        slug: the path segment (hyphenated) after ``/api/v1/``.
        request: the pydantic model of the body.
        output: what a completed job produces.
        points: the base cost in points (1000 points = 1 USD).
        typical_seconds: Legnext's typical run time, (low, high).
        parent: what kind of parent job the request refers to.
        action: the key in the parent's ``available_actions`` that must allow it,
            or None when no action is listed for it (e.g. video-diffusion).
        cost_rule: the cost when it depends on the request or the parent's cost.
        summary: one line for docstrings, task descriptions and CLI help.
    """

    name: str
    slug: str
    request: type[m.LegnextRequest]
    output: OutputKind
    points: int
    typical_seconds: tuple[float, float]
    summary: str
    parent: ParentKind = ParentKind.NONE
    action: str | None = None
    cost_rule: CostRule | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return f"/api/v1/{self.slug}"

    @property
    def task_type(self) -> str:
        """The ``task_type`` Legnext reports for jobs of this endpoint (underscored)."""
        return self.name

    def build(self, **fields: Any) -> m.LegnextRequest:
        """Validate keyword arguments into this endpoint's request model.

        Raises:
            InvalidRequestError: naming each field and the rule it breaks.
        """
        return self.parse(fields)

    def parse(self, data: Mapping[str, Any]) -> m.LegnextRequest:
        """Validate a mapping (snake_case or camelCase keys) into the request model."""
        try:
            return self.request.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidRequestError(self.name, problems_of(exc)) from None

    def parse_json(self, raw: bytes | str) -> m.LegnextRequest:
        """Validate a JSON body as Legnext does: strict types, so ``"1"`` is not an integer."""
        try:
            return self.request.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise InvalidRequestError(self.name, problems_of(exc)) from None

    def cost(self, request: m.LegnextRequest, parent_points: int | None = None) -> int:
        """Points this request costs. Parent-dependent costs without the parent's
        cost give the endpoint's highest price, so a budget check stays safe."""
        if self.cost_rule is None:
            return self.points
        return self.cost_rule(request, parent_points)


ResponseT = TypeVar("ResponseT", bound=BaseModel)


@dataclass(frozen=True)
class QueryEndpoint(Generic[ResponseT]):
    """A free ``GET``: job status or account data."""

    name: str
    path: str
    response: type[ResponseT]
    summary: str


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, rule)`` pairs from a pydantic error, without echoing input values."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        rule = error["msg"].removeprefix("Value error, ")
        problems.append((where, rule))
    return problems


def _diffusion_cost(request: m.DiffusionRequest, _parent: int | None) -> int:
    return 40 if request.is_draft else 80


def _upscale_cost(request: m.UpscaleRequest, _parent: int | None) -> int:
    return 160 if request.type is m.UpscaleType.CREATIVE else 120


def _video_cost(request: m.VideoDiffusionRequest, _parent: int | None) -> int:
    return 1536 if request.video_type is m.VideoType.HD_720P else 480


def _as_parent(highest: int) -> CostRule:
    def cost(_request: Any, parent_points: int | None) -> int:
        return highest if parent_points is None else parent_points

    return cost


_IMAGE_EDIT = (90.0, 120.0)
_GRID = (60.0, 90.0)
_VIDEO = (180.0, 360.0)

CREATE_ENDPOINTS: tuple[CreateEndpoint, ...] = (
    CreateEndpoint("diffusion", "diffusion", m.DiffusionRequest, OutputKind.GRID, 80, (30, 90),
                   "Generate a 4-image grid from a text prompt (40 points with --draft).",
                   cost_rule=_diffusion_cost),
    CreateEndpoint("variation", "variation", m.VariationRequest, OutputKind.GRID, 120, _GRID,
                   "Vary one image of a grid, subtly or strongly.",
                   ParentKind.IMAGE, "variation"),
    CreateEndpoint("upscale", "upscale", m.UpscaleRequest, OutputKind.IMAGE, 120, _IMAGE_EDIT,
                   "Upscale one image of a grid (160 points for creative).",
                   ParentKind.IMAGE, "upscale", _upscale_cost),
    CreateEndpoint("reroll", "reroll", m.RerollRequest, OutputKind.AS_PARENT, 120, _GRID,
                   "Run a job again with the same parameters (costs as its parent).",
                   ParentKind.JOB, "reroll", _as_parent(160)),
    CreateEndpoint("blend", "blend", m.BlendRequest, OutputKind.GRID, 80, _GRID,
                   "Blend 2 to 5 images into a new grid."),
    CreateEndpoint("describe", "describe", m.DescribeRequest, OutputKind.TEXT, 20, (30, 60),
                   "Describe an image as text prompts."),
    CreateEndpoint("shorten", "shorten", m.ShortenRequest, OutputKind.TEXT, 20, (20, 40),
                   "Shorten a prompt to its essential terms."),
    CreateEndpoint("pan", "pan", m.PanRequest, OutputKind.GRID, 80, _IMAGE_EDIT,
                   "Extend one image of a grid in one direction.",
                   ParentKind.IMAGE, "pan"),
    CreateEndpoint("outpaint", "outpaint", m.OutpaintRequest, OutputKind.GRID, 80, _IMAGE_EDIT,
                   "Zoom out: extend one image of a grid on all sides.",
                   ParentKind.IMAGE, "outpaint"),
    CreateEndpoint("inpaint", "inpaint", m.InpaintRequest, OutputKind.GRID, 120, _IMAGE_EDIT,
                   "Repaint the masked region of one image of a grid.",
                   ParentKind.IMAGE, "inpaint"),
    CreateEndpoint("remix", "remix", m.RemixRequest, OutputKind.GRID, 120, _IMAGE_EDIT,
                   "Remix one image of a grid with a new prompt.",
                   ParentKind.IMAGE, "remix"),
    CreateEndpoint("edit", "edit", m.EditRequest, OutputKind.GRID, 120, _IMAGE_EDIT,
                   "Reposition one image of a grid on a new canvas and repaint.",
                   ParentKind.IMAGE, "edit"),
    CreateEndpoint("upload_paint", "upload-paint", m.UploadPaintRequest, OutputKind.GRID, 120,
                   _IMAGE_EDIT, "Place an uploaded image on a canvas and repaint the mask."),
    CreateEndpoint("retexture", "retexture", m.RetextureRequest, OutputKind.GRID, 120,
                   _IMAGE_EDIT, "Change the texture of an image, keeping its layout."),
    CreateEndpoint("remove_background", "remove-background", m.RemoveBackgroundRequest,
                   OutputKind.IMAGE, 80, (15, 25), "Remove the background of an image."),
    CreateEndpoint("enhance", "enhance", m.EnhanceRequest, OutputKind.GRID, 80, _IMAGE_EDIT,
                   "Enhance one image of a draft (--v 7 --draft) grid to full quality.",
                   ParentKind.IMAGE, "enhance"),
    CreateEndpoint("video_diffusion", "video-diffusion", m.VideoDiffusionRequest,
                   OutputKind.VIDEO, 480, _VIDEO,
                   "Animate an image into 4 videos (1536 points for 720p).",
                   cost_rule=_video_cost),
    CreateEndpoint("extend_video", "extend-video", m.ExtendVideoRequest, OutputKind.VIDEO, 480,
                   _VIDEO, "Extend one video of a video job (costs as its parent's quality).",
                   ParentKind.VIDEO, "extend_video", _as_parent(1536)),
    CreateEndpoint("video_upscale", "video-upscale", m.VideoUpscaleRequest,
                   OutputKind.SINGLE_VIDEO, 480, _VIDEO, "Upscale one video of a video job.",
                   ParentKind.VIDEO, "video_upscale"),
)  # fmt: skip

GET_JOB = QueryEndpoint(
    "get_job", "/api/v1/job/{job_id}", r.Job, "Read a job's status and outputs."
)
BALANCE = QueryEndpoint(
    "balance", "/api/account/balance", r.Balance, "Read the account's points and USD balance."
)
ACCOUNT_INFO = QueryEndpoint(
    "account_info", "/api/account/info", r.AccountInfo, "Read the account's details."
)
ACTIVE_TASKS = QueryEndpoint(
    "active_tasks", "/api/account/active_tasks", r.ActiveTasks, "List the account's running jobs."
)
QUERY_ENDPOINTS: tuple[QueryEndpoint[Any], ...] = (GET_JOB, BALANCE, ACCOUNT_INFO, ACTIVE_TASKS)

# The keys of `available_actions` in the vendor's sample task object (the inpaint page):
# exactly these. No vendor text shows an `enhance` key or any video action.
VENDOR_ACTION_KEYS: frozenset[str] = frozenset(
    {"edit", "inpaint", "outpaint", "pan", "remix", "reroll", "upscale", "variation"}
)
# The actions a parent lists per image (``"upscale": [0, 1, 2, 3]``): those of the
# endpoints working on one image of a parent that the vendor's sample shows.
PER_IMAGE_ACTIONS: tuple[str, ...] = tuple(
    e.action
    for e in CREATE_ENDPOINTS
    if e.parent is ParentKind.IMAGE and e.action is not None and e.action in VENDOR_ACTION_KEYS
)
# The request fields that carry a prompt; no request has more than one of them.
PROMPT_FIELDS: tuple[str, ...] = ("text", "prompt", "remix_prompt")

ENDPOINTS_BY_NAME: dict[str, CreateEndpoint] = {e.name: e for e in CREATE_ENDPOINTS}
ENDPOINTS_BY_REQUEST: dict[type[m.LegnextRequest], CreateEndpoint] = {
    e.request: e for e in CREATE_ENDPOINTS
}


def endpoint(name: str) -> CreateEndpoint:
    """Look up a create endpoint by name, hyphens or underscores."""
    key = r.normalize_task_type(name)
    try:
        return ENDPOINTS_BY_NAME[key]
    except KeyError:
        known = ", ".join(ENDPOINTS_BY_NAME)
        raise KeyError(f"unknown Legnext endpoint {name!r}; known: {known}") from None


def endpoint_for(request: m.LegnextRequest) -> CreateEndpoint:
    return ENDPOINTS_BY_REQUEST[type(request)]
