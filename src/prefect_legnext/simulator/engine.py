"""The simulator's state machine: jobs, their lifecycle, the points ledger and counters.

Everything here runs on the server's event loop, so no locks guard the job
table; only the rendering caches, filled from worker threads, take a lock.

Behaviour the vendor's texts fix is followed as written; every behaviour that is our
choice where they say nothing is marked "simulator decision (API.md)" below, and the
client and flows must keep working if the real service decides otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from PIL import Image

from prefect_legnext.core import models as m
from prefect_legnext.core.endpoints import (
    PER_IMAGE_ACTIONS,
    VENDOR_ACTION_KEYS,
    CreateEndpoint,
    OutputKind,
    ParentKind,
)
from prefect_legnext.core.errors import InvalidRequestError
from prefect_legnext.core.fetch import (
    REQUEST_HEADERS,
    Deadline,
    FetchLimits,
    length_mismatch,
    length_refusal,
    redact,
    redirect_target,
    scheme_refusal,
)
from prefect_legnext.core.responses import FINISHED_STATUSES, JobStatus
from prefect_legnext.simulator import images
from prefect_legnext.simulator.callbacks import CallbackSender
from prefect_legnext.simulator.config import Faults, SimulatorConfig

NOT_SET = "0001-01-01T00:00:00Z"  # the live service's "not set" timestamp (API.md)
MAX_SOURCE_BYTES = 10 * 1024 * 1024  # Legnext's documented input image limit (retexture page)
STAGED_SHARE = 0.05  # share of a job's duration spent in `staged`: simulator decision (API.md)


class SimulatorError(Exception):
    """An HTTP error answer: status and body (shape A unless a task object is given)."""

    def __init__(
        self, status: int, message: str, *, raw: str = "", body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {
            "code": status,
            "message": message,
            "raw_message": raw or message,
            "detail": None,
        }


def _now(offset: float = 0.0, whole_seconds: bool = False) -> str:
    # Legnext's samples show whole seconds ("2025-10-14T04:14:22Z").
    shape = "%Y-%m-%dT%H:%M:%SZ" if whole_seconds else "%Y-%m-%dT%H:%M:%S.%fZ"
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime(shape)


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass
class SimJob:
    job_id: str
    endpoint: CreateEndpoint
    request: m.LegnextRequest
    seed: int
    points: int
    kind: OutputKind
    parent: SimJob | None
    # What the images are drawn from: a reroll draws like its parent, with its own seed.
    render_endpoint: CreateEndpoint
    render_request: m.LegnextRequest
    status: JobStatus = JobStatus.PENDING
    created_at: str = field(default_factory=_now)
    started_at: str = NOT_SET
    ended_at: str = NOT_SET
    ended_monotonic: float | None = None
    fate: str = "complete"  # complete | fail | stuck
    error: dict[str, Any] | None = None
    sources: list[bytes] = field(default_factory=list)
    mask_source: bytes | None = None
    prompts: list[str] | None = None
    gets: int = 0
    consumed: int = 0

    @property
    def draft(self) -> bool:
        request = self.render_request
        return isinstance(request, m.DiffusionRequest) and request.is_enhanceable

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED)

    def image_count(self) -> int:
        return {OutputKind.GRID: 4, OutputKind.IMAGE: 1}.get(self.kind, 0)

    def video_count(self) -> int:
        return {OutputKind.VIDEO: 4, OutputKind.SINGLE_VIDEO: 1}.get(self.kind, 0)

    def available_actions(self) -> dict[str, list[int] | bool]:
        """The vendor sample's keys only. Which images each allows is a simulator decision
        (API.md): a grid allows every action on 0..3 and reroll, a single image every
        action on 0 and no reroll; video and text jobs list nothing (no vendor text shows
        their actions: extend-video and video-upscale are checked by `_parent_of`)."""
        if self.kind is OutputKind.GRID:
            actions: dict[str, list[int] | bool] = {a: [0, 1, 2, 3] for a in PER_IMAGE_ACTIONS}
            actions["reroll"] = True
            return actions
        if self.kind is OutputKind.IMAGE:
            return {**{a: [0] for a in PER_IMAGE_ACTIONS}, "reroll": False}
        return {}


class Engine:
    """Jobs, ledger, lifecycle and counters of one simulated Legnext account."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.base_url = ""
        self.jobs: dict[str, SimJob] = {}
        self.balance = config.points
        self.frozen = 0
        self._fault_rng = random.Random(config.seed)
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.callbacks: CallbackSender | None = None
        self._input_counts: dict[str, int] = {}
        self._render_lock = threading.Lock()
        self._images: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        # Counters for /_sim/stats.
        self.requests: dict[str, int] = {}
        self.jobs_created: dict[str, int] = {}
        self.rejected = 0
        self.duplicate_creates = 0
        self.duplicates: dict[str, int] = {}
        self.points_charged = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.running = 0
        self.peak_running = 0
        self.dropped_responses = 0
        self.injected_errors = 0  # 429 and 503 answers drawn from the fault table

    # -- lifecycle of the engine itself --------------------------------------------------

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._http = httpx.AsyncClient(timeout=30.0, follow_redirects=True)
        self.callbacks = CallbackSender(self._http, self.config, self._fault_rng)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- faults and counters -------------------------------------------------------------

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1

    def _now(self) -> str:
        return _now(self.config.clock_offset, self.config.whole_second_timestamps)

    def faults(self, endpoint: str) -> Faults:
        return self.config.faults_for(endpoint)

    def draw(self, rate: float) -> bool:
        return rate > 0 and self._fault_rng.random() < rate

    # -- creates -------------------------------------------------------------------------

    def create(self, endpoint: CreateEndpoint, raw: bytes) -> SimJob:
        """Validate, check parent, moderation and points, then freeze points and queue.

        Raises:
            SimulatorError: with Legnext's status and body shape for the refusal.
        """
        try:
            # The client's own models, read strictly as JSON: a body breaking the vendor's
            # schema (explicit nulls included) is a 400 in shape A with the vendor's message.
            # Refusing unknown keys is a simulator decision (API.md); the deprecated inpaint
            # `area` is accepted (the vendor documents it) and read as `mask`.
            request = endpoint.parse_json(raw)
        except InvalidRequestError as exc:
            raise SimulatorError(400, "Invalid request parameters", raw=str(exc)) from None
        self._moderate(endpoint, request)
        parent = self._parent_of(endpoint, request)
        render_endpoint, render_request = endpoint, request
        kind = endpoint.output
        if endpoint.parent is ParentKind.JOB and parent is not None:  # reroll
            render_endpoint, render_request = parent.render_endpoint, parent.render_request
            kind = parent.kind
        points = endpoint.cost(request, parent.points if parent else None)
        if self.balance - self.frozen < points:
            raise SimulatorError(
                402,
                "Insufficient points",
                raw=f"needs {points} points, {self.balance - self.frozen} available",
            )
        wire = request.to_wire()
        wire.pop("callback", None)
        input_key = json.dumps([endpoint.name, wire], sort_keys=True)
        seen = self._input_counts.get(input_key, 0)
        self._input_counts[input_key] = seen + 1
        if seen:
            self.duplicate_creates += 1
            self.duplicates[endpoint.name] = self.duplicates.get(endpoint.name, 0) + 1
        job = SimJob(
            job_id=str(uuid.uuid4()),
            created_at=self._now(),
            endpoint=endpoint,
            request=request,
            seed=_stable_seed(self.config.seed, input_key, seen),
            points=points,
            kind=kind,
            parent=parent,
            render_endpoint=render_endpoint,
            render_request=render_request,
        )
        faults = self.faults(endpoint.name)
        if self.draw(faults.job_failure_rate):
            job.fate = "fail"
        elif self.draw(faults.stuck_rate):
            job.fate = "stuck"
        self.jobs[job.job_id] = job
        self.frozen += points
        self.jobs_created[endpoint.name] = self.jobs_created.get(endpoint.name, 0) + 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.spawn(self._run(job))
        return job

    def _moderate(self, endpoint: CreateEndpoint, request: m.LegnextRequest) -> None:
        # simulator decision (API.md): a banned word is refused at submit with 403 and a
        # failed task object (body shape B), error code 10003, no points frozen.
        texts = [getattr(request, name, None) for name in ("text", "prompt", "remix_prompt")]
        joined = " ".join(t for t in texts if isinstance(t, str)).lower()
        for word in self.config.banned_words:
            if word.lower() in joined:
                job = SimJob(
                    job_id=str(uuid.uuid4()),
                    created_at=self._now(),
                    endpoint=endpoint,
                    request=request,
                    seed=0,
                    points=0,
                    kind=endpoint.output,
                    parent=None,
                    render_endpoint=endpoint,
                    render_request=request,
                    status=JobStatus.FAILED,
                    error={
                        "code": 10003,
                        "raw_message": "Banned prompt detected",
                        "message": "sensitive content: your prompt was rejected by moderation",
                        "detail": None,
                    },
                )
                self.jobs[job.job_id] = job
                self.rejected += 1
                raise SimulatorError(403, "sensitive content", body=self.task_object(job))

    def _parent_of(self, endpoint: CreateEndpoint, request: m.LegnextRequest) -> SimJob | None:
        job_id = getattr(request, "job_id", None)
        if job_id is None:
            return None
        parent = self.jobs.get(job_id)
        if parent is None:
            raise SimulatorError(404, "Job not found", raw=f"job {job_id} does not exist")
        if parent.status is not JobStatus.COMPLETED:
            # simulator decision (API.md): a follow-up needs a completed parent.
            raise SimulatorError(
                400,
                "Invalid request parameters",
                raw=f"job {job_id} is {parent.status}, not completed",
            )
        number = getattr(request, "image_no", None)
        if number is None:
            number = getattr(request, "video_no", None)
        actions = parent.available_actions()
        if endpoint.name == "enhance" and not parent.draft:
            # The vendor's rule (enhance page): the parent's prompt had --v 7 --draft.
            raise SimulatorError(
                400,
                "Invalid request parameters",
                raw="enhance needs a draft parent: its prompt must contain --v 7 --draft",
            )
        if endpoint.parent is ParentKind.JOB:
            allowed = actions.get("reroll") is True
        elif endpoint.action in VENDOR_ACTION_KEYS:
            permitted = actions.get(endpoint.action)
            allowed = isinstance(permitted, list) and number in permitted
        elif endpoint.parent is ParentKind.VIDEO:
            # simulator decision (API.md): extend-video and video-upscale take any video
            # of a video job (no vendor text lists video actions).
            allowed = number is not None and number < parent.video_count()
        else:
            # simulator decision (API.md): enhance (on a draft parent, checked above) and
            # video-diffusion take any image of an image job.
            allowed = number is not None and number < parent.image_count()
        if not allowed:
            raise SimulatorError(
                400,
                "Invalid request parameters",
                raw=f"{endpoint.name} is not available on job {job_id}"
                + (f" image/video {number}" if number is not None else ""),
            )
        return parent

    # -- job lifecycle -------------------------------------------------------------------

    async def _run(self, job: SimJob) -> None:
        # Durations: API.md's typical range times the time scale, drawn from the job's
        # seed; at most `concurrency` jobs run, the rest wait in `pending` (API.md).
        assert self._slots is not None
        low, high = job.endpoint.typical_seconds
        duration = random.Random(job.seed).uniform(low, high) * self.config.time_scale
        async with self._slots:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            try:
                job.started_at = self._now()
                self._set_status(job, JobStatus.STAGED)
                await asyncio.sleep(duration * STAGED_SHARE)
                self._set_status(job, JobStatus.PROCESSING)
                started = time.monotonic()
                problem = await self._fetch_inputs(job)
                if job.fate == "stuck":
                    self.in_flight -= 1  # stays `processing` for ever, holding no slot
                    return
                await asyncio.sleep(
                    max(0.0, duration * (1 - STAGED_SHARE) - (time.monotonic() - started))
                )
            finally:
                self.running -= 1
        if problem is None and job.fate == "fail":
            # simulator decision (API.md): the error code and text of an injected failure.
            problem = (10001, "Upstream generation failed", "the job failed (injected fault)")
        self._finish(job, problem)

    def _finish(self, job: SimJob, problem: tuple[int, str, str] | None) -> None:
        # Points frozen at submit are consumed on completion and released on failure
        # (API.md): a failed job keeps `consume` at 0.
        self.frozen -= job.points
        if problem is None:
            if job.kind is OutputKind.TEXT:
                job.prompts = self._prompts(job)
            self.balance -= job.points
            self.points_charged += job.points
            job.consumed = job.points
            job.status = JobStatus.COMPLETED
        else:
            code, message, raw = problem
            job.error = {"code": code, "message": message, "raw_message": raw, "detail": None}
            job.status = JobStatus.FAILED
        job.ended_at = self._now()
        job.ended_monotonic = time.monotonic()
        self.in_flight -= 1
        self._notify(job)

    def _set_status(self, job: SimJob, status: JobStatus) -> None:
        job.status = status
        self._notify(job)

    def _notify(self, job: SimJob) -> None:
        callback = job.request.callback
        if callback and self.callbacks is not None:
            faults = self.faults(job.endpoint.name)
            self.callbacks.notify(
                job.job_id, callback, self.task_object(job), faults,
                final=job.status in FINISHED_STATUSES, spawn=self.spawn,
            )  # fmt: skip

    async def _fetch_inputs(self, job: SimJob) -> tuple[int, str, str] | None:
        """Download input images as Legnext would, when the job starts processing."""
        request = job.render_request
        urls: list[str] = []
        if isinstance(request, m.BlendRequest):
            urls = list(request.img_urls)
        elif isinstance(
            request,
            m.DescribeRequest
            | m.RetextureRequest
            | m.RemoveBackgroundRequest
            | m.UploadPaintRequest,
        ):
            urls = [request.img_url]
        elif isinstance(request, m.VideoDiffusionRequest) and request.job_id is None:
            assert request.prompt is not None
            urls = [request.prompt.split(maxsplit=1)[0]]
        mask = getattr(request, "mask", None)
        if job.parent is not None and request is job.parent.render_request:
            # A reroll draws from its parent's inputs, already fetched.
            job.sources, job.mask_source = job.parent.sources, job.parent.mask_source
            return None
        try:
            job.sources = [await self._download(url) for url in urls]
            if isinstance(mask, m.Mask) and mask.url is not None:
                job.mask_source = await self._download(mask.url)
        except _FetchError as exc:
            # simulator decision (API.md): an unfetchable input fails the job (code 10002).
            return (10002, "Failed to fetch input image", str(exc))
        return None

    async def _download(self, url: str) -> bytes:
        if self.base_url and url.startswith(self.base_url + "/cdn/"):
            found = await self.file(url[len(self.base_url) :])
            if found is None:
                raise _FetchError(f"{redact(url)}: HTTP 404")
            return found[0]
        # Bounded like the client's downloads (core.fetch): an input URL may point
        # anywhere and send anything, and must not hang or fill the simulator.
        limits = FetchLimits(max_bytes=MAX_SOURCE_BYTES, timeout=self.config.input_timeout)
        deadline = Deadline(limits.timeout)
        try:
            data = await self._fetch(url, limits, deadline)
        except httpx.HTTPError as exc:
            if deadline.expired:
                raise _FetchError(_too_slow(url, limits)) from exc
            raise _FetchError(f"{redact(url)}: {type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:
            raise _FetchError(f"{redact(url)}: {exc}") from exc
        try:
            images.from_bytes(data)
        except Exception:  # Pillow raises many types for non-images
            raise _FetchError(f"{redact(url)}: not an image") from None
        return data

    async def _fetch(self, url: str, limits: FetchLimits, deadline: Deadline) -> bytes:
        """The body at `url` after at most `limits.max_redirects` redirects, each target
        checked to be http(s) before it is requested."""
        assert self._http is not None
        for _ in range(limits.max_redirects + 1):
            refusal = scheme_refusal(url)
            if refusal is not None:
                raise _FetchError(refusal)
            if deadline.expired:
                raise _FetchError(_too_slow(url, limits))
            async with self._http.stream(
                "GET", url, headers=REQUEST_HEADERS, follow_redirects=False,
                timeout=deadline.timeout(self._http.timeout),
            ) as response:  # fmt: skip
                target = redirect_target(response)
                if target is None:
                    return await _read_input(response, url, limits, deadline)
            url = target
        raise _FetchError(f"{redact(url)}: more than {limits.max_redirects} redirects")

    def _prompts(self, job: SimJob) -> list[str]:
        request = job.render_request
        if isinstance(request, m.ShortenRequest):
            return images.shorten(request.prompt)
        return images.describe(images.from_bytes(job.sources[0]), job.seed)

    # -- reads ---------------------------------------------------------------------------

    def get(self, job_id: str) -> SimJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise SimulatorError(404, "Job not found", raw=f"job {job_id} does not exist")
        job.gets += 1
        return job

    def task_object(self, job: SimJob, *, created_answer: bool = False) -> dict[str, Any]:
        # The vendor samples' shape, key for key; `task_type` underscored and timestamps
        # not yet set as NOT_SET: simulator decision (API.md). A create's answer has all
        # three blank (""), as in the vendor's create samples (seeds 000, 003): clients
        # meet both forms of "not set".
        output: dict[str, Any] = {"image_url": "", "image_urls": None, "seed": ""}
        if job.status is JobStatus.COMPLETED:
            output = self._output(job)
        return {
            "job_id": job.job_id,
            "model": "midjourney",
            "task_type": job.endpoint.task_type,
            "status": str(job.status),
            "config": {
                "service_mode": "public",
                "webhook_config": {"endpoint": job.request.callback or "", "secret": ""},
            },
            "input": None,
            "output": output,
            "meta": {
                "created_at": "" if created_answer else job.created_at,
                "started_at": "" if created_answer else job.started_at,
                "ended_at": "" if created_answer else job.ended_at,
                "usage": {"type": "point", "frozen": job.points, "consume": job.consumed},
            },
            "detail": None,
            "logs": [],
            "error": job.error or {"code": 0, "raw_message": "", "message": "", "detail": None},
        }

    def _output(self, job: SimJob) -> dict[str, Any]:
        # URL layout under /cdn, `video_urls` and `prompts`: simulator decision (API.md).
        base = f"{self.base_url}/cdn"
        output: dict[str, Any] = {
            "seed": str(job.seed),
            "available_actions": job.available_actions(),
        }
        count = job.image_count()
        if job.kind is OutputKind.GRID:
            output["image_url"] = f"{base}/temp/{job.job_id}.png"
            output["image_urls"] = [f"{base}/mj/{job.job_id}_{i}.png" for i in range(count)]
        elif job.kind is OutputKind.IMAGE:
            output["image_url"] = f"{base}/mj/{job.job_id}_0.png"
            output["image_urls"] = [output["image_url"]]
        elif job.video_count():
            output["image_url"] = ""
            output["image_urls"] = None
            output["video_urls"] = [
                f"{base}/video/{job.job_id}_{i}.mp4" for i in range(job.video_count())
            ]
        else:
            output["image_url"] = ""
            output["image_urls"] = None
            output["prompts"] = job.prompts or []
        return output

    # -- files ---------------------------------------------------------------------------

    async def file(self, path: str) -> tuple[bytes, str] | None:
        """Bytes and content type for ``/cdn/...``, or None when unknown or expired."""
        parsed = _parse_file_path(path)
        if parsed is None:
            return None
        job_id, index, suffix = parsed
        job = self.jobs.get(job_id)
        if job is None or job.status is not JobStatus.COMPLETED or job.ended_monotonic is None:
            return None
        if time.monotonic() - job.ended_monotonic > self.config.output_ttl:
            return None  # expired: simulator decision (API.md), a configurable time
        if suffix == "mp4":
            if index is None or index >= job.video_count():
                return None
            return images.video(job.seed + index, self.config.video_bytes), "video/mp4"
        if index is not None and index >= job.image_count():
            return None
        if index is None and job.kind is not OutputKind.GRID:
            return None
        with self._render_lock:
            cached = self._files.get(path)
            if cached is not None:
                self._files.move_to_end(path)
                return cached
        data = await asyncio.to_thread(self._render_file, job, index)
        with self._render_lock:
            self._files[path] = (data, "image/png")
            while len(self._files) > 64:
                self._files.popitem(last=False)
        return data, "image/png"

    def _render_file(self, job: SimJob, index: int | None) -> bytes:
        if index is None:
            return images.to_png(images.grid([self.image(job, i) for i in range(4)]))
        return images.to_png(self.image(job, index))

    def image(self, job: SimJob, index: int) -> Image.Image:
        """Image `index` of a completed job, drawn on demand and kept in a small LRU."""
        key = (job.job_id, index)
        with self._render_lock:
            cached = self._images.get(key)
            if cached is not None:
                self._images.move_to_end(key)
                return cached
        image = self._draw(job, index)
        with self._render_lock:
            self._images[key] = image
            while len(self._images) > 48:
                self._images.popitem(last=False)
        return image

    def _draw(self, job: SimJob, index: int) -> Image.Image:
        # Deterministic PNGs that show what each action did: simulator decision (API.md).
        request = job.render_request
        seed = job.seed * 4 + index
        side = self.config.image_size
        sources = [images.from_bytes(s) for s in job.sources]
        if isinstance(request, m.BlendRequest):
            width, height = _ASPECTS[request.aspect_ratio]
            size = (side * width // max(width, height), side * height // max(width, height))
            return images.variation(images.blend(sources, size), seed, strong=False)
        if isinstance(request, m.RetextureRequest):
            return images.retexture(sources[0], seed)
        if isinstance(request, m.RemoveBackgroundRequest):
            return images.remove_background(sources[0])
        if isinstance(request, m.UploadPaintRequest):
            placed = images.place(sources[0], _canvas(request), _box(request), seed)
            return images.inpaint(placed, self._mask(request.mask, job, placed.size), seed)
        if job.parent is None:  # diffusion, and video or text jobs drawn as a poster
            return images.generate(seed, (side, side))
        source = self.image(job.parent, getattr(request, "image_no", 0) or 0)
        if isinstance(request, m.VariationRequest):
            return images.variation(source, seed, strong=request.type is m.VariationType.STRONG)
        if isinstance(request, m.UpscaleRequest):
            return images.upscale(source, request.type is m.UpscaleType.CREATIVE, seed)
        if isinstance(request, m.PanRequest):
            return images.pan(source, int(request.direction), request.scale, seed)
        if isinstance(request, m.OutpaintRequest):
            return images.outpaint(source, request.scale, seed)
        if isinstance(request, m.InpaintRequest):
            # A deprecated `area` arrives already turned into `mask` by the model.
            return images.inpaint(source, self._mask(request.mask, job, source.size), seed)
        if isinstance(request, m.RemixRequest):
            strong = request.mode is not m.RemixMode.SUBTLE
            return images.variation(source, seed, strong=strong)
        if isinstance(request, m.EditRequest):
            return images.place(source, _canvas(request), _box(request), seed)
        return images.enhance(source, seed)

    def _mask(self, mask: m.Mask | None, job: SimJob, size: tuple[int, int]) -> Image.Image:
        if mask is not None and mask.url is not None:
            assert job.mask_source is not None
            return images.image_mask(images.from_bytes(job.mask_source), size)
        polygons = list(mask.areas or []) if mask is not None else []
        return images.polygon_mask(size, [(p.width, p.height, p.points) for p in polygons])

    # -- account -------------------------------------------------------------------------

    def balance_body(self) -> dict[str, Any]:
        available = self.balance - self.frozen
        usd = round(self.balance / 1000, 3)
        return {
            "code": 200,
            "message": "success",
            "data": {
                "account_id": 1,
                "balance_usd": usd,
                "available_credits": available,
                "available_points": available,
                "alert_threshold": 10,
                "low_balance_alert": usd < 10,
                "updated_at": self._now(),
            },
        }

    def active_tasks_body(self) -> dict[str, Any]:
        # Loosely specified by the vendor; `progress` 0/50: simulator decision (API.md).
        active = [j for j in self.jobs.values() if not j.finished]
        return {
            "code": 200,
            "message": "success",
            "data": {
                "account_id": "00000000-0000-4000-8000-000000000001",
                "total_active": len(active),
                "concurrent_limit": self.config.concurrency,
                "tasks": [
                    {
                        "job_id": j.job_id,
                        "task_type": j.endpoint.task_type,
                        "status": str(j.status),
                        "created_at": j.created_at,
                        "progress": 50 if j.status is JobStatus.PROCESSING else 0,
                        "estimated_time": None,
                    }
                    for j in active
                ],
                "updated_at": self._now(),
            },
        }

    def stats(self) -> dict[str, Any]:
        gets = [j.gets for j in self.jobs.values()]
        return {
            "requests": dict(self.requests),
            "jobs_created": dict(self.jobs_created),
            "jobs_total": sum(self.jobs_created.values()),
            "jobs_by_status": _count_by(str(j.status) for j in self.jobs.values()),
            "rejected_by_moderation": self.rejected,
            "duplicate_creates": self.duplicate_creates,
            "duplicates_by_endpoint": dict(self.duplicates),
            "gets_per_job": {j.job_id: j.gets for j in self.jobs.values()},
            "gets_per_job_max": max(gets, default=0),
            "points": {
                "starting": self.config.points,
                "balance": self.balance,
                "frozen": self.frozen,
                "available": self.balance - self.frozen,
                "charged": self.points_charged,
            },
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "running": self.running,
            "peak_running": self.peak_running,
            "dropped_responses": self.dropped_responses,
            "injected_errors": self.injected_errors,
            "callbacks": self.callbacks.stats() if self.callbacks else {},
        }


class _FetchError(Exception):
    pass


async def _read_input(
    response: httpx.Response, url: str, limits: FetchLimits, deadline: Deadline
) -> bytes:
    """An input's body, cut off past the byte or time limit."""
    if response.status_code != 200:
        raise _FetchError(f"{redact(url)}: HTTP {response.status_code}")
    refusal = length_refusal(response, limits.max_bytes)
    if refusal is not None:
        raise _FetchError(f"{redact(url)}: {refusal}")
    data = bytearray()
    async for chunk in response.aiter_bytes():  # as they arrive: limits checked per read
        data.extend(chunk)
        if len(data) > limits.max_bytes:
            raise _FetchError(f"{redact(url)}: larger than {limits.max_bytes} bytes")
        if deadline.expired:
            raise _FetchError(_too_slow(url, limits))
    mismatch = length_mismatch(response)
    if mismatch is not None:
        raise _FetchError(f"{redact(url)}: {mismatch}")
    return bytes(data)


def _too_slow(url: str, limits: FetchLimits) -> str:
    return f"{redact(url)}: took longer than {limits.timeout:g}s"


_ASPECTS = {"2:3": (2, 3), "1:1": (1, 1), "3:2": (3, 2)}


def _canvas(request: m.EditRequest | m.UploadPaintRequest) -> tuple[int, int]:
    return (request.canvas.width, request.canvas.height)


def _box(request: m.EditRequest | m.UploadPaintRequest) -> tuple[int, int, int, int]:
    pos = request.img_pos
    return (pos.width, pos.height, pos.x, pos.y)


def _count_by(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _parse_file_path(path: str) -> tuple[str, int | None, str] | None:
    """``/cdn/mj/{id}_{n}.png``, ``/cdn/temp/{id}.png`` or ``/cdn/video/{id}_{n}.mp4``."""
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "cdn":
        return None
    folder, name = parts[1], parts[2]
    stem, _, suffix = name.rpartition(".")
    if folder == "temp" and suffix == "png":
        return stem, None, suffix
    job_id, _, number = stem.rpartition("_")
    if folder in ("mj", "video") and number.isdigit() and suffix in ("png", "mp4"):
        if (folder == "video") != (suffix == "mp4"):
            return None
        return job_id, int(number), suffix
    return None
