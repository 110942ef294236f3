"""The API key is nowhere a run leaves words or bytes: whole chains under every fault
the simulator injects, in this process and through the command line, on the test's
Prefect server, then a scan of everything they produced for the key in any encoding:
logs, outputs, S3 objects, the server's database files, the Prefect homes.

A control secret of the same form goes deliberately through each channel (a run log,
an artifact, an event, a flow parameter, a persisted result, an S3 object, a file), so
the scan is shown to reach every place it reports clean.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    temporary_settings,
)
from prefect_aws import S3Bucket

from cli_support import CLI, COMMAND_TIMEOUT, cli_env
from leak_scan import canary, encodings, find, scan_blobs, scan_files
from prefect_legnext.orchestration.blocks import LegnextCredentials
from prefect_legnext.orchestration.flows import legnext_chain, legnext_pipeline
from prefect_legnext.orchestration.plans import ChainStep
from prefect_legnext.orchestration.resolve import resolve_credentials
from prefect_legnext.prefect_api import local_database
from prefect_legnext.simulator.s3 import LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY

pytestmark = pytest.mark.timeout(900)

KEY = canary()
CONTROL = canary()
CHAIN_CREATES = ("diffusion", "enhance", "inpaint", "retexture", "upscale", "shorten")
# Every fault of the simulator a chain can meet (docs/simulator.md), at rates the
# clients' and tasks' retries get through. A 5xx answer to a create leaves its outcome
# unknown, and the ledger never resubmits a create it cannot reconcile: creates get
# 5xx only in the run that is meant to fail on it.
FAULTS: dict[str, dict[str, float]] = {
    "*": {"server_error_rate": 0.1, "rate_limit_rate": 0.1, "retry_after": 0, "latency": 0.01},
    **{name: {"server_error_rate": 0.0} for name in CHAIN_CREATES},
    "files": {"download_error_rate": 0.2, "download_delay": 0.01},
}
# Every diffusion answer dropped after its job was created: the submit reconciles with
# the account's active tasks, so the job must still be running then (a slower clock).
DROPS = FAULTS | {"diffusion": {"drop_after_accept_rate": 1.0, "server_error_rate": 0.0}}
# The command line's chain meets a create answered 5xx at its last step: the run fails
# with OutcomeUnknownError (the ledger does not resubmit), whose words are scanned.
CREATE_5XX = FAULTS | {"retexture": {"server_error_rate": 1.0}}
SLOW_TIME_SCALE = 0.1
LOGGERS = ("", "prefect", "prefect_legnext", "httpx", "httpcore", "botocore", "urllib3")
POLL_SECONDS, CONTROL_WAIT_SECONDS, CONTROL_RESEND_SECONDS = 0.5, 300, 45
PAGE = 200


class Collect(logging.Handler):
    """Every record, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(record.args))


@contextmanager
def collected_logs() -> Iterator[Collect]:
    """All log records at DEBUG of the loggers a run speaks through (Prefect's do not
    all propagate to the root, so each gets the handler)."""
    handler = Collect()
    levels = {}
    for name in LOGGERS:
        log = logging.getLogger(name)
        levels[name] = log.level
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
    try:
        yield handler
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(levels[name])


@flow(name="leak-scan-control", persist_result=True)
def control_flow(token: str) -> str:
    """The control secret through a run log, an artifact, an event, a flow parameter and
    a persisted result: where the scan must find it."""
    get_run_logger().info("control token %s", token)
    create_markdown_artifact(markdown=f"control {token}", description="leak scan control")
    emit_control_event(token)
    return token


def everything_about(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


def s3_blobs(bucket: S3Bucket) -> dict[str, bytes]:
    """Every object of `bucket` (outputs, sidecars, ledger records) with its metadata."""
    s3 = bucket.credentials.get_s3_client()
    blobs = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket_name):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket.bucket_name, Key=item["Key"])
            head = json.dumps({k: str(v) for k, v in got.items() if k != "Body"})
            blobs[f"s3://{bucket.bucket_name}/{item['Key']}"] = got["Body"].read() + head.encode()
    return blobs


def _pages(read: Callable[[int], list[Any]]) -> list[Any]:
    """Every item of a paged API read (`read(offset)` gives one page)."""
    items: list[Any] = []
    while page := read(len(items)):
        items.extend(page)
    return items


def api_blobs(since: float) -> dict[str, bytes]:
    """Logs, artifacts and events the Prefect API serves (as JSON), since `since`."""
    from datetime import datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp

    start = datetime.fromtimestamp(since - 60, tz=UTC)
    recent = LogFilter(timestamp=LogFilterTimestamp(after_=start))
    blobs: dict[str, bytes] = {}
    with get_client(sync_client=True) as client:
        logs = _pages(lambda n: client.read_logs(log_filter=recent, limit=PAGE, offset=n))
        artifacts = _pages(lambda n: client.read_artifacts(limit=PAGE, offset=n))
        body = {"filter": {"occurred": {"since": start.isoformat()}}, "limit": 50}
        page = client.request("POST", "/events/filter", json=body).json()
        events = list(page["events"])
        while page.get("next_page"):
            page = client._client.get(page["next_page"]).json()
            events.extend(page["events"])
    for name, items in (("logs", logs), ("artifacts", artifacts)):
        dumped = [item.model_dump(mode="json") for item in items]
        blobs[f"api:{name}"] = json.dumps(dumped).encode()
    blobs["api:events"] = json.dumps(events).encode()
    return blobs


