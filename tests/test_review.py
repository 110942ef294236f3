"""Review steps: a chain pauses after a reviewed step with a form showing its images,
a person picks the image the next step works on (Prefect's server refuses a number
the parent does not allow), and an unanswered review takes the run's default.

In a flow run outside a deployment (the run pauses in its process) on the Prefect
test server; the deployment case (the run suspends, no worker held) is in
test_review_deployment.py."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from uuid import UUID

import pytest
from PIL import Image, ImageChops, ImageStat
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run
from prefect_aws import S3Bucket

from prefect_legnext.orchestration import flows
from prefect_legnext.orchestration.flows import (
    ChainResult,
    StepProgress,
    legnext_batch,
    legnext_chain,
)
from prefect_legnext.orchestration.review import TIMEOUT_REVIEWER
from prefect_legnext.simulator import LegnextSimulator
from test_flows import picture, s3_bytes

pytestmark = pytest.mark.usefixtures("prefect_server")
CHAIN = {"prompt": "a harbour at noon", "steps": ["diffusion", "enhance"]}


class Background:
    """A chain run in a thread, and the id of its flow run once its first step says."""

    def __init__(self, flow: Any = legnext_chain, **parameters: Any) -> None:
        self.flow = flow
        self.run_id: UUID | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._seen = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(parameters,), daemon=True)

    def _listen(self, event: StepProgress) -> None:
        if event.flow_run_id and self.run_id is None:
            self.run_id = UUID(event.flow_run_id)
            self._seen.set()

    def _run(self, parameters: dict[str, Any]) -> None:
        try:
            self.result = self.flow(**parameters)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self) -> Background:
        flows.STEP_LISTENERS.append(self._listen)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        flows.STEP_LISTENERS.remove(self._listen)

    def paused(self, within: float = 120, after: str | None = None) -> UUID:
        """The run's id once it is paused for a review (another than `after`)."""
        assert self._seen.wait(within), self.error
        assert self.run_id is not None
        deadline = time.monotonic() + within
        with get_client(sync_client=True) as client:
            while True:
                state = client.read_flow_run(self.run_id).state
                if (state is not None and state.is_paused()
                        and state.state_details.pause_key != after):  # fmt: skip
                    return self.run_id
                assert self.thread.is_alive(), self.error
                assert time.monotonic() < deadline, state
                time.sleep(0.2)

    def finished(self, within: float = 180) -> Any:
        self.thread.join(within)
        assert not self.thread.is_alive(), "the chain did not finish"
        assert self.error is None, self.error
        assert self.result is not None
        return self.result


def closest_image(bucket: S3Bucket, result: ChainResult) -> int:
    """Which diffusion image the enhance output is made from (the simulator's enhance
    is 90% the sharpened parent image): the one nearest in pixels."""
    carried = picture(s3_bytes(bucket, result.steps[1].s3_uris[0]))

    def distance(uri: str) -> float:
        parent: Image.Image = picture(s3_bytes(bucket, uri))
        return float(sum(ImageStat.Stat(ImageChops.difference(parent, carried)).mean))

    distances = [distance(uri) for uri in result.steps[0].s3_uris]
    return distances.index(min(distances))


