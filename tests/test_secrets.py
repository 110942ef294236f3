"""The API key goes out in the x-api-key header and nowhere else: not in reprs, logs,
exception messages (also when a server echoes it back) or reconciliation data."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from prefect_legnext import (
    AsyncLegnextClient,
    InsufficientPointsError,
    LegnextAPIError,
    LegnextClient,
    LegnextError,
    OutcomeUnknownError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from prefect_legnext.core.retry import NO_RETRY

JOB = "1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"
LOGGERS = ("httpx", "httpcore", "prefect_legnext")
QUICK = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.001)


def everything_about(error: BaseException) -> str:
    """All the text an error can show: message, repr, traceback with its causes, and the
    attributes our errors carry."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for name in ("message", "raw_message", "detail", "reason", "body"):
        parts.append(repr(getattr(error, name, None)))
    job = getattr(error, "job", None)
    if job is not None:
        parts.append(job.model_dump_json())
    return "\n".join(parts)


# --- reprs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
@pytest.mark.parametrize("wrap", [str, SecretStr])
def test_the_key_is_not_in_the_clients_repr(cls: type, wrap: Callable[[str], Any]) -> None:
    key = "lgx-repr-1234567890abcdef"
    client = cls(wrap(key), base_url="https://api.legnext.test")
    shown = [repr(client), str(client), repr(vars(client)), repr(client._http.auth)]
    for text in shown:
        assert key not in text
    assert "api.legnext.test" in repr(client)


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_key_is_refused(cls: type, key: str) -> None:
    with pytest.raises(ValueError, match="api_key is empty"):
        cls(key)


def test_the_key_travels_only_in_the_header(legnext: Any, api: Any, task_object: Any) -> None:
    route = api.post("/api/v1/diffusion").respond(200, json=task_object())
    legnext("diffusion", text="a cat")
    request = route.calls.last.request
    assert request.headers["x-api-key"] == legnext.api_key
    assert legnext.api_key not in str(request.url)
    assert legnext.api_key.encode() not in request.content
    assert [k for k, v in request.headers.items() if legnext.api_key in v] == ["x-api-key"]


# --- exception messages, also when the server echoes the key back ---------------------------------


def echoing(shape: str, key: str, task_object: Any) -> dict[str, Any]:
    said = f"invalid api key {key}"
    if shape == "A":
        return {"code": 401, "message": said, "raw_message": said, "detail": {"x-api-key": key}}
    if shape == "B":
        error = {"code": 10001, "raw_message": said, "message": said, "detail": [key]}
        return task_object(job_id=JOB, status="failed", error=error)
    return {"error": {"code": 401, "message": said}}


@pytest.mark.parametrize("status", [401, 403, 429, 500])
@pytest.mark.parametrize("shape", ["A", "B", "C"])
def test_an_echoed_key_is_redacted_from_errors(
    legnext: Any, api: Any, task_object: Any, status: int, shape: str
) -> None:
    key = legnext.api_key
    api.get(f"/api/v1/job/{JOB}").respond(status, json=echoing(shape, key, task_object))

    with pytest.raises(LegnextAPIError) as info:
        legnext.with_options({"retry": NO_RETRY}, "get_job", JOB)

    shown = everything_about(info.value)
    assert key not in shown
    assert "invalid api key **" in str(info.value)  # redacted, not dropped


def test_an_echoed_key_in_a_non_json_body_is_redacted(legnext: Any, api: Any) -> None:
    key = legnext.api_key
    api.post("/api/v1/diffusion").respond(401, text=f"<html>bad key {key}</html>")
    with pytest.raises(LegnextAPIError) as info:
        legnext("diffusion", text="a cat")
    assert key not in everything_about(info.value)
    assert "bad key **" in str(info.value)


