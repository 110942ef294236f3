"""The Prefect tasks of the create endpoints: ``submit_<endpoint>`` and
``asubmit_<endpoint>`` for each endpoint of the table, re-exported by
`prefect_legnext.orchestration.tasks` (import them from there).

Each validates its keyword arguments into the endpoint's request model (before any
paid call) and hands the request to `tasks._submit`, which submits it at most once per
idempotency key. This module imports nothing of `tasks` (which imports it) but at call
time, so either can be imported first.

Generated from `endpoints.CREATE_ENDPOINTS` by ``python -m prefect_legnext.codegen``
(``make generate``): do not edit by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from prefect import task
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.utilities.asyncutils import run_sync_in_worker_thread

from prefect_legnext.core.endpoints import ENDPOINTS_BY_NAME
from prefect_legnext.core.models import (
    Canvas,
    ImagePosition,
    LegnextRequest,
    Mask,
    PanDirection,
    Polygon,
    RemixMode,
    UpscaleType,
    VariationType,
    VideoType,
)
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.ledger import OnUnknown
from prefect_legnext.orchestration.task_options import SUBMIT_OPTIONS

if TYPE_CHECKING:
    from prefect_legnext.orchestration.tasks import LedgerArg


def _submit(
    credentials: LegnextCredentials,
    request: LegnextRequest,
    idempotency_key: str | None,
    ledger: LedgerArg,
    on_unknown: OnUnknown,
) -> Job:
    """Submit once, through the ledger: `prefect_legnext.orchestration.tasks._submit`."""
    from prefect_legnext.orchestration import tasks

    return tasks._submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-diffusion"})
async def asubmit_diffusion(
    credentials: LegnextCredentials,
    *,
    text: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Generate a 4-image grid from a text prompt (40 points with --draft).

    The async form of `submit_diffusion`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["diffusion"].build(text=text, callback=callback)
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_diffusion)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-diffusion"})
def submit_diffusion(
    credentials: LegnextCredentials,
    *,
    text: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Generate a 4-image grid from a text prompt (40 points with --draft).

    A paid call: ``POST /api/v1/diffusion``, 80 points base; the keyword arguments are the fields of
    `DiffusionRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        text: the prompt, Midjourney parameters included (``--ar 3:2``, ``--v 7``, ``--draft``).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["diffusion"].build(text=text, callback=callback)
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-variation"})
async def asubmit_variation(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    type: VariationType,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Vary one image of a grid, subtly or strongly.

    The async form of `submit_variation`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["variation"].build(
        job_id=job_id, image_no=image_no, type=type, remix_prompt=remix_prompt, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_variation)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-variation"})
def submit_variation(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    type: VariationType,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Vary one image of a grid, subtly or strongly.

    A paid call: ``POST /api/v1/variation``, 120 points base; the keyword arguments are the fields
    of `VariationRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        type: `VariationType.SUBTLE` or `VariationType.STRONG`.
        remix_prompt: a prompt that steers the result.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["variation"].build(
        job_id=job_id, image_no=image_no, type=type, remix_prompt=remix_prompt, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-upscale"})
async def asubmit_upscale(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    type: UpscaleType,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Upscale one image of a grid (160 points for creative).

    The async form of `submit_upscale`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["upscale"].build(
        job_id=job_id, image_no=image_no, type=type, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_upscale)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-upscale"})
def submit_upscale(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    type: UpscaleType,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Upscale one image of a grid (160 points for creative).

    A paid call: ``POST /api/v1/upscale``, 120 points base; the keyword arguments are the fields of
    `UpscaleRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        type: `UpscaleType.SUBTLE` (120 points) or `UpscaleType.CREATIVE` (160 points).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["upscale"].build(
        job_id=job_id, image_no=image_no, type=type, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-reroll"})
async def asubmit_reroll(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Run a job again with the same parameters (costs as its parent).

    The async form of `submit_reroll`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["reroll"].build(job_id=job_id, callback=callback)
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_reroll)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-reroll"})
def submit_reroll(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Run a job again with the same parameters (costs as its parent).

    A paid call: ``POST /api/v1/reroll``, 120 points base; the keyword arguments are the fields of
    `RerollRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["reroll"].build(job_id=job_id, callback=callback)
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-blend"})
async def asubmit_blend(
    credentials: LegnextCredentials,
    *,
    img_urls: list[str],
    aspect_ratio: Literal["2:3", "1:1", "3:2"],
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Blend 2 to 5 images into a new grid.

    The async form of `submit_blend`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["blend"].build(
        img_urls=img_urls, aspect_ratio=aspect_ratio, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_blend)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-blend"})
def submit_blend(
    credentials: LegnextCredentials,
    *,
    img_urls: list[str],
    aspect_ratio: Literal["2:3", "1:1", "3:2"],
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Blend 2 to 5 images into a new grid.

    A paid call: ``POST /api/v1/blend``, 80 points base; the keyword arguments are the fields of
    `BlendRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        img_urls: the http(s) URLs of the images to blend (2 to 5).
        aspect_ratio: the aspect ratio of the blend.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["blend"].build(
        img_urls=img_urls, aspect_ratio=aspect_ratio, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-describe"})
async def asubmit_describe(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Describe an image as text prompts.

    The async form of `submit_describe`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["describe"].build(img_url=img_url, callback=callback)
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_describe)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-describe"})
def submit_describe(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Describe an image as text prompts.

    A paid call: ``POST /api/v1/describe``, 20 points base; the keyword arguments are the fields of
    `DescribeRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        img_url: the http(s) URL of the image (at most 1024 characters).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["describe"].build(img_url=img_url, callback=callback)
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-shorten"})
async def asubmit_shorten(
    credentials: LegnextCredentials,
    *,
    prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Shorten a prompt to its essential terms.

    The async form of `submit_shorten`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["shorten"].build(prompt=prompt, callback=callback)
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_shorten)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-shorten"})
def submit_shorten(
    credentials: LegnextCredentials,
    *,
    prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Shorten a prompt to its essential terms.

    A paid call: ``POST /api/v1/shorten``, 20 points base; the keyword arguments are the fields of
    `ShortenRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        prompt: the prompt to shorten.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["shorten"].build(prompt=prompt, callback=callback)
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-pan"})
async def asubmit_pan(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    direction: PanDirection,
    scale: float,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Extend one image of a grid in one direction.

    The async form of `submit_pan`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["pan"].build(
        job_id=job_id,
        image_no=image_no,
        direction=direction,
        scale=scale,
        remix_prompt=remix_prompt,
        callback=callback,
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_pan)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-pan"})
def submit_pan(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    direction: PanDirection,
    scale: float,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Extend one image of a grid in one direction.

    A paid call: ``POST /api/v1/pan``, 80 points base; the keyword arguments are the fields of
    `PanRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        direction: which way to extend the image.
        scale: how many times larger the result is (1.1 to 3.0).
        remix_prompt: a prompt that steers the result.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["pan"].build(
        job_id=job_id,
        image_no=image_no,
        direction=direction,
        scale=scale,
        remix_prompt=remix_prompt,
        callback=callback,
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-outpaint"})
async def asubmit_outpaint(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    scale: float,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Zoom out: extend one image of a grid on all sides.

    The async form of `submit_outpaint`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["outpaint"].build(
        job_id=job_id, image_no=image_no, scale=scale, remix_prompt=remix_prompt, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_outpaint)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-outpaint"})
def submit_outpaint(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    scale: float,
    remix_prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Zoom out: extend one image of a grid on all sides.

    A paid call: ``POST /api/v1/outpaint``, 80 points base; the keyword arguments are the fields of
    `OutpaintRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        scale: how many times larger the result is (1.1 to 2.0).
        remix_prompt: a prompt that steers the result.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["outpaint"].build(
        job_id=job_id, image_no=image_no, scale=scale, remix_prompt=remix_prompt, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-inpaint"})
async def asubmit_inpaint(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    mask: Mask | None = None,
    remix_prompt: str | None = None,
    area: Polygon | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Repaint the masked region of one image of a grid.

    The async form of `submit_inpaint`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["inpaint"].build(
        job_id=job_id,
        image_no=image_no,
        mask=mask,
        remix_prompt=remix_prompt,
        area=area,
        callback=callback,
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_inpaint)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-inpaint"})
def submit_inpaint(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    mask: Mask | None = None,
    remix_prompt: str | None = None,
    area: Polygon | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Repaint the masked region of one image of a grid.

    A paid call: ``POST /api/v1/inpaint``, 120 points base; the keyword arguments are the fields of
    `InpaintRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
            repainted); required unless the deprecated area is given.
        remix_prompt: a prompt that steers the result.
        area: deprecated by Legnext (a DeprecationWarning): use mask.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["inpaint"].build(
        job_id=job_id,
        image_no=image_no,
        mask=mask,
        remix_prompt=remix_prompt,
        area=area,
        callback=callback,
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-remix"})
async def asubmit_remix(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    remix_prompt: str,
    mode: RemixMode | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Remix one image of a grid with a new prompt.

    The async form of `submit_remix`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["remix"].build(
        job_id=job_id, image_no=image_no, remix_prompt=remix_prompt, mode=mode, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_remix)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-remix"})
def submit_remix(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    remix_prompt: str,
    mode: RemixMode | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Remix one image of a grid with a new prompt.

    A paid call: ``POST /api/v1/remix``, 120 points base; the keyword arguments are the fields of
    `RemixRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        remix_prompt: a prompt that steers the result.
        mode: how closely the result follows the new prompt.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["remix"].build(
        job_id=job_id, image_no=image_no, remix_prompt=remix_prompt, mode=mode, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-edit"})
async def asubmit_edit(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    canvas: Canvas,
    img_pos: ImagePosition,
    remix_prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Reposition one image of a grid on a new canvas and repaint.

    The async form of `submit_edit`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["edit"].build(
        job_id=job_id,
        image_no=image_no,
        canvas=canvas,
        img_pos=img_pos,
        remix_prompt=remix_prompt,
        callback=callback,
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_edit)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-edit"})
def submit_edit(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    canvas: Canvas,
    img_pos: ImagePosition,
    remix_prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Reposition one image of a grid on a new canvas and repaint.

    A paid call: ``POST /api/v1/edit``, 120 points base; the keyword arguments are the fields of
    `EditRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        canvas: the size of the new canvas.
        img_pos: the size and position of the image on the canvas.
        remix_prompt: a prompt that steers the result.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["edit"].build(
        job_id=job_id,
        image_no=image_no,
        canvas=canvas,
        img_pos=img_pos,
        remix_prompt=remix_prompt,
        callback=callback,
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-upload-paint"})
async def asubmit_upload_paint(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    canvas: Canvas,
    img_pos: ImagePosition,
    remix_prompt: str,
    mask: Mask,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Place an uploaded image on a canvas and repaint the mask.

    The async form of `submit_upload_paint`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["upload_paint"].build(
        img_url=img_url,
        canvas=canvas,
        img_pos=img_pos,
        remix_prompt=remix_prompt,
        mask=mask,
        callback=callback,
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_upload_paint)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-upload-paint"})
def submit_upload_paint(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    canvas: Canvas,
    img_pos: ImagePosition,
    remix_prompt: str,
    mask: Mask,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Place an uploaded image on a canvas and repaint the mask.

    A paid call: ``POST /api/v1/upload-paint``, 120 points base; the keyword arguments are the
    fields of `UploadPaintRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        img_url: the http(s) URL of the image (at most 1024 characters).
        canvas: the size of the new canvas.
        img_pos: the size and position of the image on the canvas.
        remix_prompt: a prompt that steers the result.
        mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
            repainted).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["upload_paint"].build(
        img_url=img_url,
        canvas=canvas,
        img_pos=img_pos,
        remix_prompt=remix_prompt,
        mask=mask,
        callback=callback,
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-retexture"})
async def asubmit_retexture(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    remix_prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Change the texture of an image, keeping its layout.

    The async form of `submit_retexture`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["retexture"].build(
        img_url=img_url, remix_prompt=remix_prompt, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_retexture)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-retexture"})
def submit_retexture(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    remix_prompt: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Change the texture of an image, keeping its layout.

    A paid call: ``POST /api/v1/retexture``, 120 points base; the keyword arguments are the fields
    of `RetextureRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        img_url: the http(s) URL of the image (at most 1024 characters).
        remix_prompt: a prompt that steers the result.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["retexture"].build(
        img_url=img_url, remix_prompt=remix_prompt, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-remove-background"})
async def asubmit_remove_background(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Remove the background of an image.

    The async form of `submit_remove_background`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["remove_background"].build(img_url=img_url, callback=callback)
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_remove_background)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-remove-background"})
def submit_remove_background(
    credentials: LegnextCredentials,
    *,
    img_url: str,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Remove the background of an image.

    A paid call: ``POST /api/v1/remove-background``, 80 points base; the keyword arguments are the
    fields of `RemoveBackgroundRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        img_url: the http(s) URL of the image (at most 1024 characters).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["remove_background"].build(img_url=img_url, callback=callback)
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-enhance"})
async def asubmit_enhance(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Enhance one image of a draft (--v 7 --draft) grid to full quality.

    The async form of `submit_enhance`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["enhance"].build(
        job_id=job_id, image_no=image_no, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_enhance)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-enhance"})
def submit_enhance(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    image_no: int,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Enhance one image of a draft (--v 7 --draft) grid to full quality.

    A paid call: ``POST /api/v1/enhance``, 80 points base; the keyword arguments are the fields of
    `EnhanceRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        image_no: which image of the parent job (0 to 3).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["enhance"].build(
        job_id=job_id, image_no=image_no, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-video-diffusion"})
async def asubmit_video_diffusion(
    credentials: LegnextCredentials,
    *,
    job_id: str | None = None,
    image_no: int | None = None,
    prompt: str | None = None,
    video_type: VideoType | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Animate an image into 4 videos (1536 points for 720p).

    The async form of `submit_video_diffusion`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["video_diffusion"].build(
        job_id=job_id, image_no=image_no, prompt=prompt, video_type=video_type, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_video_diffusion)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-video-diffusion"})
def submit_video_diffusion(
    credentials: LegnextCredentials,
    *,
    job_id: str | None = None,
    image_no: int | None = None,
    prompt: str | None = None,
    video_type: VideoType | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Animate an image into 4 videos (1536 points for 720p).

    A paid call: ``POST /api/v1/video-diffusion``, 480 points base; the keyword arguments are the
    fields of `VideoDiffusionRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the id of the image job to animate (with image_no).
        image_no: which image of that job to animate (0 to 3).
        prompt: ``"<image url> <text>"``: the image to animate and how, instead of job_id and
            image_no.
        video_type: `VideoType.SD_480P` (the default) or `VideoType.HD_720P` (1536 points).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["video_diffusion"].build(
        job_id=job_id, image_no=image_no, prompt=prompt, video_type=video_type, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-extend-video"})
async def asubmit_extend_video(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    video_no: int,
    prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Extend one video of a video job (costs as its parent's quality).

    The async form of `submit_extend_video`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["extend_video"].build(
        job_id=job_id, video_no=video_no, prompt=prompt, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_extend_video)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-extend-video"})
def submit_extend_video(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    video_no: int,
    prompt: str | None = None,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Extend one video of a video job (costs as its parent's quality).

    A paid call: ``POST /api/v1/extend-video``, 480 points base; the keyword arguments are the
    fields of `ExtendVideoRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        video_no: which video of the parent job (0 to 3).
        prompt: how the video goes on.
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["extend_video"].build(
        job_id=job_id, video_no=video_no, prompt=prompt, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


@task(**{**SUBMIT_OPTIONS, "name": "legnext-video-upscale"})
async def asubmit_video_upscale(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    video_no: int,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Upscale one video of a video job.

    The async form of `submit_video_upscale`; see it for the arguments.
    """
    request = ENDPOINTS_BY_NAME["video_upscale"].build(
        job_id=job_id, video_no=video_no, callback=callback
    )
    return await run_sync_in_worker_thread(
        _submit, credentials, request, idempotency_key, ledger, on_unknown
    )


