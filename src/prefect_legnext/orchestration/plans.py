"""Chains of Legnext steps, checked before any point is spent.

A chain is a list of `ChainStep`: an action (any create endpoint) and what it needs
beyond its parent (a prompt, a mask, other fields). Each step after the first works
on the previous step's output: its job (``job_id`` + ``image_no``/``video_no``) or
its image URL (``img_url``), derived from the request model's own fields.

`plan_chain` checks the whole chain statically: every request validates (with
placeholder parents), every step may follow the one before (output kind, image
number, enhance on a draft), and the planned cost fits the budget. At run time,
`check_parent` confirms each step against the real parent's ``available_actions``
before its submit.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prefect_legnext.core.endpoints import (
    CREATE_ENDPOINTS,
    PER_IMAGE_ACTIONS,
    PROMPT_FIELDS,
    CreateEndpoint,
    OutputKind,
    ParentKind,
    endpoint,
)
from prefect_legnext.core.errors import InvalidRequestError
from prefect_legnext.core.masks import MaskForm, as_mask, region_mask
from prefect_legnext.core.models import (
    DRAFT_FLAGS,
    VERSION_7,
    DiffusionRequest,
    LegnextRequest,
    Mask,
)
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.errors import ChainError

_NUMBER_FIELDS = ("image_no", "video_no")
PLACEHOLDER_JOB_ID = "00000000-0000-4000-8000-000000000000"
PLACEHOLDER_IMAGE_URL = "https://placeholder.invalid/parent.png"
DRAFT_SUFFIX = "--v 7 --draft"

Action = StrEnum(  # type: ignore[misc]
    "Action", {e.name.upper(): e.name for e in CREATE_ENDPOINTS}
)


class ImageSource(StrEnum):
    S3 = "s3"
    LEGNEXT = "legnext"


class ChainStep(BaseModel):
    """One step of a chain."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    action: Action = Field(title="Action", description="The Legnext endpoint this step calls.")
    image_no: int = Field(
        default=0,
        ge=0,
        le=3,
        title="Image number",
        description="Which image (or video) of the previous step this step works on.",
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        title="Prompt",
        description="The text of diffusion and shorten, the prompt of video steps, the "
        "remix prompt of edits (inpaint, remix, retexture, pan, outpaint, edit, variation).",
    )
    mask: MaskForm | None = Field(
        default=None,
        title="Mask",
        description="What inpaint or upload-paint repaints: polygons, a mask image URL, a "
        "rectangle (fractions or pixels) or a named region.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        title="Other fields",
        description='Other request fields in snake_case, e.g. {"type": 1} for upscale or '
        '{"direction": 1, "scale": 1.5} for pan.',
    )

    @property
    def endpoint(self) -> CreateEndpoint:
        return endpoint(str(self.action))


class PlannedStep(BaseModel):
    """A checked step: its endpoint, expected output and planned cost."""

    index: int
    step: ChainStep
    output: OutputKind
    points: int
    draft: bool = False


class ChainPlan(BaseModel):
    steps: list[PlannedStep]

    @property
    def points(self) -> int:
        return sum(s.points for s in self.steps)


def default_mask() -> Mask:
    """The centre quarter of the image: ``[256, 256, 768, 256, 768, 768, 256, 768]`` on
    a 1024-pixel frame."""
    return region_mask("center")


_VERSION_FLAG = re.compile(r"--v(?:ersion)?\s+(\S+)")


def with_draft_flags(prompt: str) -> str:
    """Enhance needs a draft parent (``--v 7 --draft``, the vendor's enhance page): append
    whichever of the two flags the prompt lacks, keeping the user's text as written.

    Raises:
        ChainError: the prompt asks for another model version (e.g. ``--v 6.1``), which
            Legnext cannot enhance; changing it silently would change the image.
    """
    versions = _VERSION_FLAG.findall(prompt)
    conflicting = [v for v in versions if not VERSION_7.fullmatch(f"--v {v}")]
    if conflicting:
        raise ChainError(
            f"the prompt asks for --v {conflicting[0]}, but enhance needs a draft parent made "
            "with --v 7 --draft; remove the version flag or the enhance step"
        )
    missing = [
        flag
        for flag, present in (("--v 7", versions), ("--draft", DRAFT_FLAGS.search(prompt)))
        if not present
    ]
    return " ".join([prompt.rstrip(), *missing]) if missing else prompt


