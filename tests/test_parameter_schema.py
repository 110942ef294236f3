"""Flow parameters that cannot be valid are refused when a run is created from a
deployment (the UI, the API, ``prefect deployment run``), not later on a worker: the
deployments enforce the flows' parameter schemas, which say all they can. What a JSON
Schema cannot say (a point beyond its polygon's width, an odd count of coordinates) is
refused by the flow before any paid call (docs/request-rules.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import PrefectHTTPStatusError

from prefect_legnext.orchestration.flows import legnext_chain, legnext_pipeline
from prefect_support import credentials_for

pytestmark = pytest.mark.usefixtures("prefect_server")

SQUARE = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500, 10, 500]}
MASK_URL = "https://img.example.test/mask.png"


def polygon(**changes: Any) -> dict[str, Any]:
    return {"areas": [SQUARE | changes]}


# (case id, parameters beyond the prompt, the parameter the refusal must name)
CHAIN_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("mask-both-sources", {"inpaint_mask": {"areas": [SQUARE], "url": MASK_URL}}, "inpaint_mask"),
    ("mask-no-source", {"inpaint_mask": {}}, "inpaint_mask"),
    ("mask-both-null", {"inpaint_mask": {"areas": None, "url": None}}, "inpaint_mask"),
    ("mask-no-polygon", {"inpaint_mask": {"areas": []}}, "inpaint_mask"),
    ("mask-url-not-http", {"inpaint_mask": {"url": "ftp://img.test/m.png"}}, "inpaint_mask"),
    ("mask-url-no-host", {"inpaint_mask": {"url": "https:///m.png"}}, "inpaint_mask"),
    ("mask-url-space", {"inpaint_mask": {"url": "https://img.test/a b.png"}}, "inpaint_mask"),
    ("mask-unknown-key", {"inpaint_mask": {"url": MASK_URL, "colour": "white"}}, "inpaint_mask"),
    ("polygon-too-small", {"inpaint_mask": polygon(width=499)}, "inpaint_mask"),
    ("polygon-too-large", {"inpaint_mask": polygon(height=4097)}, "inpaint_mask"),
    ("polygon-two-points", {"inpaint_mask": polygon(points=[0, 0, 10, 10])}, "inpaint_mask"),
    ("point-negative", {"inpaint_mask": polygon(points=[-1, 0, 10, 0, 10, 10])}, "inpaint_mask"),
    ("point-beyond-any-image", {"inpaint_mask": polygon(points=[0, 0, 4097, 0, 9, 9])},
     "inpaint_mask"),
    ("polygon-no-points", {"inpaint_mask": {"areas": [{"width": 600, "height": 600}]}},
     "inpaint_mask"),
    ("mask-kind-unknown", {"inpaint_mask": {"kind": "circle"}}, "inpaint_mask"),
    ("rect-fraction-above-one",
     {"inpaint_mask": {"kind": "rectangle", "x": 1.5, "y": 0, "width": 0.1, "height": 0.1}},
     "inpaint_mask"),
    ("rect-missing-height",
     {"inpaint_mask": {"kind": "rectangle", "x": 0, "y": 0, "width": 0.1}}, "inpaint_mask"),
    ("pixels-image-too-small",
     {"inpaint_mask": {"kind": "pixel_rectangle", "x": 0, "y": 0, "width": 9, "height": 9,
                       "image_width": 100}}, "inpaint_mask"),
    ("region-unknown", {"inpaint_mask": {"kind": "region", "region": "middle"}},
     "inpaint_mask"),
    ("region-with-polygon",
     {"inpaint_mask": {"kind": "region", "region": "center", "areas": [SQUARE]}},
     "inpaint_mask"),
    ("image-no", {"image_no": 4}, "image_no"),
    ("image-no-bool", {"image_no": True}, "image_no"),
    ("prompt-empty", {"prompt": ""}, "prompt"),
    ("prompt-too-long", {"prompt": "x" * 8193}, "prompt"),
    ("inpaint-prompt-too-long", {"inpaint_prompt": "x" * 8193}, "inpaint_prompt"),
    ("steps-empty", {"steps": []}, "steps"),
    ("steps-unknown", {"steps": ["diffusion", "upscale"]}, "steps"),
    ("source-unknown", {"retexture_source": "ftp"}, "retexture_source"),
    ("wait-zero", {"max_wait_seconds": 0}, "max_wait_seconds"),
    ("wait-over-a-day", {"max_wait_seconds": 86401}, "max_wait_seconds"),
    ("points-negative", {"max_points": -1}, "max_points"),
]  # fmt: skip
PIPELINE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no-steps", {"steps": []}, "steps"),
    ("unknown-action", {"steps": [{"action": "paint"}]}, "steps"),
    ("image-no", {"steps": [{"action": "diffusion", "prompt": "a", "image_no": 7}]}, "steps"),
    ("prompt-empty", {"steps": [{"action": "diffusion", "prompt": ""}]}, "steps"),
    ("unknown-key", {"steps": [{"action": "diffusion", "prompt": "a", "seed": 1}]}, "steps"),
    ("mask-both",
     {"steps": [{"action": "diffusion", "prompt": "a"},
                {"action": "inpaint", "mask": {"areas": [SQUARE], "url": MASK_URL}}]},
     "steps"),
    ("source-unknown", {"steps": [{"action": "diffusion", "prompt": "a"}], "image_source": "x"},
     "image_source"),
]  # fmt: skip


@pytest.fixture(scope="module")
def deployments() -> Iterator[dict[str, UUID]]:
    """The two flows deployed as `prefect deploy` and `serve.py` do (schema enforced)."""
    suffix = uuid4().hex[:8]
    ids = {
        "chain": legnext_chain.to_deployment(name=f"schema-{suffix}").apply(),
        "pipeline": legnext_pipeline.to_deployment(name=f"schema-{suffix}").apply(),
    }
    yield ids
    with get_client(sync_client=True) as client:
        for deployment_id in ids.values():
            client.delete_deployment(deployment_id)


def runs_of(client: SyncPrefectClient, deployment_id: UUID) -> list[Any]:
    only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    return client.read_flow_runs(deployment_filter=only)


def assert_refused(deployment_id: UUID, parameters: dict[str, Any], names: str) -> None:
    with get_client(sync_client=True) as client:
        assert client.read_deployment(deployment_id).enforce_parameter_schema
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        assert runs_of(client, deployment_id) == []
    response = refused.value.response
    assert response.status_code in (409, 422), response.text
    detail = response.json()["detail"]
    assert detail.startswith("Error creating flow run: Validation failed"), detail
    assert names in detail, detail


@pytest.mark.parametrize(("parameters", "names"), [c[1:] for c in CHAIN_CASES],
                         ids=[c[0] for c in CHAIN_CASES])  # fmt: skip
def test_the_chain_deployment_refuses_impossible_parameters_at_creation(
    deployments: dict[str, UUID], parameters: dict[str, Any], names: str
) -> None:
    assert_refused(deployments["chain"], {"prompt": "a harbour"} | parameters, names)


@pytest.mark.parametrize(("parameters", "names"), [c[1:] for c in PIPELINE_CASES],
                         ids=[c[0] for c in PIPELINE_CASES])  # fmt: skip
def test_the_pipeline_deployment_refuses_impossible_parameters_at_creation(
    deployments: dict[str, UUID], parameters: dict[str, Any], names: str
) -> None:
    assert_refused(deployments["pipeline"], parameters, names)


def test_the_chain_deployment_refuses_a_run_without_a_prompt(
    deployments: dict[str, UUID],
) -> None:
    assert_refused(deployments["chain"], {}, "prompt")


# What the schemas cannot say: accepted at creation, refused by the flow on the worker.
SIBLING_CASES = {
    "point-beyond-the-width": polygon(width=600, points=[0, 0, 700, 0, 10, 10]),
    "odd-count": polygon(points=[0, 0, 10, 0, 10, 10, 5]),
    "rectangle-leaves-the-image": {
        "kind": "rectangle", "x": 0.75, "y": 0, "width": 0.5, "height": 0.5,
    },
    "pixels-leave-the-image": {
        "kind": "pixel_rectangle", "x": 1000, "y": 0, "width": 100, "height": 100,
    },
}  # fmt: skip


def test_valid_parameters_and_what_no_schema_can_say_create_a_run(
    deployments: dict[str, UUID],
) -> None:
    masks = [
        polygon(), {"url": MASK_URL}, {"areas": [SQUARE], "url": None},
        {"kind": "rectangle", "x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5},
        {"kind": "pixel_rectangle", "x": 0, "y": 0, "width": 10, "height": 10,
         "image_width": 2048, "image_height": 2048},
        {"kind": "region", "region": "bottom_half"},
    ]  # fmt: skip
    with get_client(sync_client=True) as client:
        for mask in [*masks, *SIBLING_CASES.values()]:
            parameters = {"prompt": "a harbour", "inpaint_mask": mask, "image_no": 3}
            run = client.create_flow_run_from_deployment(
                deployments["chain"], parameters=parameters
            )
            client.delete_flow_run(run.id)  # never picked up: nothing serves it here


@pytest.mark.parametrize("mask", SIBLING_CASES.values(), ids=SIBLING_CASES)
def test_what_no_schema_can_say_is_refused_before_any_paid_call(
    legnext_simulator: Any, mask: dict[str, Any]
) -> None:
    block = f"schema-{uuid4().hex[:8]}"
    credentials_for(legnext_simulator).save(block)
    state = legnext_chain(
        prompt="a harbour", inpaint_mask=mask, credentials_block=block,
        storage_block="no-such-bucket-block", return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    assert "inpaint_mask" in (state.message or ""), state.message
    assert legnext_simulator.stats()["requests"] == {}  # not even the balance was read
