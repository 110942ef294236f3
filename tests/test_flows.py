"""The chain, pipeline and batch flows end to end: simulator, moto's S3 server over
HTTP and a Prefect test server; and every way a chain is refused before paying."""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops
from prefect_aws import S3Bucket
from pydantic.fields import FieldInfo

from prefect_legnext.orchestration.errors import BudgetExceededError, ChainError
from prefect_legnext.orchestration.flows import (
    ACCOUNT_LIMIT,
    ChainResult,
    legnext_batch,
    legnext_chain,
    legnext_pipeline,
)
from prefect_legnext.orchestration.plans import ChainStep, default_mask
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.images import polygon_mask
from prefect_legnext.simulator.s3 import LocalS3Server
from prefect_support import credentials_for, save_blocks

pytestmark = pytest.mark.usefixtures("prefect_server")


def s3_bytes(bucket: S3Bucket, uri: str) -> bytes:
    key = uri.split("/", 3)[3]
    body: bytes = (
        bucket.credentials.get_s3_client()
        .get_object(Bucket=bucket.bucket_name, Key=key)["Body"]
        .read()
    )
    return body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_chain_end_to_end(blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]]) -> None:
    sim, bucket, names = blocks
    result = legnext_chain(prompt="a lighthouse at dawn", image_no=1, **names)

    assert [s.action for s in result.steps] == ["diffusion", "enhance", "inpaint", "retexture"]
    jobs = {j["job_id"]: j for j in sim.jobs()}
    # Enhance needs a draft parent: the flow asked for one.
    assert jobs[result.steps[0].job_id]["body"]["text"] == "a lighthouse at dawn --v 7 --draft"
    for step in result.steps:
        assert len(step.s3_uris) == 4 and step.grid_uri and step.sidecar_uri
        for uri, item in zip(step.s3_uris, step.files, strict=True):
            stored = s3_bytes(bucket, uri)
            assert sha(stored) == item.sha256 == sha(httpx.get(item.source_url).content)
    # Each step worked on image 1 of its parent.
    assert [s.image_no for s in result.steps] == [None, 1, 1, 1]
    assert [s.parent_job_id for s in result.steps[1:3]] == [
        result.steps[0].job_id,
        result.steps[1].job_id,
    ]
    # Retexture was fed our S3 copy of the inpainted image 1, not Legnext's URL.
    retexture_source = jobs[result.steps[3].job_id]["body"]["imgUrl"]
    assert retexture_source.startswith(bucket.credentials.aws_client_parameters.endpoint_url)
    assert result.steps[2].files[1].key in retexture_source

    # The inpaint changed its parent only inside the mask.
    parent = picture(s3_bytes(bucket, result.steps[1].s3_uris[1]))
    mask = polygon_mask(parent.size, [(p.width, p.height, p.points) for p in default_mask().areas])
    for uri in result.steps[2].s3_uris:
        changed = ImageChops.difference(parent, picture(s3_bytes(bucket, uri))).convert("L")
        changed = changed.point(lambda v: 255 if v else 0)
        assert ImageChops.multiply(changed, ImageChops.invert(mask)).getbbox() is None
        assert ImageChops.multiply(changed, mask).getbbox() is not None

    stats = sim.stats()
    assert result.total_points == 40 + 80 + 120 + 120 == stats["points"]["charged"]
    assert stats["jobs_total"] == 4 and stats["duplicate_creates"] == 0


def test_chain_artifacts_and_events(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    sim, _, names = blocks
    state = legnext_chain(
        prompt="an orchard", steps=["diffusion", "enhance"], return_state=True, **names
    )
    result: ChainResult = state.result()
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        kinds = sorted(a.type or "" for a in artifacts)
        assert kinds == ["markdown", "markdown", "table"]
        gallery = next(a for a in artifacts if a.type == "markdown")
        assert "![output 0](http" in str(gallery.data)
        table = next(a for a in artifacts if a.type == "table")
        assert result.steps[1].job_id in str(table.data)
        events = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["legnext.job."]},
                    "resource": {"id_prefix": [f"legnext.job.{result.steps[0].job_id}"]},
                },
                "limit": 50,
            },
        ).json()
    names_seen = sorted(e["event"] for e in events["events"])
    assert names_seen == ["legnext.job.completed", "legnext.job.submitted"]
    assert sim.stats()["jobs_total"] == 2


