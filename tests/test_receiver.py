"""The callback receiver: its gate on its own, then served by uvicorn on loopback with
the simulator as a real peer sending real (signed, faulty) callbacks, an S3 ledger on
moto's server, and a real Prefect server for the events and the resume."""

from __future__ import annotations

import json
import logging
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run

from prefect_legnext.core.callbacks import (
    FLOW_RUN_TAG,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    callback_tags,
    sign,
)
from prefect_legnext.core.models import DiffusionRequest
from prefect_legnext.core.responses import Job
from prefect_legnext.orchestration.ledger import (
    CALLBACK_TAG,
    JobLedger,
    LedgerRecord,
    S3Ledger,
    tag_callback,
)
from prefect_legnext.orchestration.receiver import (
    Arrival,
    CallbackGate,
    LegnextTaskInput,
    ReceiverApp,
    ReceiverServer,
    build_receiver,
    default_actions,
    pause_key_for,
)
from prefect_legnext.orchestration.tasks import job_event_id, submit_diffusion
from prefect_legnext.simulator import LegnextSimulator
from prefect_legnext.simulator.s3 import LocalS3Server
from prefect_legnext.testing import TEST_TIME_SCALE, legnext_client_for
from prefect_support import credentials_for

SECRET = "whsec-receiver-test-4f1e"
API_KEY = "lgx-receiver-test-7c2d1e0f"


