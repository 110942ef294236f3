"""The Prefect layer on the Legnext core: the credentials block, the tasks (submit
at most once through the ledger, wait, persist), S3 storage, chain planning and the
flows. It imports the core (`prefect_legnext.core`), never the CLI or the simulator.

Import from the modules: `prefect_legnext.orchestration.flows` (``legnext_chain``,
``legnext_batch``), `.tasks` (``submit_<endpoint>``, ``wait_for_job``,
``persist_outputs``), `.blocks` (``LegnextCredentials``), `.errors`.
"""