def test_general_pipeline(blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]]) -> None:
    sim, bucket, names = blocks
    steps = [
        ChainStep(action="diffusion", prompt="a city at night --ar 3:2"),
        ChainStep(action="upscale", image_no=2, options={"type": 1}),
        ChainStep(action="pan", options={"direction": 1, "scale": 1.5}, prompt="more city"),
        ChainStep(action="remove_background"),
    ]
    result = legnext_pipeline(steps=steps, image_source="legnext", **names)
    assert [s.action for s in result.steps] == ["diffusion", "upscale", "pan", "remove_background"]
    assert result.total_points == 80 + 160 + 80 + 80 == sim.stats()["points"]["charged"]
    cutout = Image.open(io.BytesIO(s3_bytes(bucket, result.last.s3_uris[0])))
    assert cutout.mode == "RGBA"
    jobs = {j["job_id"]: j for j in sim.jobs()}
    # image_source="legnext": remove-background got Legnext's (the simulator's) URL.
    assert jobs[result.last.job_id]["body"]["imgUrl"].startswith(sim.base_url)


def test_same_idempotency_scope_reuses_every_job(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from prefect_legnext.orchestration.flows import STEP_LISTENERS, StepProgress

    sim, _, names = blocks
    first = legnext_chain(prompt="a mill", idempotency_scope="nightly-2026-11-22", **names)
    seen: list[StepProgress] = []
    STEP_LISTENERS.append(seen.append)
    try:
        state = legnext_chain(
            prompt="a mill", idempotency_scope="nightly-2026-11-22", return_state=True, **names
        )
    finally:
        STEP_LISTENERS.remove(seen.append)
    again: ChainResult = state.result()
    assert [s.job_id for s in again.steps] == [s.job_id for s in first.steps]
    stats = sim.stats()
    assert stats["jobs_total"] == 4 and stats["duplicate_creates"] == 0
    # The submit task of each step finds its recorded job and reuses it: nothing paid.
    assert [e.phase for e in seen if e.phase in ("reused", "submitted")] == ["reused"] * 4
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    run_names = {t.name for t in task_runs}
    assert f"1 diffusion: wait {first.steps[0].job_id[:8]}" in run_names


def test_batch_end_to_end(blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]]) -> None:
    sim, bucket, names = blocks
    prompts = ["a fox", "a heron", "a lynx"]
    result = legnext_batch(prompts=prompts, steps=["diffusion", "enhance", "inpaint"], **names)
    assert len(result.chains) == 3
    for chain in result.chains:
        assert [s.action for s in chain.steps] == ["diffusion", "enhance", "inpaint"]
        for step in chain.steps:
            for uri, item in zip(step.s3_uris, step.files, strict=True):
                assert sha(s3_bytes(bucket, uri)) == item.sha256
    texts = sorted(j["body"]["text"] for j in sim.jobs() if j["task_type"] == "diffusion")
    assert texts == sorted(f"{p} --v 7 --draft" for p in prompts)
    stats = sim.stats()
    assert result.total_points == 3 * (40 + 80 + 120) == stats["points"]["charged"]
    assert stats["jobs_total"] == 9 and stats["duplicate_creates"] == 0
    assert stats["peak_in_flight"] <= 6


def test_account_limit_is_created_with_the_account_cap(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    from prefect.client.orchestration import get_client

    _, _, names = blocks
    legnext_chain(prompt="a bridge", steps=["diffusion"], **names)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(ACCOUNT_LIMIT)
    assert limit.limit == 6 and limit.active


@pytest.mark.parametrize(
    ("steps", "match"),
    [
        (
            [
                ChainStep(action="diffusion", prompt="no draft here"),
                ChainStep(action="upscale", options={"type": 0}),
                ChainStep(action="enhance"),
            ],
            r"step 3 \(enhance\): enhance needs a draft parent",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a field"),
                ChainStep(action="upscale", options={"type": 0}),
                ChainStep(action="variation", image_no=2, options={"type": 1}),
            ],
            r"step 3 \(variation\): image_no 2 is not available; upscale produces 1 output",
        ),
        (
            [ChainStep(action="inpaint", mask=default_mask())],
            r"step 1 \(inpaint\) needs a previous step",
        ),
        (
            [
                ChainStep(action="diffusion", prompt="a field"),
                ChainStep(action="pan", options={"direction": 7, "scale": 1.5}),
            ],
            r"step 2 \(pan\): invalid pan request: direction",
        ),
    ],
)
def test_invalid_chains_fail_before_any_paid_call(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
    steps: list[ChainStep],
    match: str,
) -> None:
    sim, _, names = blocks
    with pytest.raises(ChainError, match=match):
        legnext_pipeline(steps=steps, **names)
    assert sim.stats()["jobs_total"] == 0


