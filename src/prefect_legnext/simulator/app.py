"""The simulator's HTTP surface: Legnext's routes (derived from the endpoint table),
the temporary output files under ``/cdn``, and introspection under ``/_sim``."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from prefect_legnext.core.endpoints import (
    ACCOUNT_INFO,
    ACTIVE_TASKS,
    BALANCE,
    CREATE_ENDPOINTS,
    GET_JOB,
    CreateEndpoint,
    problems_of,
)
from prefect_legnext.simulator.config import parse_fault_settings
from prefect_legnext.simulator.engine import Engine, SimulatorError

MAX_BODY_BYTES = 1024 * 1024  # above it, 413: simulator decision (API.md)
# How much of an oversized body is read (and thrown away) so that the client, still
# sending, gets its 413 rather than a broken pipe; past it the connection is closed
# after the 413. Simulator decision.
MAX_DRAIN_BYTES = 16 * MAX_BODY_BYTES
RAW_SEND = "legnext.sim.raw_send"


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None when it exceeds `MAX_BODY_BYTES` (never held whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_DRAIN_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_DRAIN_BYTES:
            return None
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
    return b"".join(chunks) if size <= MAX_BODY_BYTES else None


def _load_json(raw: bytes) -> Any:
    """`json.loads`, with nesting too deep for the parser read as invalid JSON.

    Raises:
        ValueError: not JSON (bad syntax, bad encoding or nested too deeply).
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _error(exc: SimulatorError, headers: dict[str, str] | None = None) -> JSONResponse:
    # Which body shape goes with which status: simulator decision (API.md, "Errors").
    return JSONResponse(exc.body, status_code=exc.status, headers=headers)


