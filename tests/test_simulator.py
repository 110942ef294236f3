"""The simulator behaves like Legnext: every endpoint, lifecycle, ledger, parent rules,
moderation, output files, callbacks, faults and introspection."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops
from pydantic import SecretStr, ValidationError

from prefect_legnext import (
    BadRequestError,
    ContentRejectedError,
    InsufficientPointsError,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
)
from prefect_legnext.cli import parse_faults
from prefect_legnext.core.endpoints import CREATE_ENDPOINTS
from prefect_legnext.core.models import Mask, Polygon
from prefect_legnext.simulator import Faults, LegnextSimulator, SimulatorConfig
from prefect_legnext.simulator.images import BLOCK, polygon_mask
from prefect_legnext.testing import async_legnext_client_for, legnext_client_for

DRAFT = "a lighthouse at dawn --v 7 --draft"
QUICK_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01, max_total=5)


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.content


def picture(url: str) -> Image.Image:
    return Image.open(io.BytesIO(download(url))).convert("RGB")


def test_client_drives_every_endpoint(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    done: dict[str, Any] = {}
    with legnext_client_for(sim) as client:

        def run(name: str, **fields: Any) -> Any:
            job = client.wait_for_job(getattr(client, name)(**fields))
            assert job.status is JobStatus.COMPLETED, name
            assert job.task_type == name
            done[name] = job
            return job

        draft = run("diffusion", text=DRAFT)
        url = draft.output.image_urls[0]
        square = Polygon(width=512, height=512, points=[100, 100, 300, 100, 300, 300, 100, 300])
        run("variation", job_id=draft.job_id, image_no=1, type=1, remix_prompt="stormy")
        run("upscale", job_id=draft.job_id, image_no=2, type=0)
        run("reroll", job_id=draft.job_id)
        run("blend", img_urls=draft.output.image_urls[:3], aspect_ratio="3:2")
        run("describe", img_url=url)
        run("shorten", prompt="a very long and rather verbose prompt about a lighthouse --ar 2:3")
        run("pan", job_id=draft.job_id, image_no=0, direction=1, scale=1.5)
        run("outpaint", job_id=draft.job_id, image_no=0, scale=1.3, remix_prompt="sea")
        run("inpaint", job_id=draft.job_id, image_no=0, mask=Mask(areas=[square]))
        run("remix", job_id=draft.job_id, image_no=3, remix_prompt="at night", mode=1)
        run(
            "edit",
            job_id=draft.job_id,
            image_no=0,
            canvas={"width": 1024, "height": 1024},
            img_pos={"width": 512, "height": 512, "x": 256, "y": 256},
            remix_prompt="a wide shore",
        )
        run(
            "upload_paint",
            img_url=url,
            canvas={"width": 1024, "height": 1024},
            img_pos={"width": 512, "height": 512, "x": 0, "y": 0},
            remix_prompt="fill the rest",
            mask=Mask(areas=[square]),
        )
        run("retexture", img_url=url, remix_prompt="oil painting")
        run("remove_background", img_url=url)
        run("enhance", job_id=draft.job_id, image_no=0)
        video = run("video_diffusion", job_id=draft.job_id, image_no=0, video_type=0)
        run("extend_video", job_id=video.job_id, video_no=1, prompt="and then it rains")
        run("video_upscale", job_id=video.job_id, video_no=2)
        prompt_video = client.wait_for_job(
            client.video_diffusion(prompt=f"{url} waves crashing", video_type=1)
        )
        assert prompt_video.points == 1536

        assert set(done) == {e.name for e in CREATE_ENDPOINTS}
        assert len(done["diffusion"].output.image_urls) == 4
        assert len(done["upscale"].output.image_urls) == 1
        assert picture(done["upscale"].output.image_urls[0]).size == (1024, 1024)
        assert done["reroll"].points == draft.points == 40
        assert len(done["describe"].output.prompts) == 4
        assert done["shorten"].output.prompts[0].startswith("a very long")
        assert len(done["video_diffusion"].output.video_urls) == 4
        assert len(done["video_upscale"].output.video_urls) == 1
        assert len(download(done["extend_video"].output.video_urls[3])) == sim.config.video_bytes
        cutout = Image.open(io.BytesIO(download(done["remove_background"].output.image_urls[0])))
        assert cutout.mode == "RGBA" and cutout.getextrema()[3] == (0, 255)

        spent = sum(job.points for job in done.values()) + prompt_video.points
        balance = client.balance()
        assert balance.available_points == sim.config.points - spent
        assert client.account_info().email == "simulator@localhost"
        assert client.active_tasks().total_active == 0
    stats = sim.stats()
    assert stats["points"]["charged"] == spent
    assert stats["jobs_total"] == len(done) + 1
    assert stats["duplicate_creates"] == 0


async def test_async_client_against_simulator(legnext_simulator: LegnextSimulator) -> None:
    async with async_legnext_client_for(legnext_simulator) as client:
        job = await client.wait_for_job(await client.diffusion(text="an async fox"))
        assert job.is_completed
        assert (await client.get_job(job.job_id)).output_urls == job.output_urls
        assert (await client.balance()).available_points == legnext_simulator.config.points - 80


def test_lifecycle_passes_through_every_status(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    sim = legnext_simulator_factory(time_scale=0.02)  # diffusion takes 0.6..1.8 s
    seen: list[str] = []
    with legnext_client_for(sim) as client:
        job = client.diffusion(text="slow enough to watch")
        seen.append(job.status)
        deadline = time.monotonic() + 10
        while not job.is_finished and time.monotonic() < deadline:
            job = client.get_job(job.job_id)
            if job.status != seen[-1]:
                seen.append(job.status)
            time.sleep(0.002)
    assert seen == ["pending", "staged", "processing", "completed"]
    assert job.meta.started_at is not None and job.meta.ended_at is not None
    assert job.meta.created_at <= job.meta.started_at <= job.meta.ended_at
    raw = httpx.get(
        f"{sim.base_url}/api/v1/job/{job.job_id}", headers={"x-api-key": sim.api_key}
    ).json()
    assert raw["task_type"] == "diffusion" and raw["meta"]["usage"]["consume"] == 80


def test_concurrency_cap_queues_extra_jobs(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    sim = legnext_simulator_factory(concurrency=3, time_scale=0.01)
    with legnext_client_for(sim) as client:
        jobs = [client.diffusion(text=f"queued {i}") for i in range(9)]
        statuses = [client.get_job(j.job_id).status for j in jobs]
        assert statuses.count("pending") >= 6  # at most 3 run, the rest wait
        active = client.active_tasks()
        assert active.concurrent_limit == 3 and active.total_active == 9
        for job in jobs:
            assert client.wait_for_job(job).is_completed
    stats = sim.stats()
    assert stats["peak_running"] == 3
    assert stats["peak_in_flight"] == 9
    assert stats["in_flight"] == 0


def test_points_frozen_consumed_and_released(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    sim = legnext_simulator_factory(points=300, time_scale=0.005)
    with legnext_client_for(sim) as client:
        first = client.diffusion(text="costs eighty")
        assert first.meta.usage.frozen == 80 and first.meta.usage.consume == 0
        assert client.balance().available_points == 220  # frozen at submit
        client.wait_for_job(first)
        assert client.balance().available_points == 220  # consumed on completion
        assert sim.stats()["points"]["balance"] == 220

        sim.set_faults({"diffusion": {"job_failure_rate": 1.0}})
        failing = client.diffusion(text="will fail")
        assert client.balance().available_points == 140
        with pytest.raises(JobFailedError) as failed:
            client.wait_for_job(failing)
        assert failed.value.code == 10001
        assert client.balance().available_points == 220  # released on failure
        gone = failed.value.job
        assert gone is not None and gone.is_failed
        assert (gone.meta.usage.frozen, gone.meta.usage.consume) == (80, 0)
        assert gone.points == gone.points_charged == gone.points_held == 0
        sim.set_faults({})

        client.diffusion(text="one more", callback=None)
        client.diffusion(text="and another")  # 220 - 160 = 60 left
        with pytest.raises(InsufficientPointsError) as refused:
            client.diffusion(text="one too many")
        assert refused.value.status_code == 402
    assert sim.stats()["jobs_total"] == 4


def test_parent_rules(legnext_simulator: LegnextSimulator) -> None:
    with legnext_client_for(legnext_simulator) as client:
        plain = client.wait_for_job(client.diffusion(text="not a draft --v 7"))
        with pytest.raises(BadRequestError, match="draft"):
            client.enhance(job_id=plain.job_id, image_no=0)
        upscaled = client.wait_for_job(client.upscale(job_id=plain.job_id, image_no=0, type=0))
        assert upscaled.output.available_actions["variation"] == [0]
        with pytest.raises(BadRequestError, match="not available"):
            client.variation(job_id=upscaled.job_id, image_no=2, type=0)
        with pytest.raises(BadRequestError, match="not available"):
            client.reroll(job_id=upscaled.job_id)
        with pytest.raises(NotFoundError):
            client.upscale(job_id="3c90c3cc-0d44-4b50-8888-8dd25736052a", image_no=0, type=0)
        running = client.diffusion(text="still running")
        with pytest.raises(BadRequestError, match="not completed"):
            client.upscale(job_id=running.job_id, image_no=0, type=0)
        with pytest.raises(BadRequestError, match="not available"):
            client.extend_video(job_id=plain.job_id, video_no=0)
    assert legnext_simulator.stats()["jobs_total"] == 3


def test_moderation_refuses_with_a_failed_task(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    sim = legnext_simulator_factory(banned_words=["dragon"])
    with legnext_client_for(sim) as client, pytest.raises(ContentRejectedError) as refused:
        client.diffusion(text="A Dragon over the sea")
    assert refused.value.status_code == 403
    job = refused.value.job
    assert job is not None and job.is_failed and job.error.code == 10003
    assert sim.stats()["points"]["available"] == sim.config.points


def test_wrong_key_is_401_and_not_echoed(legnext_simulator: LegnextSimulator) -> None:
    answer = httpx.post(
        f"{legnext_simulator.base_url}/api/v1/diffusion",
        json={"text": "x"},
        headers={"x-api-key": "wrong-key-123"},
    )
    assert answer.status_code == 401
    assert answer.json()["code"] == 401
    assert "wrong-key-123" not in answer.text and legnext_simulator.api_key not in answer.text


def test_inpaint_changes_only_the_masked_pixels(legnext_simulator: LegnextSimulator) -> None:
    with legnext_client_for(legnext_simulator) as client:
        parent = client.wait_for_job(client.diffusion(text="a quiet harbour"))
        # A triangle given on a 1024 px canvas: the simulator scales it to its 512 px images.
        triangle = Polygon(width=1024, height=1024, points=[200, 200, 800, 300, 400, 900])
        job = client.wait_for_job(
            client.inpaint(
                job_id=parent.job_id, image_no=2, mask=Mask(areas=[triangle]), remix_prompt="a boat"
            )
        )
    before = picture(parent.output.image_urls[2])
    mask = polygon_mask(before.size, [(1024, 1024, triangle.points)])
    inside = sum(1 for v in mask.get_flattened_data() if v)
    assert 0 < inside < before.width * before.height
    for url in job.output.image_urls:
        after = picture(url)
        assert after.size == before.size
        changed = ImageChops.difference(before, after).convert("L").point(lambda v: 255 if v else 0)
        outside_changes = ImageChops.multiply(changed, ImageChops.invert(mask))
        inside_changes = ImageChops.multiply(changed, mask)
        assert outside_changes.getbbox() is None, "a pixel outside the mask changed"
        assert sum(1 for v in inside_changes.get_flattened_data() if v) == inside


def test_inpaint_with_a_mask_image_url(legnext_simulator: LegnextSimulator) -> None:
    with legnext_client_for(legnext_simulator) as client:
        parent = client.wait_for_job(client.diffusion(text="a field"))
        # Use another job's grid as a "mask": white pixels there are repainted.
        job = client.wait_for_job(
            client.inpaint(job_id=parent.job_id, image_no=0, mask=Mask(url=parent.output.image_url))
        )
    assert job.is_completed and len(job.output.image_urls) == 4


def _block_means(image: Image.Image) -> list[tuple[int, int, int]]:
    cells = (image.width // BLOCK, image.height // BLOCK)
    return list(image.resize(cells, Image.Resampling.BOX).get_flattened_data())


def test_retexture_keeps_layout_and_changes_texture(legnext_simulator: LegnextSimulator) -> None:
    with legnext_client_for(legnext_simulator) as client:
        parent = client.wait_for_job(client.diffusion(text="a mountain village"))
        source_url = parent.output.image_urls[1]
        job = client.wait_for_job(client.retexture(img_url=source_url, remix_prompt="as marble"))
    source = picture(source_url)
    layout = _block_means(source)
    for url in job.output.image_urls:
        result = picture(url)
        assert result.size == source.size
        means = _block_means(result)
        # Layout: every 16x16 block keeps its mean colour (clamped by at most the amplitude).
        worst = max(
            abs(a - b)
            for pa, pb in zip(layout, means, strict=True)
            for a, b in zip(pa, pb, strict=True)
        )
        average = sum(
            abs(a - b)
            for pa, pb in zip(layout, means, strict=True)
            for a, b in zip(pa, pb, strict=True)
        ) / (3 * len(layout))
        assert average < 2.0 and worst <= 45
        # Texture: pixels differ a lot from the source.
        diff = ImageChops.difference(source, result).convert("L")
        mean_diff = sum(diff.get_flattened_data()) / (diff.width * diff.height)
        assert mean_diff > 10


def test_outputs_are_deterministic_and_expire(
    legnext_simulator_factory: Callable[..., LegnextSimulator],
) -> None:
    first = legnext_simulator_factory(output_ttl=0.5)
    second = legnext_simulator_factory(output_ttl=60)
    hashes = []
    for sim in (first, second):
        with legnext_client_for(sim) as client:
            job = client.wait_for_job(client.diffusion(text="same inputs, same pixels"))
        hashes.append(hashlib.sha256(download(job.output.image_urls[0])).hexdigest())
        if sim is first:
            expired_url = job.output.image_urls[0]
            expired_at = job.meta.ended_at
    assert hashes[0] == hashes[1]
    assert expired_at is not None
    time.sleep(0.6)
    assert httpx.get(expired_url).status_code == 404
    # The job record stays readable after its files expire.
    with legnext_client_for(first) as client:
        assert client.get_job(expired_url.split("/")[-1].split("_")[0]).is_completed


class _Receiver:
    """A loopback HTTP server recording callback deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.deliveries.append((dict(self.headers), body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    hook = _Receiver(fail_first=1)
    try:
        yield hook
    finally:
        hook.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_callbacks_are_signed_and_retried(
    legnext_simulator_factory: Callable[..., LegnextSimulator], receiver: _Receiver
) -> None:
    from pydantic import SecretStr

    sim = legnext_simulator_factory(callback_secret=SecretStr("whsec-test"))
    with legnext_client_for(sim) as client:
        job = client.wait_for_job(client.diffusion(text="call me back", callback=receiver.url))

    def completed_delivered() -> bool:
        return any(
            json.loads(body)["data"]["status"] == "completed" for _, body in receiver.deliveries
        )

    _wait_for(completed_delivered)
    statuses = [json.loads(body)["data"]["status"] for _, body in receiver.deliveries]
    assert statuses[-1] == "completed" and "processing" in statuses
    for headers, body in receiver.deliveries:
        payload = json.loads(body)
        assert payload["data"]["job_id"] == job.job_id
        timestamp = headers["X-Legnext-Timestamp"]
        assert int(timestamp) == payload["timestamp"]
        expected = hmac.new(b"whsec-test", f"{timestamp}.".encode() + body, "sha256").hexdigest()
        assert headers["X-Legnext-Signature"] == expected
    stats = sim.stats()["callbacks"]
    assert stats["failed_attempts"] == 1  # the receiver refused the first delivery once
    assert stats["delivered"] == len(receiver.deliveries)


def test_failing_callback_deliveries_are_abandoned(
    legnext_simulator_factory: Callable[..., LegnextSimulator], receiver: _Receiver
) -> None:
    sim = legnext_simulator_factory(callback_attempts=2)
    sim.set_faults({"*": {"callback_failure_rate": 1.0}})
    with legnext_client_for(sim) as client:
        client.wait_for_job(client.diffusion(text="nobody hears", callback=receiver.url))
    _wait_for(lambda: sim.stats()["callbacks"]["abandoned"] == 3)  # staged, processing, completed
    assert receiver.deliveries == []
    callbacks = sim.stats()["callbacks"]
    assert callbacks["delivered"] == 0 and callbacks["failed_attempts"] == 6


def test_accept_then_drop_creates_and_charges_a_job(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    sim.set_faults({"diffusion": {"drop_after_accept_rate": 1.0}})
    with (
        legnext_client_for(sim, retry=QUICK_RETRY) as client,
        pytest.raises(OutcomeUnknownError) as lost,
    ):
        client.diffusion(text="was it created?")
    assert lost.value.endpoint == "diffusion"
    assert lost.value.body == {"text": "was it created?"}
    stats = sim.stats()
    assert stats["requests"]["POST diffusion"] == 1  # never re-sent
    assert stats["jobs_total"] == 1 and stats["dropped_responses"] == 1
    assert stats["points"]["frozen"] + stats["points"]["charged"] == 80
    (job,) = sim.jobs()
    assert job["body"] == {"text": "was it created?"}


def test_request_faults(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    with legnext_client_for(sim, retry=QUICK_RETRY) as client:
        sim.set_faults(
            {
                "get_job": {"server_error_rate": 1.0},
                "balance": {"rate_limit_rate": 1.0, "retry_after": 0.01},
            }
        )
        job = client.diffusion(text="faults around")
        with pytest.raises(ServerError):
            client.get_job(job.job_id)
        with pytest.raises(RateLimitedError) as limited:
            client.balance()
        assert limited.value.retry_after == pytest.approx(0.01)
        stats = sim.stats()
        assert stats["requests"]["GET job"] == QUICK_RETRY.max_attempts
        assert stats["requests"]["GET balance"] == QUICK_RETRY.max_attempts
        sim.set_faults({"diffusion": {"server_error_rate": 1.0}})
        with pytest.raises(OutcomeUnknownError):  # a 5xx after sending: never re-sent
            client.diffusion(text="unknown fate")
        assert sim.stats()["requests"]["POST diffusion"] == 2
        sim.set_faults({"*": {"latency": 0.2}})
        started = time.monotonic()
        client.balance()
        assert time.monotonic() - started >= 0.2


def test_stuck_jobs_never_finish(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    sim.set_faults({"shorten": {"stuck_rate": 1.0}})
    with legnext_client_for(sim) as client:
        job = client.shorten(prompt="never done")
        with pytest.raises(JobTimeoutError) as timed_out:
            client.wait_for_job(job, max_wait_seconds=0.5)
        # The error carries the last job the wait saw (a shared active-task list may
        # have stood in for later reads); the job itself stays processing.
        assert timed_out.value.job is not None
        assert timed_out.value.job.job_id == job.job_id
        assert client.get_job(job.job_id).status == "processing"
        sim.set_faults({})
        other = client.wait_for_job(client.shorten(prompt="other jobs still run"))
        assert other.is_completed
    assert sim.stats()["jobs_by_status"] == {"processing": 1, "completed": 1}


def test_download_faults(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    with legnext_client_for(sim) as client:
        job = client.wait_for_job(client.diffusion(text="files under stress"))
    sim.set_faults({"files": {"download_error_rate": 1.0}})
    assert httpx.get(job.output.image_urls[0]).status_code == 500
    sim.set_faults({"files": {"download_delay": 0.2}})
    started = time.monotonic()
    assert httpx.get(job.output.image_urls[0]).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_duplicate_creates_and_gets_are_counted(legnext_simulator: LegnextSimulator) -> None:
    sim = legnext_simulator
    with legnext_client_for(sim) as client:
        first = client.diffusion(text="twice")
        client.diffusion(text="twice", callback="http://127.0.0.1:9/ignored")
        client.diffusion(text="only once")
        for _ in range(3):
            client.get_job(first.job_id)
    stats = sim.stats()
    assert stats["duplicate_creates"] == 1
    assert stats["duplicates_by_endpoint"] == {"diffusion": 1}
    assert stats["gets_per_job"][first.job_id] == 3
    assert stats["requests"]["GET job"] == 3


def test_fault_settings_are_validated(legnext_simulator: LegnextSimulator) -> None:
    answer = httpx.put(
        f"{legnext_simulator.base_url}/_sim/faults", json={"*": {"job_failure_rate": 2}}
    )
    assert answer.status_code == 400
    assert httpx.get(f"{legnext_simulator.base_url}/_sim/faults").json() == {}


# -- robustness: bad settings and hostile bodies (issue 11) ------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "simulator.md"


def _docs_fault_options() -> list[str]:
    """The ``--fault`` values of the command in docs/simulator.md's "Starting it"."""
    block = re.search(r"```bash\n(prefect-legnext simulator .*?)```", DOCS.read_text(), re.S)
    assert block, "docs/simulator.md lost its `prefect-legnext simulator` example"
    return re.findall(r"--fault (\S+)", block.group(1))


def test_docs_fault_example_layers_endpoint_over_all() -> None:
    """The docs' example, literally: every job may fail (5%), and diffusion creates
    may also lose their answer (10%)."""
    options = _docs_fault_options()
    assert options == ["job_failure_rate=0.05", "diffusion:drop_after_accept_rate=0.1"]
    config = SimulatorConfig(faults=parse_faults(options))
    diffusion = config.faults_for("diffusion")
    assert (diffusion.job_failure_rate, diffusion.drop_after_accept_rate) == (0.05, 0.1)
    shorten = config.faults_for("shorten")
    assert (shorten.job_failure_rate, shorten.drop_after_accept_rate) == (0.05, 0.0)


@pytest.mark.timeout(180)
def test_docs_fault_example_over_http() -> None:
    """The docs' example served for real: diffusion jobs fail at the "*" rate as well
    as losing answers at their own rate (seeded, so the counts are reproducible)."""
    faults = parse_faults(_docs_fault_options())
    with (
        LegnextSimulator(time_scale=0.0005, seed=0, concurrency=50, faults=faults) as sim,
        httpx.Client(base_url=sim.base_url, headers={"x-api-key": sim.api_key}) as http,
    ):
        dropped = 0
        for number in range(200):
            try:
                answer = http.post("/api/v1/diffusion", json={"text": f"fox {number}"}, timeout=30)
                assert answer.status_code == 200, answer.text
            except httpx.TransportError:
                dropped += 1
        deadline = time.monotonic() + 120  # a bound for a busy machine, not a speed check
        while time.monotonic() < deadline:
            by_status = sim.stats()["jobs_by_status"]
            if set(by_status) <= {"completed", "failed"}:
                break
            time.sleep(0.05)
        assert set(by_status) <= {"completed", "failed"}, by_status
        assert dropped > 0 and sim.stats()["dropped_responses"] == dropped
        assert by_status.get("failed", 0) > 0  # "*" still applies to diffusion


def test_endpoint_faults_override_only_the_fields_they_set(
    legnext_simulator: LegnextSimulator,
) -> None:
    sim = legnext_simulator
    sim.set_faults(
        {
            "*": {"job_failure_rate": 1.0},
            "diffusion": {"drop_after_accept_rate": 1.0},
            "shorten": Faults(job_failure_rate=0.0),  # explicitly 0: turns "*" off here
        }
    )
    with legnext_client_for(sim) as client:
        with pytest.raises(OutcomeUnknownError):
            client.diffusion(text="dropped and failing")
        with pytest.raises(JobFailedError):
            client.wait_for_job(client.describe(img_url="https://example.com/a.png"))
        assert client.wait_for_job(client.shorten(prompt="exempt")).is_completed
        (lost,) = [job for job in sim.jobs() if job["task_type"] == "diffusion"]
        with pytest.raises(JobFailedError):
            client.wait_for_job(lost["job_id"])
    # GET shows what was set, so GET then PUT keeps the layering.
    shown = httpx.get(f"{sim.base_url}/_sim/faults", timeout=10).json()
    assert shown == {
        "*": {"job_failure_rate": 1.0},
        "diffusion": {"drop_after_accept_rate": 1.0},
        "shorten": {"job_failure_rate": 0.0},
    }
    assert httpx.put(f"{sim.base_url}/_sim/faults", json=shown, timeout=10).json() == shown


BAD_FAULT_BODIES = [
    pytest.param(b"[1, 2]", "not list", id="list"),
    pytest.param(b'"latency"', "not str", id="string"),
    pytest.param(b"null", "not NoneType", id="null"),
    pytest.param(b"{nope", "bad fault settings", id="invalid-json"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, "nested too deeply", id="deep"),
    pytest.param(b'{"*": {"latency": Infinity}}', "*.latency: Input should be a finite", id="inf"),
    pytest.param(b'{"*": {"latency": NaN}}', "*.latency: Input should be a finite", id="nan"),
    pytest.param(b'{"*": {"latency": 601}}', "less than or equal to 600", id="too-long"),
    pytest.param(b'{"*": {"latency": -1}}', "greater than or equal to 0", id="negative"),
    pytest.param(b'{"*": null}', "*: Input should be a valid dictionary", id="null-spec"),
    pytest.param(b'{"*": {"latency": "x"}}', "*.latency", id="not-a-number"),
    pytest.param(b'{"*": {"laggy": 1}}', "*.laggy: Extra inputs", id="unknown-fault"),
    pytest.param(
        b'{"balance": {"latency": 1}, "difusion": {"latency": 1}}',
        "unknown fault target 'difusion'",
        id="unknown-target",
    ),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("body", "expected"), BAD_FAULT_BODIES)
def test_bad_fault_settings_answer_400_and_change_nothing(
    legnext_simulator: LegnextSimulator, body: bytes, expected: str
) -> None:
    sim = legnext_simulator
    sim.set_faults({"shorten": {"stuck_rate": 0.5}})
    before = httpx.get(f"{sim.base_url}/_sim/faults", timeout=10).json()
    answer = httpx.put(f"{sim.base_url}/_sim/faults", content=body, timeout=10)
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert expected in message and "\n" not in message
    assert httpx.get(f"{sim.base_url}/_sim/faults", timeout=10).json() == before
    with legnext_client_for(sim) as client:  # no latency stored: answers come back
        assert client.balance().available_points > 0


def test_set_faults_refusal_is_a_value_error(legnext_simulator: LegnextSimulator) -> None:
    with pytest.raises(ValueError, match="finite"):
        legnext_simulator.set_faults({"*": {"latency": math.inf}})
    assert legnext_simulator.jobs() == []
    assert httpx.get(f"{legnext_simulator.base_url}/_sim/faults", timeout=10).json() == {}


HOSTILE_CREATE_BODIES = [
    pytest.param(b"[" * 10_000 + b"]" * 10_000, id="deep-arrays"),
    pytest.param(b'{"text": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", id="deep-in-object"),
    pytest.param(b'{"text": "a", "x": ' + b'{"a":' * 500 + b"1" + b"}" * 501, id="deep-objects"),
    pytest.param(b"text=a red fox", id="form"),
    pytest.param(b"\xff\xfe\xfd not utf-8", id="binary"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"text": "a fox"', id="truncated"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("body", HOSTILE_CREATE_BODIES)
def test_malformed_create_bodies_answer_400_in_shape_a(
    legnext_simulator: LegnextSimulator, body: bytes
) -> None:
    sim = legnext_simulator
    headers = {"x-api-key": sim.api_key, "content-type": "application/json"}
    answer = httpx.post(
        f"{sim.base_url}/api/v1/diffusion", content=body, headers=headers, timeout=30
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 400 and set(answer.json()) == {
        "code", "message", "raw_message", "detail"
    }  # fmt: skip
    with legnext_client_for(sim) as client:  # still healthy
        assert client.wait_for_job(client.shorten(prompt="still here")).is_completed
    assert sim.stats()["jobs_total"] == 1


@pytest.mark.timeout(120)
def test_oversized_create_body_answers_413_in_shape_a(
    legnext_simulator: LegnextSimulator,
) -> None:
    sim = legnext_simulator
    headers = {"x-api-key": sim.api_key}
    big = b'{"text": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    answer = httpx.post(
        f"{sim.base_url}/api/v1/diffusion", content=big, headers=headers, timeout=60
    )
    assert answer.status_code == 413
    assert answer.json() == {
        "code": 413,
        "message": "Request entity too large",
        "raw_message": "Request entity too large",
        "detail": None,
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        yield b'{"text": "'
        for _ in range(40):
            yield b"b" * 65536
        yield b'"}'

    answer = httpx.post(
        f"{sim.base_url}/api/v1/diffusion", content=chunks(), headers=headers, timeout=60
    )
    assert answer.status_code == 413
    assert httpx.get(f"{sim.base_url}/_sim/stats", timeout=10).json()["jobs_total"] == 0


@pytest.mark.timeout(120)
def test_plain_string_api_key_works_end_to_end() -> None:
    with LegnextSimulator(api_key="plain-str-key", time_scale=0.001) as sim:
        assert isinstance(sim.config.api_key, SecretStr)
        assert sim.api_key == "plain-str-key"
        with legnext_client_for(sim) as client:
            assert client.wait_for_job(client.shorten(prompt="a plain key")).is_completed
        wrong = httpx.get(
            f"{sim.base_url}/api/account/balance", headers={"x-api-key": "other"}, timeout=10
        )
        assert wrong.status_code == 401


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"faults": {"*": {"latency": math.inf}}}, id="latency-inf"),
        pytest.param({"faults": {"*": Faults()}, "time_scale": math.inf}, id="time-scale-inf"),
        pytest.param({"time_scale": math.nan}, id="time-scale-nan"),
        pytest.param({"time_scale": 601}, id="time-scale-too-slow"),
        pytest.param({"output_ttl": math.inf}, id="ttl-inf"),
        pytest.param({"faults": {"files": {"download_delay": -1}}}, id="negative-delay"),
        pytest.param({"faults": {"*": {"retry_after": 601}}}, id="retry-after-too-long"),
        pytest.param({"faults": {"diffusion": {"stuck_rate": math.nan}}}, id="rate-nan"),
        pytest.param({"faults": {"diffusion": {"stuck_rate": 1.5}}}, id="rate-above-1"),
        pytest.param({"faults": {"difusion": {"stuck_rate": 0.5}}}, id="unknown-target"),
    ],
)
def test_python_settings_refuse_bad_numbers_before_start(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LegnextSimulator(**settings)
    with pytest.raises(ValidationError):
        SimulatorConfig(**settings)


def test_settings_refuse_bad_numbers_on_assignment() -> None:
    faults = Faults()
    with pytest.raises(ValidationError):
        faults.latency = math.inf
    config = SimulatorConfig()
    with pytest.raises(ValidationError):
        config.time_scale = math.nan
    with pytest.raises(ValidationError):
        Faults(job_failure_rate=-0.1)