def test_a_key_in_a_network_error_is_redacted(legnext: Any, api: Any) -> None:
    key = legnext.api_key
    api.get(f"/api/v1/job/{JOB}").mock(side_effect=httpx.ConnectError(f"proxy refused {key}"))
    with pytest.raises(TransportError) as info:
        legnext.with_options({"retry": QUICK}, "get_job", JOB)
    assert key not in everything_about(info.value)
    assert "proxy refused **" in str(info.value)


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(502, text="upstream down"), httpx.ReadTimeout("read timed out")],
    ids=["502", "read-timeout"],
)
def test_outcome_unknown_carries_no_key(legnext: Any, api: Any, failure: Any) -> None:
    route = api.post("/api/v1/upscale")
    if isinstance(failure, Exception):
        route.mock(side_effect=failure)
    else:
        route.mock(return_value=failure)

    with pytest.raises(OutcomeUnknownError) as info:
        legnext("upscale", job_id=JOB, image_no=0, type=1)

    error = info.value
    assert legnext.api_key not in everything_about(error)
    assert error.body == {"jobId": JOB, "imageNo": 0, "type": 1}
    assert JOB in str(error.body) and "upscale" in str(error)


def test_outcome_unknown_redacts_a_key_in_the_network_error(legnext: Any, api: Any) -> None:
    key = legnext.api_key
    api.post("/api/v1/diffusion").mock(side_effect=httpx.RemoteProtocolError(f"reset {key}"))
    with pytest.raises(OutcomeUnknownError) as info:
        legnext("diffusion", text="a cat")
    assert key not in everything_about(info.value)
    assert "reset **" in info.value.reason


# --- logs, through a real HTTP server so that httpcore logs too -----------------------------------

SERVER_KEY = "lgx-live-5d4c3b2a19081726354"