@async_dispatch(asubmit_video_upscale)
@task(**{**SUBMIT_OPTIONS, "name": "legnext-video-upscale"})
def submit_video_upscale(
    credentials: LegnextCredentials,
    *,
    job_id: str,
    video_no: int,
    callback: str | None = None,
    idempotency_key: str | None = None,
    ledger: LedgerArg = None,
    on_unknown: OnUnknown = "raise",
) -> Job:
    """Upscale one video of a video job.

    A paid call: ``POST /api/v1/video-upscale``, 480 points base; the keyword arguments are the
    fields of `VideoUpscaleRequest`.

    Submitted at most once per idempotency key: a retried task or a re-run flow reuses the job
    instead of paying again.

    Args:
        credentials: the Legnext credentials block.
        job_id: the parent job's id.
        video_no: which video of the parent job (0 to 3).
        callback: an http(s) URL Legnext POSTs the job to when it finishes.
        idempotency_key: reuse the job submitted under this key before; derived from the flow run
            and the request when omitted (see `submit_request`).
        ledger: where keys are recorded: an `S3Bucket`, a directory path, or None for
            ``$PREFECT_HOME/legnext/ledger``.
        on_unknown: "raise" (the default) stops when an earlier submit's outcome cannot be
            reconciled; "resubmit" accepts the risk of paying twice.

    Returns:
        The job as Legnext answered it (status pending), or the job reused under the key.

    Raises:
        InvalidRequestError: a field breaks a rule; nothing was sent, and it is not retried.
        OutcomeUnknownError: an earlier submit's outcome is unknown (see on_unknown).
        LegnextAPIError: Legnext refused it (see its subclasses).
    """
    request = ENDPOINTS_BY_NAME["video_upscale"].build(
        job_id=job_id, video_no=video_no, callback=callback
    )
    return _submit(credentials, request, idempotency_key, ledger, on_unknown)