def emit_control_event(token: str) -> None:
    emit_event(
        event="leak-scan.control",
        resource={"prefect.resource.id": f"leak-scan.{token[-8:]}"},
        payload={"token": token},
    )


def wait_for_control(read: Callable[[], dict[str, bytes]], places: tuple[str, ...]) -> None:
    """Until the control secret shows in each of `places` (the server persists events
    and logs in batches, in the order it received them: once the control's are there,
    every earlier run's are too).

    A control event that has not shown after `CONTROL_RESEND_SECONDS` is sent again
    (twice in fresh-clone CI runs on a loaded machine, the first one never showed; an
    event lost on its way cannot have carried a leak to the server either, and one that
    arrives later proves as much: the server still persists in the order received)."""
    start = time.monotonic()
    deadline, resend = start + CONTROL_WAIT_SECONDS, start + CONTROL_RESEND_SECONDS
    while True:
        hits = scan_blobs(CONTROL, read())
        missing = [place for place in places if not any(place in name for name in hits)]
        if not missing:
            return
        assert time.monotonic() < deadline, f"the control secret never reached {missing}"
        if "api:events" in missing and time.monotonic() >= resend:
            emit_control_event(CONTROL)
            resend = time.monotonic() + CONTROL_RESEND_SECONDS
        time.sleep(POLL_SECONDS)


def database_files() -> dict[str, bytes]:
    """The test server's SQLite files (the database, its WAL and shared memory)."""
    database = local_database()
    assert database is not None and database.exists(), database
    return {str(path): path.read_bytes() for path in sorted(database.parent.glob("*"))}


def test_the_scan_finds_every_encoding() -> None:
    for name, form in encodings(CONTROL).items():
        blob = b"noise " + form + b" noise"
        assert name in find(CONTROL, blob), name
        assert find(KEY, blob) == []
    assert find(CONTROL, CONTROL.upper().encode())  # a core upper-cased on the way