def test_a_person_picks_the_image_and_a_number_not_allowed_is_refused(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, bucket, names = blocks
    with Background(**CHAIN, **names, review=["diffusion"]) as chain:
        run_id = chain.paused()
        assert [j["task_type"] for j in sim.jobs()] == ["diffusion"]  # nothing after it yet
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            assert run.state is not None
            keyset = run.state.state_details.run_input_keyset
            assert keyset is not None
            schema = json.loads(client.read_flow_run_input(run_id, keyset["schema"]))
            description = json.loads(client.read_flow_run_input(run_id, keyset["description"]))
        image_field = schema["properties"]["image_no"]
        assert image_field["enum"] == [0, 1, 2, 3]
        # Prefect's UI shows the select empty: the field says what empty gives.
        assert image_field["description"].endswith(f"(left empty: {image_field['default']})")
        assert description.count('<img src="') == 4
        # Presigned URLs of our copies, never Legnext's expiring ones.
        assert description.count("Signature=") == 4 and bucket.bucket_name in description
        assert sim.base_url not in description
        with pytest.raises(RuntimeError) as refused:
            resume_flow_run(run_id, run_input={"image_no": 9})
        assert "9 is not one of [0, 1, 2, 3]" in str(refused.value)
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
            assert state is not None and state.is_paused()  # still waiting
        resume_flow_run(run_id, run_input={"image_no": 2, "chosen_by": "alice"})
        result = chain.finished()

    assert [s.action for s in result.steps] == ["diffusion", "enhance"]
    review = result.steps[0].review
    assert review is not None and (review.image_no, review.chosen_by) == (2, "alice")
    assert result.steps[1].image_no == 2
    enhance = next(j for j in sim.jobs() if j["task_type"] == "enhance")
    assert enhance["body"]["imageNo"] == 2
    assert closest_image(bucket, result) == 2
    sidecar = json.loads(s3_bytes(bucket, result.steps[0].sidecar_uri))
    assert sidecar["review"]["image_no"] == 2 and sidecar["review"]["chosen_by"] == "alice"
    assert sim.stats()["duplicate_creates"] == 0


def test_an_unanswered_review_takes_the_default_at_its_timeout(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    _, bucket, names = blocks
    with Background(
        **CHAIN, **names, image_no=3, review=["diffusion"], review_timeout_seconds=3
    ) as chain:
        chain.paused()
        result = chain.finished()
    review = result.steps[0].review
    assert review is not None and review.chosen_by == TIMEOUT_REVIEWER
    assert (review.image_no, review.stop) == (3, False)  # the planned image, carried
    assert result.steps[1].image_no == 3 and closest_image(bucket, result) == 3


def test_the_stop_default_ends_the_chain_after_the_reviewed_step(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, _, names = blocks
    with Background(
        **CHAIN, **names, review=["diffusion"], review_timeout_seconds=2, review_default="stop"
    ) as chain:
        chain.paused()
        result = chain.finished()
    assert [s.action for s in result.steps] == ["diffusion"]
    review = result.steps[0].review
    assert review is not None and review.stop and review.chosen_by == TIMEOUT_REVIEWER
    assert [j["task_type"] for j in sim.jobs()] == ["diffusion"]


def form_of(run_id: UUID) -> tuple[str, str]:
    """The pause key and the form's description of a paused run."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        assert state is not None and state.state_details.run_input_keyset is not None
        keyset = state.state_details.run_input_keyset
        text = json.loads(client.read_flow_run_input(run_id, keyset["description"]))
    return str(state.state_details.pause_key), str(text)


def test_a_batch_asks_for_each_chain_in_turn(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, _, names = blocks
    wanted = {"a fox in the snow": 1, "a heron at dusk": 3}
    with Background(
        legnext_batch, prompts=list(wanted), steps=["diffusion", "enhance"], **names,
        review=["diffusion"],
    ) as batch:  # fmt: skip
        key: str | None = None
        for _ in wanted:
            run_id = batch.paused(after=key)
            key, text = form_of(run_id)
            prompt = next(p for p in wanted if p in text)
            resume_flow_run(run_id, run_input={"image_no": wanted[prompt]})
        result = batch.finished()
    for chain in result.chains:
        review = chain.steps[0].review
        assert review is not None and review.image_no == wanted[chain.label]
        assert chain.steps[1].image_no == wanted[chain.label]
    enhances = [j for j in sim.jobs() if j["task_type"] == "enhance"]
    assert sorted(j["body"]["imageNo"] for j in enhances) == [1, 3]
    assert sim.stats()["duplicate_creates"] == 0 and sim.stats()["jobs_total"] == 4