class EchoingLegnext(BaseHTTPRequestHandler):
    """A tiny Legnext: checks the key, and echoes it back in every error body."""

    def do_GET(self) -> None:
        if self.path == "/api/account/balance":
            self._send(200, {"code": 200, "message": "success", "data": {"available_points": 5}})
        else:
            self._send(500, {"code": 500, "message": f"db down for {self._key()}"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/api/v1/shorten":
            self._send(200, {"job_id": JOB, "status": "pending", "task_type": "shorten"})
        else:
            said = f"not enough points for key {self._key()}"
            self._send(402, {"code": 402, "message": said, "raw_message": said, "detail": None})

    def _key(self) -> str:
        return self.headers.get("x-api-key", "")

    def _send(self, status: int, body: dict[str, Any]) -> None:
        if self._key() != SERVER_KEY:
            status, body = 401, {"code": 401, "message": "unauthorized"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingLegnext)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_key_is_in_no_log_record(
    legnext_at: Callable[..., Any], echo_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    runner = legnext_at(echo_server, api_key=SERVER_KEY)

    assert runner("balance").available_points == 5
    assert runner("shorten", prompt="a long prompt").job_id == JOB
    with pytest.raises(ServerError) as failed_read:
        runner.with_options({"retry": QUICK}, "get_job", JOB)
    with pytest.raises(InsufficientPointsError) as failed_create:
        runner("diffusion", text="a cat")

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [(r.name, formatter.format(r)) for r in caplog.records]
    for name in LOGGERS:  # each logger did speak, so the check below means something
        assert any(n == name or n.startswith(name + ".") for n, _ in logged), name
    assert any("retrying" in text for _, text in logged)
    for _name, text in logged:
        assert SERVER_KEY not in text
    for error in (failed_read.value, failed_create.value):
        assert isinstance(error, LegnextError)
        assert SERVER_KEY not in everything_about(error)
        assert "**" in error.message  # the server did echo the key, and it was redacted


# --- the key and base URL from the environment ----------------------------------------------------


def _balance(cls: type, **arguments: Any) -> Any:
    """``balance()`` through a fresh client of `cls` built with only `arguments`."""
    if cls is LegnextClient:
        with LegnextClient(**arguments) as client:
            return client.balance()

    async def run() -> Any:
        async with AsyncLegnextClient(**arguments) as client:
            return await client.balance()

    return asyncio.run(run())


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
def test_the_key_and_base_url_come_from_the_environment(
    cls: type, echo_server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("LEGNEXT_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LEGNEXT_BASE_URL", echo_server + "/")

    assert _balance(cls).available_points == 5  # the server accepts only SERVER_KEY

    client = cls()
    assert client.base_url == echo_server
    for text in (repr(client), str(client), repr(vars(client)), caplog.text):
        assert SERVER_KEY not in text


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
def test_explicit_arguments_win_over_the_environment(
    cls: type, echo_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGNEXT_API_KEY", "lgx-wrong-key-from-the-environment")
    monkeypatch.setenv("LEGNEXT_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    balance = _balance(cls, api_key=SERVER_KEY, base_url=echo_server, retry=NO_RETRY)
    assert balance.available_points == 5
    monkeypatch.setenv("LEGNEXT_API_KEY", SERVER_KEY)
    monkeypatch.setenv("LEGNEXT_BASE_URL", echo_server)
    with pytest.raises(LegnextAPIError) as refused:  # the environment's right key is not used
        _balance(cls, api_key="lgx-explicit-wrong-key", retry=NO_RETRY)
    assert refused.value.status_code == 401


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
def test_without_a_base_url_anywhere_the_client_talks_to_legnext(
    cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEGNEXT_BASE_URL", raising=False)
    assert cls("lgx-some-key").base_url == "https://api.legnext.ai"


@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_a_missing_key_names_the_variable_and_echoes_nothing(
    cls: type, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("LEGNEXT_API_KEY", raising=False)
    else:
        monkeypatch.setenv("LEGNEXT_API_KEY", value)
    monkeypatch.setenv("LEGNEXT_BASE_URL", "https://user:pa55w0rd@api.legnext.test")
    with pytest.raises(ValueError, match="LEGNEXT_API_KEY") as info:
        cls()
    assert str(info.value) == "no API key: pass api_key or set LEGNEXT_API_KEY"


# --- a key with whitespace: pasted from a file or a mounted secret --------------------------------
# Against the real simulator, so that h11 builds (and would refuse) the real header.

CLEAN_KEY = "lgx-SECRET-4242"
PADDED_KEYS = [CLEAN_KEY + "\n", CLEAN_KEY + "\r\n", f" {CLEAN_KEY} "]
BROKEN_KEYS = ["lgx-SECRET 4242", "lgx-SECRET\n4242", "lgx-SECRET\x00-4242", "lgx-SECRÉT-4242"]
# How the key or a part of it could show: as is, and as h11 shows a refused header value.
KEY_TRACES = (CLEAN_KEY, "SECRET-4242", "b'lgx-", "SECRET 4242", "SECRET\\n4242", "SECR")


def assert_no_key(*texts: str) -> None:
    for text in texts:
        for trace in KEY_TRACES:
            assert trace not in text, (trace, text)


@pytest.fixture
def secret_sim(legnext_simulator_factory: Callable[..., Any]) -> Any:
    return legnext_simulator_factory(api_key=SecretStr(CLEAN_KEY))


@pytest.mark.parametrize("key", PADDED_KEYS, ids=["lf", "crlf", "spaces"])
@pytest.mark.parametrize("wrap", [str, SecretStr])
def test_a_padded_key_is_stripped_and_works(
    legnext_at: Callable[..., Any],
    secret_sim: Any,
    caplog: pytest.LogCaptureFixture,
    key: str,
    wrap: Callable[[str], Any],
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    runner = legnext_at(secret_sim.base_url, api_key=wrap(key))
    assert runner("balance").available_points > 0
    job = runner("diffusion", text="a lighthouse")  # the paid call went through
    assert secret_sim.stats()["jobs_total"] == 1 and job.job_id
    assert_no_key(caplog.text)


@pytest.mark.parametrize("key", BROKEN_KEYS, ids=["space", "lf", "nul", "non-ascii"])
@pytest.mark.parametrize("cls", [LegnextClient, AsyncLegnextClient])
def test_a_key_no_header_can_carry_is_refused_without_echo(cls: type, key: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(key, base_url="http://127.0.0.1:9")
    assert str(info.value) == (
        "api_key has whitespace, a control character or a non-ASCII character inside it "
        "(the key is not shown): copy the key again"
    )
    assert_no_key(everything_about(info.value))


@pytest.mark.parametrize("key", BROKEN_KEYS[:2], ids=["space", "lf"])
def test_a_broken_key_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("LEGNEXT_API_KEY", key)
    with pytest.raises(ValueError, match=r"^LEGNEXT_API_KEY has whitespace") as info:
        LegnextClient()
    assert_no_key(everything_about(info.value))


def _poisoned(client: Any, key: str) -> None:
    """Make the client send `key` although it was built with the clean one: the way a
    key that slipped past the checks reaches h11 (which refuses it locally)."""
    client._http.auth._api_key = SecretStr(key)


@pytest.mark.parametrize("key", PADDED_KEYS[:2], ids=["lf", "crlf"])
def test_a_refused_header_is_not_sent_and_not_an_unknown_outcome(
    secret_sim: Any, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    with LegnextClient(CLEAN_KEY, base_url=secret_sim.base_url, retry=QUICK) as client:
        _poisoned(client, key)
        with pytest.raises(TransportError) as info:  # not OutcomeUnknownError
            client.diffusion(text="a cat")
    assert "LocalProtocolError" in str(info.value) and "**" in str(info.value)
    # Ours only: httpcore's DEBUG trace prints the refused value, which is why a key that
    # could be refused never gets this far (the tests above).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("prefect_legnext")]
    assert any("retrying" in text for text in ours)
    assert_no_key(everything_about(info.value), *ours)
    assert secret_sim.stats()["jobs_total"] == 0


def test_a_refused_header_releases_the_ledger_record(secret_sim: Any, tmp_path: Any) -> None:
    from prefect_legnext.core.models import DiffusionRequest
    from prefect_legnext.orchestration.ledger import LocalLedger, submit_once

    ledger = LocalLedger(tmp_path)
    request = DiffusionRequest(text="a cat")
    with LegnextClient(CLEAN_KEY, base_url=secret_sim.base_url, retry=NO_RETRY) as client:
        _poisoned(client, CLEAN_KEY + "\n")
        with pytest.raises(TransportError) as info:
            submit_once(client, ledger, request, "key-1")
        assert_no_key(everything_about(info.value))
        assert ledger.get("key-1") is None  # nothing blocks the next try
    with LegnextClient(CLEAN_KEY, base_url=secret_sim.base_url) as client:
        _, reused = submit_once(client, ledger, request, "key-1")
    assert not reused and secret_sim.stats()["jobs_total"] == 1


def test_redaction_covers_every_rendering_of_the_key() -> None:
    from prefect_legnext.core.client import REDACTED, redact

    for key in (CLEAN_KEY, *PADDED_KEYS, "lgx-é-42"):
        for shown in (key, key.strip(), repr(key), repr(key.encode()), str(key.encode())):
            text = redact(f"Illegal header value {shown}!", key)
            assert REDACTED in text
            assert key.strip() not in text and repr(key.strip().encode())[2:-1] not in text


def test_request_headers_repr_masks_the_key(secret_sim: Any) -> None:
    with LegnextClient(CLEAN_KEY, base_url=secret_sim.base_url) as client:
        response = client._http.get("/api/account/balance")  # through our auth, as sent
    assert response.status_code == 200
    headers = response.request.headers
    assert headers["x-api-key"] == CLEAN_KEY  # sent as is
    assert_no_key(repr(headers), str(headers), repr(response.request))
    assert "x-api-key" in repr(headers) and "user-agent" in repr(headers)


# --- the credentials block ------------------------------------------------------------------------


@pytest.mark.parametrize("key", PADDED_KEYS, ids=["lf", "crlf", "spaces"])
def test_the_block_strips_a_padded_key(secret_sim: Any, key: str) -> None:
    from prefect_legnext.orchestration.blocks import LegnextCredentials

    block = LegnextCredentials(api_key=key, base_url=secret_sim.base_url)
    assert block.api_key.get_secret_value() == CLEAN_KEY
    with block.get_client() as client:
        assert client.balance().available_points > 0
    assert_no_key(repr(block), str(block))


@pytest.mark.parametrize("key", BROKEN_KEYS, ids=["space", "lf", "nul", "non-ascii"])
def test_the_block_refuses_a_broken_key_without_echo(key: str) -> None:
    from pydantic import ValidationError

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    with pytest.raises(ValidationError) as info:
        LegnextCredentials(api_key=key)
    assert "api_key has whitespace" in str(info.value)
    assert_no_key(everything_about(info.value))


def test_a_pickled_block_holds_the_key_but_shows_it_nowhere() -> None:
    """Process and Dask task runners pickle the block they ship: it must carry the key
    (documented in docs/prefect.md); its repr must not."""
    import pickle

    from prefect_legnext.orchestration.blocks import LegnextCredentials

    shipped = pickle.dumps(LegnextCredentials(api_key=CLEAN_KEY + "\n"))
    block = pickle.loads(shipped)  # noqa: S301  (our own bytes)
    assert block.api_key.get_secret_value() == CLEAN_KEY
    assert_no_key(repr(block), str(block), repr(block.get_client()))


@pytest.mark.parametrize("key", BROKEN_KEYS[:2], ids=["space", "lf"])
def test_resolved_credentials_refuse_a_broken_environment_key(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    from prefect_legnext.orchestration.errors import ConfigurationError
    from prefect_legnext.orchestration.resolve import resolve_credentials

    monkeypatch.setenv("LEGNEXT_API_KEY", key)
    with pytest.raises(ConfigurationError, match=r"^LEGNEXT_API_KEY has whitespace") as info:
        resolve_credentials("")
    assert_no_key(everything_about(info.value))


def test_resolved_credentials_strip_a_padded_environment_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_legnext.orchestration.resolve import resolve_credentials

    monkeypatch.setenv("LEGNEXT_API_KEY", CLEAN_KEY + "\r\n")
    credentials, source = resolve_credentials("")
    assert credentials.api_key.get_secret_value() == CLEAN_KEY
    assert_no_key(source)


# --- flows on a Prefect test server: run logs, state messages -------------------------------------


def _run_logs_and_state(flow_run_id: Any) -> str:
    """Everything the Prefect server keeps about a flow run's words: its logs and its
    state messages."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        states = client.read_flow_run_states(flow_run_id)
    return "\n".join([log.message for log in logs] + [s.message or "" for s in states])


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("key", PADDED_KEYS[:2], ids=["lf", "crlf"])
def test_a_flow_runs_with_a_padded_environment_key_and_logs_no_key(
    secret_sim: Any, local_s3_server: Any, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    from prefect_legnext.orchestration.flows import legnext_pipeline
    from prefect_legnext.orchestration.plans import ChainStep

    bucket = local_s3_server.create_bucket()
    storage = f"outputs-{bucket.bucket_name}"
    bucket.save(storage)
    monkeypatch.setenv("LEGNEXT_API_KEY", key)
    monkeypatch.setenv("LEGNEXT_BASE_URL", secret_sim.base_url)
    monkeypatch.setenv("LEGNEXT_POLL_SCALE", str(secret_sim.config.time_scale))

    state = legnext_pipeline(
        steps=[ChainStep(action="shorten", prompt="a long prompt about a harbour")],
        credentials_block="",
        storage_block=storage,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert secret_sim.stats()["jobs_total"] == 1
    text = _run_logs_and_state(state.state_details.flow_run_id)
    assert "Legnext credentials from environment" in text
    assert_no_key(text)


@pytest.mark.usefixtures("prefect_server")
def test_a_flow_with_a_broken_environment_key_fails_in_one_line_without_it(
    secret_sim: Any, local_s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_legnext.orchestration.flows import legnext_pipeline
    from prefect_legnext.orchestration.plans import ChainStep

    bucket = local_s3_server.create_bucket()
    storage = f"outputs-{bucket.bucket_name}"
    bucket.save(storage)
    monkeypatch.setenv("LEGNEXT_API_KEY", "lgx-SECRET 4242")
    monkeypatch.setenv("LEGNEXT_BASE_URL", secret_sim.base_url)

    state = legnext_pipeline(
        steps=[ChainStep(action="shorten", prompt="a long prompt")],
        credentials_block="",
        storage_block=storage,
        return_state=True,
    )
    assert state.is_failed()
    assert "LEGNEXT_API_KEY has whitespace" in (state.message or "")
    assert_no_key(_run_logs_and_state(state.state_details.flow_run_id))
    assert secret_sim.stats()["jobs_total"] == 0


# --- the command line -----------------------------------------------------------------------------


# The first case of each command-line test runs as a real process, the others run the
# same main() in this process (`run_in_process`: ~3 s of imports less each).
@pytest.mark.parametrize(
    ("how", "key"),
    [("env", CLEAN_KEY + "\n"), ("env", CLEAN_KEY + "\r\n"), ("option", f" {CLEAN_KEY}\n")],
)
def test_the_cli_strips_a_padded_key(secret_sim: Any, tmp_path: Any, how: str, key: str) -> None:
    from cli_support import cli_env, run_cli, run_in_process

    args = ["balance", "--base-url", secret_sim.base_url]
    env = cli_env(tmp_path / "home", **({"LEGNEXT_API_KEY": key} if how == "env" else {}))
    run = run_cli if key == CLEAN_KEY + "\n" else run_in_process
    result = run(*args, *(["--api-key", key] if how == "option" else []), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "points available" in result.stdout
    assert_no_key(result.stdout, result.stderr)


# (A process environment cannot carry NUL.)
@pytest.mark.parametrize("key", [k for k in BROKEN_KEYS if "\x00" not in k])
def test_the_cli_refuses_a_broken_key_in_one_line(secret_sim: Any, tmp_path: Any, key: str) -> None:
    from cli_support import cli_env, one_error_line, run_cli, run_in_process

    env = cli_env(tmp_path / "home", LEGNEXT_API_KEY=key)
    run = run_cli if key == BROKEN_KEYS[0] else run_in_process
    result = run("balance", "--base-url", secret_sim.base_url, cwd=tmp_path, env=env)
    line = one_error_line(result)
    assert line.startswith("the API key (LEGNEXT_API_KEY or --api-key) has whitespace"), line
    assert_no_key(result.stdout, result.stderr)


def test_the_chain_command_refuses_a_broken_environment_key_before_starting(
    tmp_path: Any,
) -> None:
    from cli_support import cli_env, one_error_line, prefect_database_in, run_in_process

    home = tmp_path / "home"
    env = cli_env(home, LEGNEXT_API_KEY="lgx-SECRET 4242", LEGNEXT_S3_BUCKET="outputs")
    result = run_in_process("chain", "a tower", cwd=tmp_path, env=env)
    assert one_error_line(result).startswith("LEGNEXT_API_KEY has whitespace")
    assert prefect_database_in(home) == []  # refused before any Prefect server started
    assert_no_key(result.stdout, result.stderr)


@pytest.mark.usefixtures("prefect_server")
def test_a_saved_block_with_a_broken_key_is_one_line_without_it(secret_sim: Any) -> None:
    """A block saved where our check does not run (the UI, an older version) with a
    space inside its key: loading names the block and the problem, never the key; one
    saved with a trailing newline is stripped on load."""
    from uuid import uuid4

    from prefect_legnext.orchestration.blocks import LegnextCredentials
    from prefect_legnext.orchestration.errors import ConfigurationError
    from prefect_legnext.orchestration.resolve import resolve_credentials

    def save_unchecked(key: str) -> str:
        name = f"legnext-raw-{uuid4().hex[:8]}"
        fields = {"api_key": SecretStr(key), "base_url": secret_sim.base_url}
        LegnextCredentials.model_construct(**fields).save(name)
        return name

    broken = save_unchecked("lgx-SECRET 4242")
    with pytest.raises(ConfigurationError) as info:
        resolve_credentials(broken)
    assert str(info.value).startswith(f"saved Legnext Credentials block {broken!r} is invalid")
    assert "api_key has whitespace" in str(info.value)
    assert_no_key(everything_about(info.value))

    padded, _ = resolve_credentials(save_unchecked(CLEAN_KEY + "\n"))
    assert padded.api_key.get_secret_value() == CLEAN_KEY
    with padded.get_client() as client:
        assert client.balance().available_points > 0