def prepare(steps: list[ChainStep]) -> list[ChainStep]:
    """Add ``--v 7 --draft`` to a diffusion that an enhance follows.

    Raises:
        ChainError: naming the step whose prompt asks for another version.
    """
    prepared = list(steps)
    for i, step in enumerate(prepared[:-1]):
        follower = prepared[i + 1]
        if step.action == "diffusion" and follower.action == "enhance" and step.prompt:
            try:
                prompt = with_draft_flags(step.prompt)
            except ChainError as exc:
                raise ChainError(f"step {i + 1} (diffusion): {exc}") from None
            prepared[i] = step.model_copy(update={"prompt": prompt})
    return prepared


def build_request(
    step: ChainStep,
    *,
    parent_job_id: str | None,
    parent_image_url: str | None,
    callback: str | None = None,
) -> LegnextRequest:
    """The request of `step`, given its parent (job id and/or image URL) if any.

    Raises:
        ChainError: naming the step, the field and the rule.
    """
    target = step.endpoint
    fields_of = target.request.model_fields
    fields: dict[str, Any] = {}
    derived: set[str] = set()
    if step.prompt is not None:
        prompt_field = next((f for f in PROMPT_FIELDS if f in fields_of), None)
        if prompt_field is None:
            raise ChainError("it takes no prompt")
        fields[prompt_field] = step.prompt
    if step.mask is not None:
        if "mask" not in fields_of:
            raise ChainError("it takes no mask")
        fields["mask"] = as_mask(step.mask)
    if parent_job_id is not None and "job_id" in fields_of:
        fields["job_id"] = parent_job_id
        number = next(f for f in _NUMBER_FIELDS if f in fields_of)
        fields[number] = step.image_no
        derived |= {"job_id", number}
    if parent_image_url is not None and "img_url" in fields_of and "job_id" not in fields_of:
        fields["img_url"] = parent_image_url
        derived.add("img_url")
    if callback is not None:
        fields["callback"] = callback
    clashes = derived & set(step.options)
    if clashes:
        raise ChainError(
            f"{', '.join(sorted(clashes))} come from the previous step; remove them from options"
        )
    try:
        return target.build(**{**step.options, **fields})
    except InvalidRequestError as exc:
        raise ChainError(str(exc)) from None


def _consumes(target: CreateEndpoint) -> str:
    """What a step after the first takes from its parent: 'job', 'image' or 'nothing'."""
    fields = target.request.model_fields
    if "job_id" in fields:
        return "job"
    if "img_url" in fields:
        return "image"
    return "nothing"


def _count(kind: OutputKind) -> int:
    return {OutputKind.GRID: 4, OutputKind.IMAGE: 1, OutputKind.VIDEO: 4}.get(kind, 1)


def _allowed_after(target: CreateEndpoint, kind: OutputKind, draft: bool) -> bool:
    if target.parent is ParentKind.VIDEO:
        return kind is OutputKind.VIDEO
    if kind not in (OutputKind.GRID, OutputKind.IMAGE):
        return False
    if target.name == "enhance":
        return draft
    if target.parent is ParentKind.JOB:  # reroll
        return kind is OutputKind.GRID
    if target.action is not None:
        # The real parent's available_actions are checked again at run time.
        return target.action in PER_IMAGE_ACTIONS
    return True  # video-diffusion, and image-URL steps


