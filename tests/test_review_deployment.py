"""Review steps from a deployment: chain runs of the ``legnext-chain`` deployment on a
real ``prefect server start`` (SQLite) with a process worker suspend after the
reviewed diffusion is in S3 (no flow-run process left under the worker), are resumed
through Prefect's API with the chosen image (a number the parent does not allow is
refused and the run keeps waiting), and an unanswered one is resumed by the sweeper
with its default at its timeout. The simulator's pixels prove which image went on.

The screenshot of the pause form in a real browser is here too: it needs the same
server, with its UI."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from benchmarks.fleet import BIN, ROOT, Processes, flow_run_processes, running_server
from PIL import Image, ImageChops, ImageStat
from prefect_aws import S3Bucket

from prefect_legnext.orchestration.review import TIMEOUT_REVIEWER
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server

TIME_SCALE = 0.01
PREFIX = "legnext/daily"  # the deployment's key_prefix (deployments/prefect.yaml)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    with running_server(tmp_path_factory.mktemp("prefect-home")) as processes:
        yield processes


def stored(bucket: S3Bucket, key: str) -> bytes:
    s3 = bucket.credentials.get_s3_client()
    body: bytes = s3.get_object(Bucket=bucket.bucket_name, Key=key)["Body"].read()
    return body


def picture(bucket: S3Bucket, key: str) -> Image.Image:
    return Image.open(io.BytesIO(stored(bucket, key))).convert("RGB")


def carried_image(bucket: S3Bucket, diffusion: str, enhance: str) -> int:
    """The diffusion image the enhance's first output is nearest to in pixels (the
    simulator's enhance is 90% the sharpened parent image)."""
    made = picture(bucket, f"{PREFIX}/{enhance}/0.png")
    distances = [
        sum(ImageStat.Stat(ImageChops.difference(picture(bucket, f"{PREFIX}/{diffusion}/{n}.png"),
                                                 made)).mean)
        for n in range(4)
    ]  # fmt: skip
    return distances.index(min(distances))


class Fleet:
    """The deployment, its worker and the test's view of them."""

    def __init__(self, cluster: Processes, sim: LegnextSimulator, bucket: S3Bucket) -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self.cluster, self.sim, self.bucket = cluster, sim, bucket
        self.api = lambda: temporary_settings(
            updates={PREFECT_API_URL: cluster.env["PREFECT_API_URL"]}
        )

    def state(self, run_id: UUID) -> Any:
        from prefect.client.orchestration import get_client

        with self.api(), get_client(sync_client=True) as client:
            return client.read_flow_run(run_id).state

    def wait_for(self, run_id: UUID, name: str, within: float = 300) -> None:
        deadline = time.monotonic() + within
        while True:
            state = self.state(run_id)
            if state is not None and state.name == name:
                return
            assert state is None or not state.is_final(), (state, self.cluster.logs())
            assert time.monotonic() < deadline, (state, self.cluster.logs())
            time.sleep(0.5)

    def diffusion_of(self, prompt: str) -> str:
        return next(j["job_id"] for j in self.sim.jobs() if prompt in j["body"].get("text", ""))

    def enhance_of(self, diffusion: str) -> dict[str, Any]:
        return next(j for j in self.sim.jobs() if j["body"].get("jobId") == diffusion)

    def sidecar(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(stored(self.bucket, f"{PREFIX}/{job_id}/job.json"))
        return data


@pytest.fixture(scope="module")
def fleet(cluster: Processes, local_s3_server: LocalS3Server) -> Iterator[tuple[Fleet, Any]]:
    from prefect.client.orchestration import get_client

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    sim = LegnextSimulator(time_scale=TIME_SCALE)
    sim.start()
    bucket = local_s3_server.create_bucket()
    fleet = Fleet(cluster, sim, bucket)
    cluster.run(str(BIN / "prefect-legnext"), "setup", "--concurrent-jobs", "2")
    with fleet.api():
        LegnextCredentials(api_key=sim.api_key, base_url=sim.base_url,
                           poll_scale=TIME_SCALE).save("legnext", overwrite=True)  # fmt: skip
        bucket.save("legnext-outputs", overwrite=True)
    prefect_cli = str(BIN / "prefect")
    cluster.run(prefect_cli, "--no-prompt", "deploy", "--name", "legnext-chain",
                cwd=ROOT / "deployments")  # fmt: skip
    # A resumed run waits for the worker's next look (10 s by default): 2 s here.
    cluster.env["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    worker = cluster.start("worker", prefect_cli, "worker", "start", "--pool", "legnext-process")
    with fleet.api(), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("legnext-chain/legnext-chain")
    try:
        yield fleet, (worker, deployment.id)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        sim.stop()


def start_chain(fleet: Fleet, deployment_id: UUID, prompt: str, **parameters: Any) -> UUID:
    from prefect.client.orchestration import get_client

    with fleet.api(), get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"prompt": prompt, "steps": ["diffusion", "enhance"],
                        "review": ["diffusion"], **parameters},
        )  # fmt: skip
    return run.id


