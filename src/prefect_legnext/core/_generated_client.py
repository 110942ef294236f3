"""The create methods of the Legnext clients, one per endpoint of the table.

Generated from `endpoints.CREATE_ENDPOINTS` by ``python -m prefect_legnext.codegen``
(``make generate``): do not edit by hand.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

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


class _SyncEndpoints(ABC):
    """`LegnextClient`'s create methods: each validates its keyword arguments into the
    endpoint's request model, then submits it with `create`."""

    @abstractmethod
    def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call)."""

    def diffusion(self, *, text: str, callback: str | None = None) -> Job:
        """Generate a 4-image grid from a text prompt (40 points with --draft).

        A paid call: ``POST /api/v1/diffusion``, 80 points base; the keyword arguments are the
        fields of `DiffusionRequest`.

        Args:
            text: the prompt, Midjourney parameters included (``--ar 3:2``, ``--v 7``, ``--draft``).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(ENDPOINTS_BY_NAME["diffusion"].build(text=text, callback=callback))

    def variation(
        self,
        *,
        job_id: str,
        image_no: int,
        type: VariationType,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Vary one image of a grid, subtly or strongly.

        A paid call: ``POST /api/v1/variation``, 120 points base; the keyword arguments are the
        fields of `VariationRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            type: `VariationType.SUBTLE` or `VariationType.STRONG`.
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["variation"].build(
                job_id=job_id,
                image_no=image_no,
                type=type,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    def upscale(
        self, *, job_id: str, image_no: int, type: UpscaleType, callback: str | None = None
    ) -> Job:
        """Upscale one image of a grid (160 points for creative).

        A paid call: ``POST /api/v1/upscale``, 120 points base; the keyword arguments are the fields
        of `UpscaleRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            type: `UpscaleType.SUBTLE` (120 points) or `UpscaleType.CREATIVE` (160 points).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["upscale"].build(
                job_id=job_id, image_no=image_no, type=type, callback=callback
            )
        )

    def reroll(self, *, job_id: str, callback: str | None = None) -> Job:
        """Run a job again with the same parameters (costs as its parent).

        A paid call: ``POST /api/v1/reroll``, 120 points base; the keyword arguments are the fields
        of `RerollRequest`.

        Args:
            job_id: the parent job's id.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(ENDPOINTS_BY_NAME["reroll"].build(job_id=job_id, callback=callback))

    def blend(
        self,
        *,
        img_urls: list[str],
        aspect_ratio: Literal["2:3", "1:1", "3:2"],
        callback: str | None = None,
    ) -> Job:
        """Blend 2 to 5 images into a new grid.

        A paid call: ``POST /api/v1/blend``, 80 points base; the keyword arguments are the fields of
        `BlendRequest`.

        Args:
            img_urls: the http(s) URLs of the images to blend (2 to 5).
            aspect_ratio: the aspect ratio of the blend.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["blend"].build(
                img_urls=img_urls, aspect_ratio=aspect_ratio, callback=callback
            )
        )

    def describe(self, *, img_url: str, callback: str | None = None) -> Job:
        """Describe an image as text prompts.

        A paid call: ``POST /api/v1/describe``, 20 points base; the keyword arguments are the fields
        of `DescribeRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(ENDPOINTS_BY_NAME["describe"].build(img_url=img_url, callback=callback))

    def shorten(self, *, prompt: str, callback: str | None = None) -> Job:
        """Shorten a prompt to its essential terms.

        A paid call: ``POST /api/v1/shorten``, 20 points base; the keyword arguments are the fields
        of `ShortenRequest`.

        Args:
            prompt: the prompt to shorten.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(ENDPOINTS_BY_NAME["shorten"].build(prompt=prompt, callback=callback))

    def pan(
        self,
        *,
        job_id: str,
        image_no: int,
        direction: PanDirection,
        scale: float,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Extend one image of a grid in one direction.

        A paid call: ``POST /api/v1/pan``, 80 points base; the keyword arguments are the fields of
        `PanRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            direction: which way to extend the image.
            scale: how many times larger the result is (1.1 to 3.0).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["pan"].build(
                job_id=job_id,
                image_no=image_no,
                direction=direction,
                scale=scale,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    def outpaint(
        self,
        *,
        job_id: str,
        image_no: int,
        scale: float,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Zoom out: extend one image of a grid on all sides.

        A paid call: ``POST /api/v1/outpaint``, 80 points base; the keyword arguments are the fields
        of `OutpaintRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            scale: how many times larger the result is (1.1 to 2.0).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["outpaint"].build(
                job_id=job_id,
                image_no=image_no,
                scale=scale,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    def inpaint(
        self,
        *,
        job_id: str,
        image_no: int,
        mask: Mask | None = None,
        remix_prompt: str | None = None,
        area: Polygon | None = None,
        callback: str | None = None,
    ) -> Job:
        """Repaint the masked region of one image of a grid.

        A paid call: ``POST /api/v1/inpaint``, 120 points base; the keyword arguments are the fields
        of `InpaintRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
                repainted); required unless the deprecated area is given.
            remix_prompt: a prompt that steers the result.
            area: deprecated by Legnext (a DeprecationWarning): use mask.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["inpaint"].build(
                job_id=job_id,
                image_no=image_no,
                mask=mask,
                remix_prompt=remix_prompt,
                area=area,
                callback=callback,
            )
        )

    def remix(
        self,
        *,
        job_id: str,
        image_no: int,
        remix_prompt: str,
        mode: RemixMode | None = None,
        callback: str | None = None,
    ) -> Job:
        """Remix one image of a grid with a new prompt.

        A paid call: ``POST /api/v1/remix``, 120 points base; the keyword arguments are the fields
        of `RemixRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            remix_prompt: a prompt that steers the result.
            mode: how closely the result follows the new prompt.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["remix"].build(
                job_id=job_id,
                image_no=image_no,
                remix_prompt=remix_prompt,
                mode=mode,
                callback=callback,
            )
        )

    def edit(
        self,
        *,
        job_id: str,
        image_no: int,
        canvas: Canvas,
        img_pos: ImagePosition,
        remix_prompt: str,
        callback: str | None = None,
    ) -> Job:
        """Reposition one image of a grid on a new canvas and repaint.

        A paid call: ``POST /api/v1/edit``, 120 points base; the keyword arguments are the fields of
        `EditRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            canvas: the size of the new canvas.
            img_pos: the size and position of the image on the canvas.
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["edit"].build(
                job_id=job_id,
                image_no=image_no,
                canvas=canvas,
                img_pos=img_pos,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    def upload_paint(
        self,
        *,
        img_url: str,
        canvas: Canvas,
        img_pos: ImagePosition,
        remix_prompt: str,
        mask: Mask,
        callback: str | None = None,
    ) -> Job:
        """Place an uploaded image on a canvas and repaint the mask.

        A paid call: ``POST /api/v1/upload-paint``, 120 points base; the keyword arguments are the
        fields of `UploadPaintRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            canvas: the size of the new canvas.
            img_pos: the size and position of the image on the canvas.
            remix_prompt: a prompt that steers the result.
            mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
                repainted).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["upload_paint"].build(
                img_url=img_url,
                canvas=canvas,
                img_pos=img_pos,
                remix_prompt=remix_prompt,
                mask=mask,
                callback=callback,
            )
        )

    def retexture(self, *, img_url: str, remix_prompt: str, callback: str | None = None) -> Job:
        """Change the texture of an image, keeping its layout.

        A paid call: ``POST /api/v1/retexture``, 120 points base; the keyword arguments are the
        fields of `RetextureRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["retexture"].build(
                img_url=img_url, remix_prompt=remix_prompt, callback=callback
            )
        )

    def remove_background(self, *, img_url: str, callback: str | None = None) -> Job:
        """Remove the background of an image.

        A paid call: ``POST /api/v1/remove-background``, 80 points base; the keyword arguments are
        the fields of `RemoveBackgroundRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["remove_background"].build(img_url=img_url, callback=callback)
        )

    def enhance(self, *, job_id: str, image_no: int, callback: str | None = None) -> Job:
        """Enhance one image of a draft (--v 7 --draft) grid to full quality.

        A paid call: ``POST /api/v1/enhance``, 80 points base; the keyword arguments are the fields
        of `EnhanceRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["enhance"].build(job_id=job_id, image_no=image_no, callback=callback)
        )

    def video_diffusion(
        self,
        *,
        job_id: str | None = None,
        image_no: int | None = None,
        prompt: str | None = None,
        video_type: VideoType | None = None,
        callback: str | None = None,
    ) -> Job:
        """Animate an image into 4 videos (1536 points for 720p).

        A paid call: ``POST /api/v1/video-diffusion``, 480 points base; the keyword arguments are
        the fields of `VideoDiffusionRequest`.

        Args:
            job_id: the id of the image job to animate (with image_no).
            image_no: which image of that job to animate (0 to 3).
            prompt: ``"<image url> <text>"``: the image to animate and how, instead of job_id and
                image_no.
            video_type: `VideoType.SD_480P` (the default) or `VideoType.HD_720P` (1536 points).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["video_diffusion"].build(
                job_id=job_id,
                image_no=image_no,
                prompt=prompt,
                video_type=video_type,
                callback=callback,
            )
        )

    def extend_video(
        self, *, job_id: str, video_no: int, prompt: str | None = None, callback: str | None = None
    ) -> Job:
        """Extend one video of a video job (costs as its parent's quality).

        A paid call: ``POST /api/v1/extend-video``, 480 points base; the keyword arguments are the
        fields of `ExtendVideoRequest`.

        Args:
            job_id: the parent job's id.
            video_no: which video of the parent job (0 to 3).
            prompt: how the video goes on.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["extend_video"].build(
                job_id=job_id, video_no=video_no, prompt=prompt, callback=callback
            )
        )

    def video_upscale(self, *, job_id: str, video_no: int, callback: str | None = None) -> Job:
        """Upscale one video of a video job.

        A paid call: ``POST /api/v1/video-upscale``, 480 points base; the keyword arguments are the
        fields of `VideoUpscaleRequest`.

        Args:
            job_id: the parent job's id.
            video_no: which video of the parent job (0 to 3).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return self.create(
            ENDPOINTS_BY_NAME["video_upscale"].build(
                job_id=job_id, video_no=video_no, callback=callback
            )
        )


class _AsyncEndpoints(ABC):
    """`AsyncLegnextClient`'s create methods: `_SyncEndpoints`, awaited."""

    @abstractmethod
    async def create(self, request: LegnextRequest) -> Job:
        """Submit a validated request (a paid call)."""

    async def diffusion(self, *, text: str, callback: str | None = None) -> Job:
        """Generate a 4-image grid from a text prompt (40 points with --draft).

        A paid call: ``POST /api/v1/diffusion``, 80 points base; the keyword arguments are the
        fields of `DiffusionRequest`.

        Args:
            text: the prompt, Midjourney parameters included (``--ar 3:2``, ``--v 7``, ``--draft``).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(ENDPOINTS_BY_NAME["diffusion"].build(text=text, callback=callback))

    async def variation(
        self,
        *,
        job_id: str,
        image_no: int,
        type: VariationType,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Vary one image of a grid, subtly or strongly.

        A paid call: ``POST /api/v1/variation``, 120 points base; the keyword arguments are the
        fields of `VariationRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            type: `VariationType.SUBTLE` or `VariationType.STRONG`.
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["variation"].build(
                job_id=job_id,
                image_no=image_no,
                type=type,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    async def upscale(
        self, *, job_id: str, image_no: int, type: UpscaleType, callback: str | None = None
    ) -> Job:
        """Upscale one image of a grid (160 points for creative).

        A paid call: ``POST /api/v1/upscale``, 120 points base; the keyword arguments are the fields
        of `UpscaleRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            type: `UpscaleType.SUBTLE` (120 points) or `UpscaleType.CREATIVE` (160 points).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["upscale"].build(
                job_id=job_id, image_no=image_no, type=type, callback=callback
            )
        )

    async def reroll(self, *, job_id: str, callback: str | None = None) -> Job:
        """Run a job again with the same parameters (costs as its parent).

        A paid call: ``POST /api/v1/reroll``, 120 points base; the keyword arguments are the fields
        of `RerollRequest`.

        Args:
            job_id: the parent job's id.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["reroll"].build(job_id=job_id, callback=callback)
        )

    async def blend(
        self,
        *,
        img_urls: list[str],
        aspect_ratio: Literal["2:3", "1:1", "3:2"],
        callback: str | None = None,
    ) -> Job:
        """Blend 2 to 5 images into a new grid.

        A paid call: ``POST /api/v1/blend``, 80 points base; the keyword arguments are the fields of
        `BlendRequest`.

        Args:
            img_urls: the http(s) URLs of the images to blend (2 to 5).
            aspect_ratio: the aspect ratio of the blend.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["blend"].build(
                img_urls=img_urls, aspect_ratio=aspect_ratio, callback=callback
            )
        )

    async def describe(self, *, img_url: str, callback: str | None = None) -> Job:
        """Describe an image as text prompts.

        A paid call: ``POST /api/v1/describe``, 20 points base; the keyword arguments are the fields
        of `DescribeRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["describe"].build(img_url=img_url, callback=callback)
        )

    async def shorten(self, *, prompt: str, callback: str | None = None) -> Job:
        """Shorten a prompt to its essential terms.

        A paid call: ``POST /api/v1/shorten``, 20 points base; the keyword arguments are the fields
        of `ShortenRequest`.

        Args:
            prompt: the prompt to shorten.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["shorten"].build(prompt=prompt, callback=callback)
        )

    async def pan(
        self,
        *,
        job_id: str,
        image_no: int,
        direction: PanDirection,
        scale: float,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Extend one image of a grid in one direction.

        A paid call: ``POST /api/v1/pan``, 80 points base; the keyword arguments are the fields of
        `PanRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            direction: which way to extend the image.
            scale: how many times larger the result is (1.1 to 3.0).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["pan"].build(
                job_id=job_id,
                image_no=image_no,
                direction=direction,
                scale=scale,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    async def outpaint(
        self,
        *,
        job_id: str,
        image_no: int,
        scale: float,
        remix_prompt: str | None = None,
        callback: str | None = None,
    ) -> Job:
        """Zoom out: extend one image of a grid on all sides.

        A paid call: ``POST /api/v1/outpaint``, 80 points base; the keyword arguments are the fields
        of `OutpaintRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            scale: how many times larger the result is (1.1 to 2.0).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["outpaint"].build(
                job_id=job_id,
                image_no=image_no,
                scale=scale,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    async def inpaint(
        self,
        *,
        job_id: str,
        image_no: int,
        mask: Mask | None = None,
        remix_prompt: str | None = None,
        area: Polygon | None = None,
        callback: str | None = None,
    ) -> Job:
        """Repaint the masked region of one image of a grid.

        A paid call: ``POST /api/v1/inpaint``, 120 points base; the keyword arguments are the fields
        of `InpaintRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
                repainted); required unless the deprecated area is given.
            remix_prompt: a prompt that steers the result.
            area: deprecated by Legnext (a DeprecationWarning): use mask.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["inpaint"].build(
                job_id=job_id,
                image_no=image_no,
                mask=mask,
                remix_prompt=remix_prompt,
                area=area,
                callback=callback,
            )
        )

    async def remix(
        self,
        *,
        job_id: str,
        image_no: int,
        remix_prompt: str,
        mode: RemixMode | None = None,
        callback: str | None = None,
    ) -> Job:
        """Remix one image of a grid with a new prompt.

        A paid call: ``POST /api/v1/remix``, 120 points base; the keyword arguments are the fields
        of `RemixRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            remix_prompt: a prompt that steers the result.
            mode: how closely the result follows the new prompt.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["remix"].build(
                job_id=job_id,
                image_no=image_no,
                remix_prompt=remix_prompt,
                mode=mode,
                callback=callback,
            )
        )

    async def edit(
        self,
        *,
        job_id: str,
        image_no: int,
        canvas: Canvas,
        img_pos: ImagePosition,
        remix_prompt: str,
        callback: str | None = None,
    ) -> Job:
        """Reposition one image of a grid on a new canvas and repaint.

        A paid call: ``POST /api/v1/edit``, 120 points base; the keyword arguments are the fields of
        `EditRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            canvas: the size of the new canvas.
            img_pos: the size and position of the image on the canvas.
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["edit"].build(
                job_id=job_id,
                image_no=image_no,
                canvas=canvas,
                img_pos=img_pos,
                remix_prompt=remix_prompt,
                callback=callback,
            )
        )

    async def upload_paint(
        self,
        *,
        img_url: str,
        canvas: Canvas,
        img_pos: ImagePosition,
        remix_prompt: str,
        mask: Mask,
        callback: str | None = None,
    ) -> Job:
        """Place an uploaded image on a canvas and repaint the mask.

        A paid call: ``POST /api/v1/upload-paint``, 120 points base; the keyword arguments are the
        fields of `UploadPaintRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            canvas: the size of the new canvas.
            img_pos: the size and position of the image on the canvas.
            remix_prompt: a prompt that steers the result.
            mask: the region to repaint: `Mask(areas=[Polygon(...)])` or `Mask(url=...)` (white is
                repainted).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["upload_paint"].build(
                img_url=img_url,
                canvas=canvas,
                img_pos=img_pos,
                remix_prompt=remix_prompt,
                mask=mask,
                callback=callback,
            )
        )

    async def retexture(
        self, *, img_url: str, remix_prompt: str, callback: str | None = None
    ) -> Job:
        """Change the texture of an image, keeping its layout.

        A paid call: ``POST /api/v1/retexture``, 120 points base; the keyword arguments are the
        fields of `RetextureRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            remix_prompt: a prompt that steers the result.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["retexture"].build(
                img_url=img_url, remix_prompt=remix_prompt, callback=callback
            )
        )

    async def remove_background(self, *, img_url: str, callback: str | None = None) -> Job:
        """Remove the background of an image.

        A paid call: ``POST /api/v1/remove-background``, 80 points base; the keyword arguments are
        the fields of `RemoveBackgroundRequest`.

        Args:
            img_url: the http(s) URL of the image (at most 1024 characters).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["remove_background"].build(img_url=img_url, callback=callback)
        )

    async def enhance(self, *, job_id: str, image_no: int, callback: str | None = None) -> Job:
        """Enhance one image of a draft (--v 7 --draft) grid to full quality.

        A paid call: ``POST /api/v1/enhance``, 80 points base; the keyword arguments are the fields
        of `EnhanceRequest`.

        Args:
            job_id: the parent job's id.
            image_no: which image of the parent job (0 to 3).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["enhance"].build(job_id=job_id, image_no=image_no, callback=callback)
        )

    async def video_diffusion(
        self,
        *,
        job_id: str | None = None,
        image_no: int | None = None,
        prompt: str | None = None,
        video_type: VideoType | None = None,
        callback: str | None = None,
    ) -> Job:
        """Animate an image into 4 videos (1536 points for 720p).

        A paid call: ``POST /api/v1/video-diffusion``, 480 points base; the keyword arguments are
        the fields of `VideoDiffusionRequest`.

        Args:
            job_id: the id of the image job to animate (with image_no).
            image_no: which image of that job to animate (0 to 3).
            prompt: ``"<image url> <text>"``: the image to animate and how, instead of job_id and
                image_no.
            video_type: `VideoType.SD_480P` (the default) or `VideoType.HD_720P` (1536 points).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["video_diffusion"].build(
                job_id=job_id,
                image_no=image_no,
                prompt=prompt,
                video_type=video_type,
                callback=callback,
            )
        )

    async def extend_video(
        self, *, job_id: str, video_no: int, prompt: str | None = None, callback: str | None = None
    ) -> Job:
        """Extend one video of a video job (costs as its parent's quality).

        A paid call: ``POST /api/v1/extend-video``, 480 points base; the keyword arguments are the
        fields of `ExtendVideoRequest`.

        Args:
            job_id: the parent job's id.
            video_no: which video of the parent job (0 to 3).
            prompt: how the video goes on.
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["extend_video"].build(
                job_id=job_id, video_no=video_no, prompt=prompt, callback=callback
            )
        )

    async def video_upscale(
        self, *, job_id: str, video_no: int, callback: str | None = None
    ) -> Job:
        """Upscale one video of a video job.

        A paid call: ``POST /api/v1/video-upscale``, 480 points base; the keyword arguments are the
        fields of `VideoUpscaleRequest`.

        Args:
            job_id: the parent job's id.
            video_no: which video of the parent job (0 to 3).
            callback: an http(s) URL Legnext POSTs the job to when it finishes.

        Returns:
            The new job (status pending): pass it to `wait_for_job`.

        Raises:
            InvalidRequestError: a field breaks a rule (named with the rule); nothing was sent.
            OutcomeUnknownError: it was sent but the answer was lost; never retried blindly.
            LegnextAPIError: Legnext refused it (see its subclasses).
        """
        return await self.create(
            ENDPOINTS_BY_NAME["video_upscale"].build(
                job_id=job_id, video_no=video_no, callback=callback
            )
        )