# The (sync, async) task pair of each endpoint, by endpoint name.
ENDPOINT_TASKS: dict[str, tuple[Any, Any]] = {
    "diffusion": (submit_diffusion, asubmit_diffusion),
    "variation": (submit_variation, asubmit_variation),
    "upscale": (submit_upscale, asubmit_upscale),
    "reroll": (submit_reroll, asubmit_reroll),
    "blend": (submit_blend, asubmit_blend),
    "describe": (submit_describe, asubmit_describe),
    "shorten": (submit_shorten, asubmit_shorten),
    "pan": (submit_pan, asubmit_pan),
    "outpaint": (submit_outpaint, asubmit_outpaint),
    "inpaint": (submit_inpaint, asubmit_inpaint),
    "remix": (submit_remix, asubmit_remix),
    "edit": (submit_edit, asubmit_edit),
    "upload_paint": (submit_upload_paint, asubmit_upload_paint),
    "retexture": (submit_retexture, asubmit_retexture),
    "remove_background": (submit_remove_background, asubmit_remove_background),
    "enhance": (submit_enhance, asubmit_enhance),
    "video_diffusion": (submit_video_diffusion, asubmit_video_diffusion),
    "extend_video": (submit_extend_video, asubmit_extend_video),
    "video_upscale": (submit_video_upscale, asubmit_video_upscale),
}

__all__: list[str] = [
    "asubmit_blend",
    "asubmit_describe",
    "asubmit_diffusion",
    "asubmit_edit",
    "asubmit_enhance",
    "asubmit_extend_video",
    "asubmit_inpaint",
    "asubmit_outpaint",
    "asubmit_pan",
    "asubmit_remix",
    "asubmit_remove_background",
    "asubmit_reroll",
    "asubmit_retexture",
    "asubmit_shorten",
    "asubmit_upload_paint",
    "asubmit_upscale",
    "asubmit_variation",
    "asubmit_video_diffusion",
    "asubmit_video_upscale",
    "submit_blend",
    "submit_describe",
    "submit_diffusion",
    "submit_edit",
    "submit_enhance",
    "submit_extend_video",
    "submit_inpaint",
    "submit_outpaint",
    "submit_pan",
    "submit_remix",
    "submit_remove_background",
    "submit_reroll",
    "submit_retexture",
    "submit_shorten",
    "submit_upload_paint",
    "submit_upscale",
    "submit_variation",
    "submit_video_diffusion",
    "submit_video_upscale",
]