def test_mask_out_of_bounds_is_refused_before_any_paid_call(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, _, names = blocks
    outside = {"areas": [{"width": 1024, "height": 1024, "points": [0, 0, 2000, 0, 0, 500]}]}
    with pytest.raises(Exception, match=r"point 1 \(2000, 0\) lies outside the 1024x1024 image"):
        legnext_chain(prompt="a boat", inpaint_mask=outside, **names)
    assert sim.stats()["jobs_total"] == 0


def test_budget_too_small_submits_nothing(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, _, names = blocks
    with pytest.raises(BudgetExceededError, match="costs 360 points, above max_points=300"):
        legnext_chain(prompt="a tower", max_points=300, **names)
    assert sim.stats()["jobs_total"] == 0


def test_account_balance_too_small_submits_nothing(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    sim = legnext_simulator_factory(points=200)
    credentials_for(sim).save("legnext-poor", overwrite=True)
    local_s3_server.create_bucket().save("outputs-poor", overwrite=True)
    with pytest.raises(BudgetExceededError, match="costs 360 points but the account has 200"):
        legnext_chain(prompt="a tower", credentials_block="legnext-poor",
                      storage_block="outputs-poor")  # fmt: skip
    assert sim.stats()["jobs_total"] == 0


def test_flow_parameters_render_a_clear_form() -> None:
    from prefect.utilities.callables import parameter_schema

    for flow_obj in (legnext_chain, legnext_pipeline, legnext_batch):
        schema = parameter_schema(flow_obj).model_dump()
        for name, spec in schema["properties"].items():
            assert spec.get("title") and spec["title"] != name, (flow_obj.name, name)
            assert spec.get("description", "").endswith("."), (flow_obj.name, name)
            assert name in schema.get("required", []) or "default" in spec, (flow_obj.name, name)
    chain = parameter_schema(legnext_chain).model_dump()
    props = chain["properties"]
    assert props["steps"]["items"]["enum"] == ["diffusion", "enhance", "inpaint", "retexture"]
    assert props["image_no"]["minimum"] == 0 and props["image_no"]["maximum"] == 3
    assert chain["required"] == ["prompt"]


# Artifacts outside a run are deprecated by Prefect: a direct call makes none.
@pytest.mark.filterwarnings("error::FutureWarning")
def test_the_flow_functions_run_directly_with_their_defaults(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    """``flow.fn(...)``, as in users' unit tests: omitted parameters get plain defaults
    (they were pydantic `Field` objects, and the chain failed with a TypeError), and
    a call outside any flow run is a run of its own."""
    import inspect

    for flow_obj in (legnext_chain, legnext_pipeline, legnext_batch):
        for parameter in inspect.signature(flow_obj.fn).parameters.values():
            assert not isinstance(parameter.default, FieldInfo), (flow_obj.name, parameter.name)
    sim, _, names = blocks
    result = legnext_chain.fn(prompt="a quay at noon", **names)
    assert [s.action for s in result.steps] == ["diffusion", "enhance", "inpaint", "retexture"]
    assert sim.stats()["jobs_total"] == 4


def test_text_steps_store_their_prompts(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:

    sim, bucket, names = blocks
    result = legnext_pipeline(
        steps=[ChainStep(action="shorten", prompt="a very long prompt about a quiet harbour")],
        **names,
    )
    (step,) = result.steps
    assert step.s3_uris == [] and step.prompts and step.prompts[0].startswith("a very long")
    sidecar = json.loads(s3_bytes(bucket, step.sidecar_uri))
    assert sidecar["prompts"] == step.prompts
    assert result.total_points == 20 == sim.stats()["points"]["charged"]


def test_parent_flow_retry_reuses_the_jobs_of_its_subflow(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    from prefect import flow

    sim, _, names = blocks
    attempts = {"n": 0}

    @flow(retries=1, retry_delay_seconds=0)
    def nightly() -> ChainResult:
        chain = legnext_chain(prompt="a harbour", steps=["diffusion", "enhance"], **names)
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("something after the subflow failed")
        return chain

    result = nightly()
    assert attempts["n"] == 2 and len(result.steps) == 2
    stats = sim.stats()
    assert stats["jobs_total"] == 2 and stats["duplicate_creates"] == 0


def test_what_a_user_sees_while_a_chain_runs(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    from prefect_legnext.orchestration.flows import STEP_LISTENERS, StepProgress

    sim, bucket, names = blocks
    seen: list[StepProgress] = []
    STEP_LISTENERS.append(seen.append)
    try:
        state = legnext_chain(
            prompt="a quiet harbour at dusk", steps=["diffusion", "enhance"], return_state=True,
            **names,
        )  # fmt: skip
    finally:
        STEP_LISTENERS.remove(seen.append)
    result: ChainResult = state.result()
    flow_run_id = state.state_details.flow_run_id
    first, second = (s.job_id for s in result.steps)

    # Each step, as it happens: submitted, its statuses, persisted.
    phases = [(e.index, e.action, e.phase) for e in seen if e.phase != "status"]
    assert phases == [
        (1, "diffusion", "submitted"), (1, "diffusion", "persisted"),
        (2, "enhance", "submitted"), (2, "enhance", "persisted"),
    ]  # fmt: skip
    statuses = [e.detail for e in seen if e.phase == "status" and e.job_id == first]
    assert statuses[-1] == "completed" and len(statuses) == len(set(statuses))
    assert {e.chain for e in seen} == {"a quiet harbour at dusk"}
    assert {e.flow_run_id for e in seen} == {str(flow_run_id)}

    with get_client(sync_client=True) as client:
        # Task runs named for what they do.
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        run_names = {t.name for t in task_runs}
        assert {
            "1 diffusion: submit", f"1 diffusion: wait {first[:8]}",
            f"1 diffusion: persist {first[:8]}", "2 enhance: submit",
            f"2 enhance: wait {second[:8]}", f"2 enhance: persist {second[:8]}",
        } <= run_names  # fmt: skip
        # The graph's edges: each wait takes its submit's job, each persist its wait's.
        by_name = {t.name: t for t in task_runs}
        for index, action, job_id in ((1, "diffusion", first), (2, "enhance", second)):
            submit = by_name[f"{index} {action}: submit"]
            wait = by_name[f"{index} {action}: wait {job_id[:8]}"]
            persist = by_name[f"{index} {action}: persist {job_id[:8]}"]
            assert [i.id for i in wait.task_inputs["job"]] == [submit.id]
            assert [i.id for i in persist.task_inputs["job"]] == [wait.id]

        # The summary table: the prompt, each step's S3 outputs with a link, the points.
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        table = next(a for a in artifacts if a.type == "table")
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        assert [r["prompt"] for r in rows] == ["a quiet harbour at dusk"] * 2
        assert [r["points"] for r in rows] == [40, 80]
        for row, step in zip(rows, result.steps, strict=True):
            assert row["outputs"] == f"s3://{bucket.bucket_name}/legnext/{step.job_id}/"
            assert httpx.get(row["link"]).status_code == 200  # a working presigned link
        assert "a quiet harbour at dusk" in (table.description or "")

        # The run log says where the credentials came from, never the key.
        APILogWorker.drain_all(timeout=30)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    text = "\n".join(log.message for log in logs)
    assert f"Legnext credentials from saved block '{names['credentials_block']}'" in text
    assert sim.api_key not in text


def test_a_misspelt_credentials_block_is_an_error_even_with_a_key_in_the_environment(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_legnext.orchestration.errors import ConfigurationError

    sim, _, names = blocks
    monkeypatch.setenv("LEGNEXT_API_KEY", sim.api_key)
    monkeypatch.setenv("LEGNEXT_BASE_URL", sim.base_url)
    with pytest.raises(
        ConfigurationError, match="no saved Legnext Credentials block named 'legnxt'"
    ):
        legnext_chain(prompt="a tower", **{**names, "credentials_block": "legnxt"})
    assert sim.stats()["jobs_total"] == 0


def test_enhance_works_on_a_parent_without_an_enhance_key(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]],
) -> None:
    sim, _, names = blocks
    result = legnext_chain(prompt="a kite", steps=["diffusion", "enhance"], **names)
    parent = next(j for j in sim.jobs() if j["job_id"] == result.steps[0].job_id)
    # What Legnext shows (the vendor's sample): no enhance key; the chain still ran.
    with httpx.Client(base_url=sim.base_url, headers={"x-api-key": sim.api_key}) as http:
        shown = http.get(f"/api/v1/job/{parent['job_id']}").json()["output"]["available_actions"]
    assert "enhance" not in shown
    assert [s.action for s in result.steps] == ["diffusion", "enhance"]


def test_one_budget_checks_every_submit_of_a_batch_on_a_process_pool(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    from prefect.task_runners import ProcessPoolTaskRunner

    sim = legnext_simulator_factory(time_scale=0.002, points=300)
    bucket = local_s3_server.create_bucket()
    suffix = bucket.bucket_name.removeprefix("legnext-")
    names = {"credentials_block": f"legnext-{suffix}", "storage_block": f"outputs-{suffix}"}
    credentials_for(sim).save(names["credentials_block"])
    bucket.save(names["storage_block"])
    batch = legnext_batch.with_options(task_runner=ProcessPoolTaskRunner(max_workers=2))
    # A scope skips the plan's balance check (its jobs could be reused), so only the check
    # before each submit stands between four 120-point chains and the account's 300 points.
    state = batch(
        prompts=[f"a process heron {i}" for i in range(4)], steps=["diffusion", "enhance"],
        idempotency_scope=f"budget-{suffix}", return_state=True, **names,
    )  # fmt: skip
    with pytest.raises(BudgetExceededError, match=r"the account has \d+ left; not submitted"):
        state.result()
    stats = sim.stats()
    assert 0 < stats["points"]["charged"] <= 300
    # Refused before submitting: every create Legnext saw became a job (none refused
    # for lack of points), and every submit the budget let through was paid for once.
    creates = sum(n for route, n in stats["requests"].items() if route.startswith("POST"))
    assert creates == stats["jobs_total"] < 8, stats["requests"]
    assert stats["duplicate_creates"] == 0


def test_a_new_step_reads_nothing_from_the_ledger(
    legnext_simulator_factory: Any, local_s3_server: LocalS3Server
) -> None:
    from s3_faults import FaultPlan, S3FaultProxy, bucket_through

    sim = legnext_simulator_factory(time_scale=0.002)
    plan = FaultPlan("reset", times=0)  # breaks nothing: it counts S3 requests
    with S3FaultProxy(local_s3_server.endpoint_url, plan) as proxy:
        names = save_blocks(bucket_through(proxy, local_s3_server.create_bucket()), sim)
        steps = [
            ChainStep(action="diffusion", prompt="read once"),
            ChainStep(action="upscale", options={"type": 1}),
        ]
        legnext_pipeline(steps, **names)
    record_reads = [
        line for line in plan.seen
        if line.startswith("GET ") and "/_ledger/" in line and "/_jobs/" not in line
        and "list-type" not in line
    ]  # fmt: skip
    # Issue 12: the submit's conditional create is the existence check.
    assert record_reads == []
    creates = [line for line in plan.seen if line.startswith("PUT ") and "/_ledger/" in line]
    assert len(creates) >= 2, plan.seen  # each step's record was written
    assert sim.stats()["jobs_total"] == 2


def test_a_rerun_recovers_a_step_whose_create_got_a_503_without_paying_again(
    blocks: tuple[LegnextSimulator, S3Bucket, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:

    from prefect_legnext.core.errors import OutcomeUnknownError
    from prefect_legnext.orchestration import flows
    from prefect_legnext.orchestration.ledger import ANSWERED_5XX_SETTLE, S3Ledger

    sim, bucket, names = blocks
    monkeypatch.setattr(flows, "submit_step", flows.submit_step.with_options(retries=0))
    steps = [
        ChainStep(action="diffusion", prompt="a harbour"),
        ChainStep(action="upscale", options={"type": 1}),
    ]
    scope = {"idempotency_scope": f"rerun-{bucket.bucket_name}"}
    sim.set_faults({"upscale": {"server_error_rate": 1.0}})  # a 503 creates nothing
    state = legnext_pipeline(steps, return_state=True, **scope, **names)
    with pytest.raises(OutcomeUnknownError, match="HTTP 503"):
        state.result()
    (paid,) = sim.jobs()
    ledger = S3Ledger(bucket)
    (stuck,) = [r for r in ledger.records_since(datetime(2000, 1, 1, tzinfo=UTC)) if not r.job_id]
    assert stuck.state == "unknown" and stuck.create_status == 503
    sim.set_faults({})
    # Once the 503's settle time has passed with no job in sight, a re-run submits the
    # step again and reuses the finished one.
    settled = stuck.answered_at + ANSWERED_5XX_SETTLE  # type: ignore[operator]
    time.sleep(max(0.0, (settled - datetime.now(UTC)).total_seconds()))
    result = legnext_pipeline(steps, **scope, **names)
    assert result.steps[0].job_id == paid["job_id"]
    stats = sim.stats()
    assert stats["requests"]["POST diffusion"] == 1 and stats["jobs_total"] == 2
    conclusion = ledger.get(stuck.key)
    assert conclusion is not None and conclusion.job_id == result.steps[1].job_id