def plan_chain(steps: list[ChainStep]) -> ChainPlan:
    """Check a whole chain before any paid call (its cost is checked against the run's
    budget by the flow: `PointBudget.check_plan`).

    Raises:
        ChainError: naming the step and the problem.
    """
    if not steps:
        raise ChainError("a chain needs at least one step")
    planned: list[PlannedStep] = []
    previous: PlannedStep | None = None
    for index, step in enumerate(prepare(steps), start=1):
        target = step.endpoint
        where = f"step {index} ({target.name})"
        consumes = _consumes(target)
        if previous is None:
            parent_id = None
            if consumes == "job" and not (
                target.name == "video_diffusion" and step.prompt is not None
            ):
                raise ChainError(f"{where} needs a previous step to work on")
        else:
            if consumes == "nothing":
                raise ChainError(f"{where} cannot follow a step: it takes no parent or image")
            kind = previous.output
            if not _allowed_after(target, kind, previous.draft):
                detail = (
                    "enhance needs a draft parent (diffusion with --v 7 --draft)"
                    if target.name == "enhance"
                    else f"it cannot follow {previous.step.action} (which produces {kind})"
                )
                raise ChainError(f"{where}: {detail}")
            if step.image_no >= _count(kind):
                raise ChainError(
                    f"{where}: image_no {step.image_no} is not available; "
                    f"{previous.step.action} produces {_count(kind)} output(s)"
                )
            parent_id = PLACEHOLDER_JOB_ID
        try:
            request = build_request(
                step,
                parent_job_id=parent_id if consumes == "job" else None,
                parent_image_url=PLACEHOLDER_IMAGE_URL
                if previous and consumes == "image"
                else None,
            )
        except ChainError as exc:
            raise ChainError(f"{where}: {exc}") from None
        output = target.output
        if output is OutputKind.AS_PARENT and previous is not None:
            output = previous.output
        points = target.cost(request, previous.points if previous else None)
        draft = isinstance(request, DiffusionRequest) and request.is_enhanceable
        current = PlannedStep(index=index, step=step, output=output, points=points, draft=draft)
        planned.append(current)
        previous = current
    return ChainPlan(steps=planned)


def parent_prompt(parent: Job) -> str | None:
    """The parent's prompt, when Legnext's task object carries one. The vendor's samples
    have ``input: null``; a live answer might not, so look without relying on it."""
    data = parent.input
    if isinstance(data, dict):
        for name in ("text", "prompt"):
            if isinstance(data.get(name), str):
                return str(data[name])
    return None


def parent_is_draft(parent: Job, known: bool | None) -> bool | None:
    """Whether Legnext will enhance `parent`: what we know of its request (`known`: our
    own request or its ledger record), else its prompt if the task object carries one,
    else None (unknown)."""
    if known is not None:
        return known
    prompt = parent_prompt(parent)
    if prompt is None:
        return None
    return bool(DRAFT_FLAGS.search(prompt) and VERSION_7.search(prompt))


def check_parent(planned: PlannedStep, parent: Job, *, parent_draft: bool | None = None) -> None:
    """Confirm against the real parent that Legnext will accept this step.

    Only a refusal the parent states counts: a key in ``available_actions`` that excludes
    the image (or ``reroll: false``). An absent key is "unknown", never "refused": the
    vendor's samples show only some keys (no ``enhance``, no video actions), and a step
    Legnext refuses is answered 400 at no cost. Enhance follows the vendor's stated rule:
    the parent was made with ``--v 7 --draft`` (`parent_draft`, else `parent_is_draft`).

    Raises:
        ChainError: the parent refuses this step; nothing was submitted for it.
    """
    target = planned.step.endpoint
    if _consumes(target) != "job" or target.action is None:
        return
    where = f"step {planned.index} ({target.name})"
    if target.name == "enhance" and parent_is_draft(parent, parent_draft) is False:
        raise ChainError(
            f"{where}: job {parent.job_id} was not made in draft mode (--v 7 --draft), "
            "which enhance needs; nothing was submitted for it"
        )
    output = parent.output
    if output is None or target.action not in output.available_actions:
        return
    number = None if target.parent is ParentKind.JOB else planned.step.image_no
    if not output.allows(target.action, number):
        raise ChainError(
            f"{where}: job {parent.job_id} does not allow {target.action}"
            + (f" on image {number}" if number is not None else "")
            + f" (available_actions: {output.available_actions}); nothing was submitted for it"
        )


def takes_prompt(step: ChainStep) -> bool:
    """Whether the step's request has a prompt field (text, prompt or remix prompt)."""
    fields_of = step.endpoint.request.model_fields
    return any(f in fields_of for f in PROMPT_FIELDS)


def image_choices(
    planned: PlannedStep, parent: Job, outputs: int, *, parent_draft: bool | None = None
) -> list[int]:
    """The image numbers of `parent` that `planned` (the next step) may work on: every one
    of its `outputs` that `check_parent` lets through; none when the step takes no image
    number (reroll, a step on no parent).
    """
    target = planned.step.endpoint
    if target.parent is ParentKind.JOB or _consumes(target) == "nothing":
        return []
    allowed = []
    for number in range(outputs):
        candidate = planned.model_copy(
            update={"step": planned.step.model_copy(update={"image_no": number})}
        )
        try:
            check_parent(candidate, parent, parent_draft=parent_draft)
        except ChainError:
            continue
        allowed.append(number)
    return allowed
