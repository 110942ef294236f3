"""deployments/prefect.yaml and serve.py stay in step with the flows (the slow
distributed test deploys them for real)."""

from __future__ import annotations

import runpy
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from prefect_legnext.orchestration import flows, sweeper

DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deployments"


def test_prefect_yaml_entrypoints_and_defaults_are_valid() -> None:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    assert spec["pull"] == []  # workers import the installed package
    names = set()
    for deployment in spec["deployments"]:
        flow_obj = load_flow_from_entrypoint(deployment["entrypoint"])
        assert flow_obj in (
            flows.legnext_chain, flows.legnext_batch, flows.legnext_pipeline,
            sweeper.legnext_sweeper,
        )  # fmt: skip
        assert deployment["work_pool"]["name"] == "legnext-process"
        # The defaults given there are valid parameters of the flow.
        flow_obj.validate_parameters(deployment["parameters"])
        for schedule in deployment.get("schedules", []):
            assert schedule["active"] is False
            if "cron" in schedule:
                assert schedule["cron"].count(" ") == 4
            else:  # the sweeper: often enough to renew a job's slot before it runs out
                assert 0 < schedule["interval"] < 60 * 2
        names.add(deployment["name"])
    assert names == {"legnext-chain", "legnext-batch", "legnext-pipeline", "legnext-sweeper"}


def test_serve_script_imports_the_flows_without_serving() -> None:
    namespace = runpy.run_path(str(DEPLOYMENTS / "serve.py"), run_name="not_main")
    assert namespace["legnext_chain"] is flows.legnext_chain
    assert namespace["legnext_batch"] is flows.legnext_batch