def build_app(engine: Engine) -> Starlette:
    """A Starlette app serving `engine` the way Legnext serves an account."""
    api_key = engine.config.api_key.get_secret_value().encode()

    def authorized(request: Request) -> bool:
        given = request.headers.get("x-api-key", "").encode()
        return hmac.compare_digest(given, api_key)

    async def gate(request: Request, route: str, endpoint: str) -> JSONResponse | None:
        """Auth and the request-level faults every API route shares."""
        engine.count(route)
        faults = engine.faults(endpoint)
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if not authorized(request):
            return _error(
                SimulatorError(401, "Invalid API key", raw="missing or invalid x-api-key")
            )
        # Injected faults (429 with Retry-After, 503): simulator decision (API.md).
        if engine.draw(faults.rate_limit_rate):
            engine.injected_errors += 1
            return _error(
                SimulatorError(429, "Too many requests"),
                headers={"Retry-After": f"{faults.retry_after:g}"},
            )
        if engine.draw(faults.server_error_rate):
            engine.injected_errors += 1
            return _error(SimulatorError(503, "Service temporarily unavailable"))
        return None

    def create_route(endpoint: CreateEndpoint) -> Route:
        route_name = f"POST {endpoint.name}"

        async def handle(request: Request) -> Response:
            refused = await gate(request, route_name, endpoint.name)
            if refused is not None:
                return refused
            raw = await _read_body(request)
            if raw is None:
                return _error(SimulatorError(413, "Request entity too large"))
            # A body that is not a JSON object (deep nesting included): 400 in shape A,
            # simulator decision (API.md).
            try:
                body: Any = _load_json(raw)
            except ValueError as exc:
                return _error(
                    SimulatorError(
                        400, "Invalid request parameters", raw=f"body is not JSON: {exc}"
                    )
                )
            if not isinstance(body, dict):
                return _error(
                    SimulatorError(400, "Invalid request parameters", raw="body must be an object")
                )
            try:
                job = engine.create(endpoint, raw)
            except SimulatorError as exc:
                return _error(exc)
            if engine.draw(engine.faults(endpoint.name).drop_after_accept_rate):
                engine.dropped_responses += 1
                await _drop_connection(request)
            return JSONResponse(engine.task_object(job, created_answer=True))

        return Route(endpoint.path, handle, methods=["POST"], name=endpoint.name)

    async def get_job(request: Request) -> Response:
        refused = await gate(request, "GET job", GET_JOB.name)
        if refused is not None:
            return refused
        try:
            job = engine.get(request.path_params["job_id"])
        except SimulatorError as exc:
            return _error(exc)
        return JSONResponse(engine.task_object(job))

    def account_route(path: str, name: str, body: Any) -> Route:
        async def handle(request: Request) -> Response:
            refused = await gate(request, f"GET {name}", name)
            return refused or JSONResponse(body())

        return Route(path, handle, methods=["GET"], name=name)

    async def cdn(request: Request) -> Response:
        engine.count("GET file")
        faults = engine.faults("files")
        if faults.download_delay:
            await asyncio.sleep(faults.download_delay)
        if engine.draw(faults.download_error_rate):
            return Response(b"upstream error", status_code=500, media_type="text/plain")
        found = await engine.file(request.url.path)
        if found is None:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        data, content_type = found
        return Response(data, media_type=content_type)

    async def sim_stats(_request: Request) -> Response:
        return JSONResponse(engine.stats())

    async def sim_faults(request: Request) -> Response:
        if request.method == "PUT":
            # The whole table is validated before any of it replaces the current one: a
            # refused PUT changes nothing. The {"error": ...} body is a simulator decision.
            raw = await _read_body(request)
            if raw is None:
                return JSONResponse({"error": "body too large"}, status_code=413)
            try:
                parsed = parse_fault_settings(_load_json(raw))
            except ValidationError as exc:
                problems = "; ".join(f"{where}: {rule}" for where, rule in problems_of(exc))
                return JSONResponse({"error": f"bad fault settings: {problems}"}, status_code=400)
            except ValueError as exc:
                return JSONResponse({"error": f"bad fault settings: {exc}"}, status_code=400)
            engine.config.faults = parsed
        # Only the fields each target sets, so that GET then PUT keeps the "*" layering.
        return JSONResponse(
            {k: v.model_dump(exclude_unset=True) for k, v in engine.config.faults.items()}
        )

    async def sim_jobs(_request: Request) -> Response:
        return JSONResponse(
            [
                {
                    "job_id": j.job_id,
                    "task_type": j.endpoint.task_type,
                    "status": str(j.status),
                    "created_at": j.created_at,
                    "points": j.points,
                    "gets": j.gets,
                    "started_at": j.started_at,
                    "ended_at": j.ended_at,
                    "parent": j.parent.job_id if j.parent else None,
                    "body": j.request.to_wire(),
                }
                for j in engine.jobs.values()
            ]
        )

    # /account/info is loosely specified by the vendor: simulator decision (API.md).
    def info_body() -> dict[str, Any]:
        return {
            "code": 200,
            "message": "success",
            "data": {
                "account_id": 1,
                "email": "simulator@localhost",
                "plan": "pro",
                "status": "active",
                "balance": round(engine.balance / 1000, 3),
            },
        }

    routes = [create_route(e) for e in CREATE_ENDPOINTS]
    routes += [
        Route(GET_JOB.path, get_job, methods=["GET"], name=GET_JOB.name),
        account_route(BALANCE.path, BALANCE.name, engine.balance_body),
        account_route(ACCOUNT_INFO.path, ACCOUNT_INFO.name, info_body),
        account_route(ACTIVE_TASKS.path, ACTIVE_TASKS.name, engine.active_tasks_body),
        Route("/cdn/{folder}/{name}", cdn, methods=["GET"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/faults", sim_faults, methods=["GET", "PUT"]),
        Route("/_sim/jobs", sim_jobs, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    # An unknown route: 404 in shape A, simulator decision (API.md).
    async def not_found(request: Request, _exc: Exception) -> Response:
        return _error(SimulatorError(404, "Not found", raw=f"no route {request.url.path}"))

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    return app


class KeepRawSend:
    """Outermost ASGI layer: remembers the server's own `send`, whose owner holds the
    socket, so that the drop-after-accept fault can cut the connection for real."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)


async def _drop_connection(request: Request) -> None:
    """Abort the TCP connection before any byte of the answer is written."""
    raw_send = request.scope.get(RAW_SEND)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("drop-after-accept needs uvicorn's transport")
    transport.abort()
    await asyncio.sleep(0)