@pytest.mark.timeout(900)
def test_a_suspended_review_is_resumed_with_the_chosen_image(fleet: tuple[Fleet, Any]) -> None:
    from prefect.flow_runs import resume_flow_run

    chain, (worker, deployment_id) = fleet
    run_id = start_chain(chain, deployment_id, "a lighthouse to review")
    chain.wait_for(run_id, "Suspended")
    # The grid is in S3 before the run suspends, and no process of the run is left.
    diffusion = chain.diffusion_of("a lighthouse to review")
    assert len(chain.sidecar(diffusion)["files"]) == 4
    deadline = time.monotonic() + 120
    while str(run_id) in flow_run_processes(worker.pid):
        assert time.monotonic() < deadline, "the suspended run kept its process"
        time.sleep(0.5)
    assert chain.state(run_id).name == "Suspended"
    with chain.api():
        with pytest.raises(RuntimeError) as refused:
            resume_flow_run(run_id, run_input={"image_no": 9})
        assert "9 is not one of [0, 1, 2, 3]" in str(refused.value)
        assert chain.state(run_id).name == "Suspended"  # still waiting
        resume_flow_run(run_id, run_input={"image_no": 2, "chosen_by": "bob"})
    chain.wait_for(run_id, "Completed")

    enhance = chain.enhance_of(diffusion)
    assert enhance["body"]["imageNo"] == 2
    assert carried_image(chain.bucket, diffusion, enhance["job_id"]) == 2
    review = chain.sidecar(diffusion)["review"]
    assert (review["image_no"], review["chosen_by"]) == (2, "bob")
    assert chain.sidecar(enhance["job_id"])["image_no"] == 2
    diffusions = [
        j for j in chain.sim.jobs() if "a lighthouse to review" in j["body"].get("text", "")
    ]
    assert len(diffusions) == 1  # the re-executed run reused its job
    assert chain.sim.stats()["duplicate_creates"] == 0


@pytest.mark.timeout(900)
def test_an_unanswered_suspended_review_takes_its_default(fleet: tuple[Fleet, Any]) -> None:
    from prefect_legnext.orchestration.sweeper import sweep_once

    chain, (_, deployment_id) = fleet
    run_id = start_chain(
        chain, deployment_id, "a heron nobody reviews", image_no=1, review_timeout_seconds=5
    )
    chain.wait_for(run_id, "Suspended")
    with chain.api():
        # Before its due time (a day ago, as the sweeper sees it), nothing happens.
        early = sweep_once(now=datetime.now(UTC) - timedelta(days=1))
        assert str(run_id) not in early.reviews_defaulted
        assert chain.state(run_id).name == "Suspended"
        deadline = time.monotonic() + 120
        while True:
            report = sweep_once()
            if str(run_id) in report.reviews_defaulted:
                break
            assert time.monotonic() < deadline, chain.state(run_id)
            time.sleep(1)
    chain.wait_for(run_id, "Completed")
    diffusion = chain.diffusion_of("a heron nobody reviews")
    enhance = chain.enhance_of(diffusion)
    assert enhance["body"]["imageNo"] == 1  # the planned image, carried
    assert carried_image(chain.bucket, diffusion, enhance["job_id"]) == 1
    review = chain.sidecar(diffusion)["review"]
    assert review["chosen_by"] == TIMEOUT_REVIEWER and review["stop"] is False


def chromium() -> str | None:
    from browser import chromium_path

    return chromium_path()


ARTIFACTS = ROOT / "test-artifacts"
# Images of the form: our bucket's presigned copies, loaded and drawn.
THUMBNAILS = """(() => {
  const shown = [...document.querySelectorAll('img')].filter(
    i => i.src.includes(BUCKET) && i.complete && i.naturalWidth > 0);
  return shown.length >= 4 ? shown.map(i => {
    const r = i.getBoundingClientRect();
    return [i.alt, r.left, r.top, r.width, r.height];
  }) : null;
})()"""
RESUME_BUTTON = """(() => {
  const button = [...document.querySelectorAll('button')].find(
    b => b.textContent.trim() === 'Resume');
  if (button) { button.click(); return true; }
  return false;
})()"""


@pytest.mark.timeout(900)
@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_pause_form_shows_the_four_thumbnails_in_a_browser(fleet: tuple[Fleet, Any]) -> None:
    from prefect.flow_runs import resume_flow_run

    from browser import browser_page

    chain, (_, deployment_id) = fleet
    run_id = start_chain(chain, deployment_id, "a lighthouse in a browser")
    chain.wait_for(run_id, "Suspended")
    ui = chain.cluster.env["PREFECT_API_URL"].removesuffix("/api")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "review-form.png"
    try:
        with browser_page(f"{ui}/runs/flow-run/{run_id}") as page:
            page.wait_for(RESUME_BUTTON)
            where = page.wait_for(
                THUMBNAILS.replace("BUCKET", json.dumps(chain.bucket.bucket_name))
            )
            time.sleep(1)  # let the modal finish its transition before the picture
            where = page.evaluate(
                THUMBNAILS.replace("BUCKET", json.dumps(chain.bucket.bucket_name))
            )
            page.screenshot(shot)
    finally:
        with chain.api():
            resume_flow_run(run_id, run_input={"image_no": 0})
    assert sorted(alt for alt, *_ in where) == ["image 0", "image 1", "image 2", "image 3"]
    picture_of_form = Image.open(shot).convert("RGB")
    for alt, left, top, width, height in where:
        assert width >= 16 and height >= 16, (alt, width, height)
        box = (int(left), int(top), int(left + width), int(top + height))
        spread = ImageStat.Stat(picture_of_form.crop(box)).stddev
        # The simulator's images are gradients under shapes: far from one flat colour.
        assert max(spread) > 10, (alt, box, spread)
    chain.wait_for(run_id, "Completed")
    # Every step's gallery artifact renders its images in the UI too.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    with chain.api(), get_client(sync_client=True) as client:
        galleries = [a for a in client.read_artifacts(artifact_filter=only_this_run)
                     if a.type == "markdown" and "step 1, diffusion" in str(a.data)]  # fmt: skip
    assert galleries
    with browser_page(f"{ui}/artifacts/artifact/{galleries[0].id}") as page:
        shown = page.wait_for(THUMBNAILS.replace("BUCKET", json.dumps(chain.bucket.bucket_name)))
        page.screenshot(ARTIFACTS / "step-gallery.png")
    assert sorted(alt for alt, *_ in shown) == [f"output {n}" for n in range(4)]