def _signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int((time.time() if at is None else at) * 1000))
    return {
        "content-type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def _body(task_object: dict[str, Any]) -> bytes:
    return json.dumps({"timestamp": int(time.time() * 1000), "data": task_object}).encode()


def _eventually(condition: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the gate alone: headers and raw body in, a decision out -----------------------------


def test_the_gate_verifies_signatures_and_timestamps(task_object: Callable[..., Any]) -> None:
    now = 1_800_000_000.0
    gate = CallbackGate(SECRET, tolerance=300, clock=lambda: now)
    body = _body(task_object(status="completed"))
    good = gate.decide(_signed(body, at=now), body)
    assert (good.status, good.arrival is not None) == (200, True)
    # Header names in any case, as proxies may change them.
    assert gate.decide({k.lower(): v for k, v in _signed(body, at=now).items()}, body).status == 200
    assert gate.decide(_signed(body, secret="wrong", at=now), body).status == 401
    assert gate.decide({"content-type": "application/json"}, body).status == 401
    tampered = body.replace(b"completed", b"failed")
    assert gate.decide(_signed(body, at=now), tampered).status == 401
    stale = gate.decide(_signed(body, at=now - 301), body)
    ahead = gate.decide(_signed(body, at=now + 301), body)
    assert (stale.status, ahead.status) == (400, 400)
    assert "stale" in stale.reason
    assert gate.decide(_signed(body, at=now - 299), body).status == 200


def test_the_gate_refuses_what_is_not_a_task_object(task_object: Callable[..., Any]) -> None:
    gate = CallbackGate(None)
    bodies = [
        b"not json",
        b"[1, 2]",
        b'{"timestamp": 1}',
        b'{"data": "text"}',
        json.dumps({"data": {"status": "completed"}}).encode(),
        json.dumps({"data": {**task_object(), "job_id": 7}}).encode(),
        json.dumps({"data": {**task_object(), "meta": "not an object"}}).encode(),
    ]
    for body in bodies:
        decision = gate.decide({}, body)
        assert decision.status == 400 and decision.arrival is None, body
    # Unknown keys are ignored (API.md): still a task object.
    lenient = json.dumps({"timestamp": 1, "extra": 1, "data": {**task_object(), "new": 2}})
    assert gate.decide({}, lenient.encode()).status == 200
    assert gate.decide({}, b"x" * (gate.max_body_bytes + 1)).status == 413


def test_the_gate_treats_a_repeat_as_a_no_op_and_forgets_the_oldest(
    task_object: Callable[..., Any],
) -> None:
    gate = CallbackGate(None, remembered=2)
    first = gate.decide({}, _body(task_object(status="completed")))
    assert first.arrival is not None and not first.duplicate
    gate.remember(first.arrival)
    # A re-delivery with a new timestamp is the same status change: a duplicate.
    again = gate.decide({}, _body(task_object(status="completed")))
    assert again.duplicate and again.status == 200
    for n in range(2):
        other = gate.decide({}, _body(task_object(job_id=f"job-{n}", status="failed")))
        assert other.arrival is not None
        gate.remember(other.arrival)
    assert not gate.decide({}, _body(task_object(status="completed"))).duplicate


def test_tags_come_from_the_echoed_url_only(task_object: Callable[..., Any]) -> None:
    gate = CallbackGate(None)
    hook = f"https://hooks.example/cb?token=t&{CALLBACK_TAG}=k1&{FLOW_RUN_TAG}=f1"
    echoed = task_object(config={"webhook_config": {"endpoint": hook, "secret": ""}})
    arrival = gate.decide({}, _body(echoed)).arrival
    assert arrival is not None and (arrival.key, arrival.flow_run_id) == ("k1", "f1")
    bare = gate.decide({}, _body(task_object())).arrival
    assert bare is not None and (bare.key, bare.flow_run_id) == (None, None)


def test_tag_callback_adds_the_flow_run_and_keeps_the_rest() -> None:
    request = DiffusionRequest(text="x", callback=f"https://h.example/cb?a=1&{FLOW_RUN_TAG}=old")
    tagged = tag_callback(request, "key-1", "run-1").callback
    assert tagged is not None
    assert callback_tags(tagged) == {CALLBACK_TAG: "key-1", FLOW_RUN_TAG: "run-1"}
    assert "a=1" in tagged and "old" not in tagged
    untagged = tag_callback(request, "key-1").callback
    assert untagged is not None and FLOW_RUN_TAG not in untagged


async def test_text_from_the_body_cannot_forge_log_lines(
    task_object: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="prefect_legnext")
    app = ReceiverApp(CallbackGate(None), [])
    body = _body(task_object(job_id="job\nERROR forged", status="odd\r\nline"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        answer = await client.post("http://receiver/cb", content=body)
    assert answer.status_code == 200 and answer.json()["detail"] == "noted status odd__line"
    (line,) = [r.getMessage() for r in caplog.records if "callback for job" in r.getMessage()]
    assert "\n" not in line and "\r" not in line


# --- served on loopback, with the simulator as the sender ------------------------------


class Recorder:
    """An extra terminal action: which terminal deliveries got through to the actions."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, arrival: Arrival) -> str:
        job = arrival.delivery.job
        self.seen.append((job.job_id, str(job.status)))
        return "noted"

    def count(self, job_id: str) -> int:
        return sum(1 for seen, _ in self.seen if seen == job_id)


class Stack:
    def __init__(self, sim: LegnextSimulator, receiver: ReceiverServer, ledger: S3Ledger,
                 recorder: Recorder) -> None:  # fmt: skip
        self.sim = sim
        self.receiver = receiver
        self.ledger = ledger
        self.recorder = recorder

    @property
    def callback(self) -> str:
        return f"{self.receiver.url}/legnext/callback?token=proxy-secret-9d8c"

    def lost_submit(self, text: str) -> tuple[str, Job]:
        """A job whose create answer was "lost": the key's record has no job id; the job
        exists, with our tagged callback URL."""
        key = f"lost-{uuid.uuid4().hex[:12]}"
        request = tag_callback(DiffusionRequest(text=text, callback=self.callback), key)
        now = datetime.now(UTC)
        self.ledger.create(
            LedgerRecord(key=key, endpoint="diffusion", task_type="diffusion", body_sha256="-",
                         state="unknown", submitted_at=now, updated_at=now,
                         callback=request.callback)
        )  # fmt: skip
        with legnext_client_for(self.sim) as client:
            return key, client.create(request)


@pytest.fixture(scope="module")
def stack(prefect_server: None, local_s3_server: LocalS3Server) -> Iterator[Stack]:
    ledger = S3Ledger(local_s3_server.create_bucket())
    recorder = Recorder()
    app = build_receiver(SECRET, ledger, actions=[*default_actions(ledger), recorder])
    with (
        ReceiverServer(app) as receiver,
        LegnextSimulator(time_scale=TEST_TIME_SCALE, api_key=API_KEY,
                         callback_secret=SECRET) as sim,
    ):  # fmt: skip
        yield Stack(sim, receiver, ledger, recorder)


@pytest.fixture
def clean_faults(stack: Stack) -> Iterator[None]:
    stack.sim.set_faults({})
    yield
    stack.sim.set_faults({})


@pytest.fixture
def receiver_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The receiver's and the ledger's log lines; at the end, none holds a query string,
    the API key or the secret."""
    caplog.set_level(logging.INFO, logger="prefect_legnext")
    yield caplog
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (API_KEY, SECRET, "proxy-secret-9d8c", "token="):
        assert secret not in text
    assert not re.search(r"\?\S*=", text)  # no URL with a query


def _record(ledger: JobLedger, key: str) -> LedgerRecord:
    record = ledger.get(key)
    assert record is not None
    return record


def _events(job_id: str, name: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        answer = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": [name]},
                    "resource": {"id_prefix": [f"legnext.job.{job_id}"]},
                },
                "limit": 5,
            },
        )
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def test_a_signed_callback_records_the_lost_job_and_emits_its_event(
    stack: Stack, clean_faults: None, receiver_logs: pytest.LogCaptureFixture
) -> None:
    key, job = stack.lost_submit("a fox, answer lost")
    record = _eventually(lambda: (r := _record(stack.ledger, key)).job_id and r)
    assert (record.job_id, record.state) == (job.job_id, "submitted")
    assert stack.ledger.job_holder(job.job_id) == key
    # The actions run in turn: the recorder comes after the ledger's write.
    assert _eventually(lambda: stack.recorder.count(job.job_id)) == 1
    events = _eventually(lambda: _events(job.job_id, "legnext.job.completed"), timeout=60)
    assert [e["id"] for e in events] == [str(job_event_id("completed", job.job_id))]
    assert events[0]["payload"]["source"] == "callback"
    assert any(f"job {job.job_id}" in r.getMessage() for r in receiver_logs.records)


def test_a_different_job_id_is_never_written_over(
    stack: Stack, clean_faults: None, receiver_logs: pytest.LogCaptureFixture
) -> None:
    key, job = stack.lost_submit("a fox, recorded elsewhere")
    record = _eventually(lambda: (r := _record(stack.ledger, key)).job_id and r)
    other = str(uuid.uuid4())
    stack.ledger.put(record.model_copy(update={"job_id": other}))
    with legnext_client_for(stack.sim) as client:
        data = client.get_job(job.job_id).model_dump(mode="json")
    body = json.dumps({"timestamp": int(time.time() * 1000), "data": {**data, "x": 1}}).encode()
    answer = httpx.post(stack.callback, content=body, headers=_signed(body))
    assert answer.status_code == 200
    assert _record(stack.ledger, key).job_id == other
    assert any(r.levelno == logging.ERROR and "keeping the recorded job" in r.getMessage()
               for r in receiver_logs.records)  # fmt: skip


def test_duplicated_and_reordered_deliveries_change_nothing(
    stack: Stack, clean_faults: None, receiver_logs: pytest.LogCaptureFixture
) -> None:
    stack.sim.set_faults(
        {"diffusion": {"callback_duplicate_rate": 1.0, "callback_reorder_rate": 1.0}}
    )
    before = stack.sim.stats()["callbacks"]
    key, job = stack.lost_submit("a fox, said twice and out of order")
    _eventually(lambda: _record(stack.ledger, key).job_id == job.job_id)
    written = _record(stack.ledger, key).updated_at

    def settled() -> bool:
        now = stack.sim.stats()["callbacks"]
        # staged, processing, completed, each sent twice; the first two after the last.
        return now["delivered"] - before["delivered"] == 6

    _eventually(settled)
    after = stack.sim.stats()["callbacks"]
    assert after["duplicated"] - before["duplicated"] == 3
    assert after["reordered"] - before["reordered"] == 2
    assert after["abandoned"] == before["abandoned"]
    assert stack.recorder.count(job.job_id) == 1  # the terminal actions ran once
    assert _record(stack.ledger, key).updated_at == written
    lines = [r.getMessage() for r in receiver_logs.records if job.job_id in r.getMessage()]
    assert sum("duplicate delivery" in line for line in lines) == 3
    completed_at = next(i for i, line in enumerate(lines) if "(completed): 200" in line)
    assert any("noted status processing" in line for line in lines[completed_at:])


def _finished_under(
    stack: Stack, faults: dict[str, float], text: str
) -> tuple[dict[str, int], str, Job]:
    """The callback stats before, then the key and job of a lost submit made under
    `faults` and waited for until it finished."""
    stack.sim.set_faults({"diffusion": faults})
    before: dict[str, int] = stack.sim.stats()["callbacks"]
    key, job = stack.lost_submit(text)
    with legnext_client_for(stack.sim) as client:
        client.wait_for_job(job.job_id)
    return before, key, job


def test_a_forged_delivery_is_refused_and_changes_nothing(
    stack: Stack, clean_faults: None, receiver_logs: pytest.LogCaptureFixture
) -> None:
    before, key, job = _finished_under(stack, {"callback_forge_rate": 1.0}, "a fox, forged")
    # staged, processing, completed: each forged, refused on every attempt, abandoned.
    _eventually(lambda: stack.sim.stats()["callbacks"]["abandoned"] - before["abandoned"] == 3)
    after = stack.sim.stats()["callbacks"]
    assert after["forged"] - before["forged"] == 3
    assert after["delivered"] == before["delivered"]
    assert _record(stack.ledger, key).job_id is None
    assert stack.recorder.count(job.job_id) == 0
    assert any("refused: 401 bad signature" in r.getMessage() for r in receiver_logs.records)


def test_dropped_deliveries_never_arrive(stack: Stack, clean_faults: None) -> None:
    faults = {"callback_drop_rate": 1.0}
    before, key, _ = _finished_under(stack, faults, "a fox, never called back")
    _eventually(lambda: stack.sim.stats()["callbacks"]["dropped"] - before["dropped"] == 3)
    assert stack.sim.stats()["callbacks"]["delivered"] == before["delivered"]
    assert _record(stack.ledger, key).job_id is None  # left to polling or the sweeper


def test_answers_to_bad_requests(stack: Stack, task_object: Callable[..., Any]) -> None:
    url = stack.callback
    assert httpx.get(url).status_code == 405
    assert (
        httpx.post(url, content=b'{"data": 1}', headers=_signed(b'{"data": 1}')).status_code == 400
    )
    body = _body(task_object(status="completed"))
    assert httpx.post(url, content=body).status_code == 401
    stale = _signed(body, at=time.time() - 3600)
    assert httpx.post(url, content=body, headers=stale).status_code == 400


def _raw_request(url: str, head: str, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head`, then `chunks` until the server answers; the answer's status line and
    how many body bytes went out."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    sent = 0
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head.encode())
        for chunk in chunks:
            if select.select([conn], [], [], 0)[0]:
                break  # answered
            try:
                conn.sendall(chunk)
            except OSError:  # closed by the server after its answer
                break
            sent += len(chunk)
        answer = conn.recv(4096)
    return answer.split(b"\r\n", 1)[0], sent


def test_a_body_over_1_mib_is_refused_before_it_is_all_read(stack: Stack) -> None:
    path = "/legnext/callback"
    # Declared too large: refused on the headers alone (no byte of body sent).
    head = (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "content-length: 50000000\r\n\r\n")  # fmt: skip
    status, _ = _raw_request(stack.receiver.url, head, iter([]))
    assert b" 413 " in status
    # Streamed without a length: refused once past 1 MiB, long before its end (the
    # last chunk is never sent: a server waiting for all of it would never answer).
    head = (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "transfer-encoding: chunked\r\n\r\n")  # fmt: skip
    piece = b"x" * 65536
    chunks = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(200))
    status, sent = _raw_request(stack.receiver.url, head, chunks)
    assert b" 413 " in status
    assert sent < 200 * 65536


def test_a_paused_flow_run_is_resumed_with_the_task_object(
    stack: Stack, clean_faults: None, tmp_path: Any, receiver_logs: pytest.LogCaptureFixture
) -> None:
    # The callback waits until the flow has paused (a flow in callback mode that misses
    # its callback is the coming sweeper's business, not this receiver's).
    stack.sim.set_faults({"diffusion": {"callback_delay": 5.0}})
    credentials = credentials_for(stack.sim)
    ledger_dir = tmp_path / "ledger"
    submitted: dict[str, str] = {}

    @flow
    def waits_for_its_callback(callback: str) -> dict[str, Any]:
        job = submit_diffusion(credentials, text="a fox, waited for", callback=callback,
                               ledger=ledger_dir)  # fmt: skip
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        submitted.update(job_id=job.job_id, flow_run=str(context.flow_run.id))
        got = pause_flow_run(
            wait_for_input=LegnextTaskInput, key=pause_key_for(job.job_id), timeout=120,
            poll_interval=1,
        )  # fmt: skip
        return got.job().model_dump(mode="json")

    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(waits_for_its_callback(stack.callback)))
    runner.start()
    runner.join(150)
    assert not runner.is_alive()
    assert result["job_id"] == submitted["job_id"]
    assert result["status"] == "completed" and result["output"]["image_urls"]
    assert any(f"resumed flow run {submitted['flow_run']}" in r.getMessage()
               for r in receiver_logs.records)  # fmt: skip
    # The job's URL echo carried the flow run: that is how the receiver found it.
    with legnext_client_for(stack.sim) as client:
        hook = client.get_job(submitted["job_id"]).config
    assert hook is not None and hook.webhook_config is not None
    assert callback_tags(hook.webhook_config.endpoint or "")[FLOW_RUN_TAG] == submitted["flow_run"]


async def test_only_a_run_paused_for_this_job_is_resumed(
    stack: Stack, task_object: Callable[..., Any]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Paused

    from prefect_legnext.orchestration.receiver import ResumeFlowRun

    @flow
    def idle() -> None:
        pass

    job_id = str(uuid.uuid4())
    arrival = CallbackGate(None).decide({}, _body(task_object(job_id=job_id, status="completed")))
    assert arrival.arrival is not None
    resume = ResumeFlowRun()
    async with get_client() as client:
        outcomes = {}
        for pause_key in ("legnext-job-another-one", pause_key_for(job_id)):
            run = await client.create_flow_run(
                idle, state=Paused(pause_key=pause_key, timeout_seconds=120)
            )
            tagged = Arrival(arrival.arrival.delivery, None, str(run.id))
            outcomes[pause_key] = await resume(tagged)
            state = (await client.read_flow_run(run.id)).state
            assert state is not None
            outcomes[pause_key] += f" ({state.type.value})"
            # A repeat finds the run no longer waiting for it.
            assert await resume(tagged) == "not waiting for this job"
    assert outcomes == {
        "legnext-job-another-one": "not waiting for this job (PAUSED)",
        pause_key_for(job_id): "resumed (RUNNING)",
    }
    missing = Arrival(arrival.arrival.delivery, None, str(uuid.uuid4()))
    assert (await resume(missing)).endswith("not found")