@pytest.mark.usefixtures("prefect_server")
def test_the_key_leaks_nowhere(
    legnext_simulator_factory: Callable[..., Any],
    local_s3_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sim = legnext_simulator_factory(api_key=KEY, seed=7, faults=FAULTS)
    slow_sim = legnext_simulator_factory(
        api_key=KEY, seed=7, faults=DROPS, time_scale=SLOW_TIME_SCALE
    )
    cli_sim = legnext_simulator_factory(api_key=KEY, seed=7, faults=CREATE_5XX)
    bucket, cli_bucket = local_s3_server.create_bucket(), local_s3_server.create_bucket()
    storage = f"outputs-{bucket.bucket_name}"
    bucket.save(storage)
    started = time.time()

    # The command line first: its Prefect server starts while the in-process runs go.
    cli_home = tmp_path / "cli-home"
    env = cli_env(
        cli_home,
        LEGNEXT_API_KEY=KEY + "\r\n",  # as read from a file written on Windows
        LEGNEXT_BASE_URL=cli_sim.base_url,
        LEGNEXT_POLL_SCALE=str(cli_sim.config.time_scale),
        LEGNEXT_S3_BUCKET=cli_bucket.bucket_name,
        LEGNEXT_S3_ENDPOINT_URL=local_s3_server.endpoint_url,
        AWS_ACCESS_KEY_ID=LOCAL_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=LOCAL_SECRET_KEY,
        AWS_DEFAULT_REGION=LOCAL_REGION,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT="true",
        # The test's Prefect server, whose database is scanned (a second server starting
        # beside it would only slow a loaded machine down).
        PREFECT_API_URL=PREFECT_API_URL.value(),
    )
    chain_cli = subprocess.Popen(
        [CLI, "chain", "a canary over the harbour", "--steps", "diffusion,enhance,retexture",
         "--credentials-block", "", "--storage-block", ""],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        results_dir, ledger_dir = tmp_path / "results", tmp_path / "ledger"
        updates = {
            PREFECT_RESULTS_PERSIST_BY_DEFAULT: True,
            PREFECT_LOCAL_STORAGE_PATH: results_dir,
        }
        texts: dict[str, str] = {}
        with collected_logs() as logs, temporary_settings(updates=updates):
            texts |= run_in_process(sim, slow_sim, storage, ledger_dir, monkeypatch)
            assert control_flow(CONTROL) == CONTROL
        cli_out, cli_err = chain_cli.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if chain_cli.poll() is None:
            chain_cli.kill()
            chain_cli.communicate(timeout=60)
    balance_cli = subprocess.run(
        [CLI, "balance", "--base-url", cli_sim.base_url], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert chain_cli.returncode == 1, cli_out + cli_err
    assert "OutcomeUnknown" in cli_err or "outcome is unknown" in cli_err, cli_err
    assert "step 2 enhance   persisted" in cli_out, cli_out
    assert balance_cli.returncode == 0 and "points available" in balance_cli.stdout

    # The faults did happen, so the error paths ran.
    assert slow_sim.stats()["dropped_responses"] > 0
    assert sim.stats()["jobs_by_status"].get("failed", 0) > 0
    assert any("retrying" in line for line in logs.lines)

    places = ("api:logs", "api:artifacts", "api:events", "prefect-test")
    wait_for_control(lambda: api_blobs(started) | database_files(), places)
    captured = capfd.readouterr()
    texts |= {
        "logs": "\n".join(logs.lines),
        "test stdout": captured.out,
        "test stderr": captured.err,
        "cli chain stdout": cli_out,
        "cli chain stderr": cli_err,
        "cli balance": balance_cli.stdout + balance_cli.stderr,
    }
    blobs = {name: text.encode() for name, text in texts.items()}
    blobs |= s3_blobs(bucket) | s3_blobs(cli_bucket) | api_blobs(started) | database_files()
    roots = (results_dir, ledger_dir, cli_home)

    # The control shows wherever it was put, so a clean scan of those places means something.
    (cli_home / "control.txt").write_text(f"written on purpose: {CONTROL}")
    cli_bucket.credentials.get_s3_client().put_object(
        Bucket=cli_bucket.bucket_name, Key="control.txt", Body=CONTROL.encode()
    )
    control_hits = scan_blobs(CONTROL, blobs | s3_blobs(cli_bucket)) | scan_files(CONTROL, roots)
    for place in ("api:logs", "api:artifacts", "api:events", "prefect-test.db", "logs",
                  str(results_dir), "control.txt"):  # fmt: skip
        assert any(place in name for name in control_hits), (place, sorted(control_hits))

    leaks = scan_blobs(KEY, blobs) | scan_files(KEY, roots)
    assert leaks == {}, leaks


def run_in_process(
    sim: Any, slow_sim: Any, storage: str, ledger_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The chains in this process, on the test's Prefect server; the text they left in
    Python objects (reprs, exceptions) for the scan."""
    from prefect_legnext.orchestration._generated_tasks import submit_shorten

    texts: dict[str, str] = {}
    # A saved block whose key was pasted with spaces around it (stripped on save).
    saved = f"legnext-leak-{sim.base_url.rsplit(':', 1)[1]}"
    LegnextCredentials(
        api_key=f" {KEY} ", base_url=sim.base_url, poll_scale=sim.config.time_scale
    ).save(saved, overwrite=True)
    chain = legnext_chain(
        prompt="a canary on a wire",
        credentials_block=saved,
        storage_block=storage,
        max_wait_seconds=300,
        return_state=True,
    )
    assert chain.is_completed(), chain.message

    # The environment's key with a trailing newline, and a job that fails.
    monkeypatch.setenv("LEGNEXT_API_KEY", KEY + "\n")
    monkeypatch.setenv("LEGNEXT_BASE_URL", sim.base_url)
    monkeypatch.setenv("LEGNEXT_POLL_SCALE", str(sim.config.time_scale))
    sim.set_faults(FAULTS | {"upscale": {"job_failure_rate": 1.0, "server_error_rate": 0.0}})
    failed = legnext_pipeline(
        steps=[
            ChainStep(action="diffusion", prompt="a canary in a cage"),
            ChainStep(action="upscale", image_no=2, options={"type": 0}),
        ],
        credentials_block="",
        storage_block=storage,
        max_wait_seconds=300,
        return_state=True,
    )
    assert failed.is_failed(), failed.message
    texts["failed run"] = everything_about(failed.result(raise_on_failure=False))
    sim.set_faults(FAULTS)

    # A create whose answer is lost: reconciled (or, if it cannot be, the run fails with
    # OutcomeUnknownError, whose words are scanned too).
    monkeypatch.setenv("LEGNEXT_BASE_URL", slow_sim.base_url)
    monkeypatch.setenv("LEGNEXT_POLL_SCALE", str(SLOW_TIME_SCALE))
    dropped = legnext_pipeline(
        steps=[ChainStep(action="diffusion", prompt="a canary lost and found")],
        credentials_block="",
        storage_block=storage,
        max_wait_seconds=300,
        return_state=True,
    )
    if dropped.is_failed():
        texts["dropped run"] = everything_about(dropped.result(raise_on_failure=False))
    monkeypatch.setenv("LEGNEXT_BASE_URL", sim.base_url)
    monkeypatch.setenv("LEGNEXT_POLL_SCALE", str(sim.config.time_scale))

    # A submit task on its own, recorded in a local ledger directory.
    credentials, source = resolve_credentials("")
    standalone = flow(name="leak-scan-submit")(
        lambda: submit_shorten(credentials, prompt="a canary's song", ledger=ledger_dir)
    )
    assert standalone().job_id
    loaded = LegnextCredentials.load(saved)
    texts["reprs"] = "\n".join(
        [source, repr(credentials), str(credentials), repr(loaded), str(loaded),
         repr(loaded.model_dump()), loaded.model_dump_json(), repr(credentials.get_client())]
    )  # fmt: skip
    return texts
