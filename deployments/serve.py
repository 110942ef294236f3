"""Serve the flows from this process, without a work pool:

    python deployments/serve.py

Runs started from the UI or with `prefect deployment run` execute here. For a fleet
of workers, deploy `prefect.yaml` to a work pool instead.
"""

from prefect import serve
from prefect.schedules import Cron

from prefect_legnext.orchestration.flows import legnext_batch, legnext_chain, legnext_pipeline

if __name__ == "__main__":
    serve(
        legnext_chain.to_deployment(
            name="legnext-chain-served",
            parameters={"prompt": "a lighthouse on a cliff at dawn, volumetric light"},
            schedule=Cron("0 6 * * *", timezone="UTC", active=False),
            tags=["legnext"],
            enforce_parameter_schema=True,  # bad parameters refused when a run is created
        ),
        legnext_batch.to_deployment(
            name="legnext-batch-served",
            parameters={"prompts": ["a fox in the snow", "a heron at dusk"]},
            tags=["legnext"],
            enforce_parameter_schema=True,  # bad parameters refused when a run is created
        ),
        legnext_pipeline.to_deployment(
            name="legnext-pipeline-served", tags=["legnext"], enforce_parameter_schema=True
        ),
    )
