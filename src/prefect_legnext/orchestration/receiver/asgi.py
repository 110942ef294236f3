"""The receiver as an ASGI app: reads one POST (refusing a large body before it has
all of it), asks the gate (`gate.CallbackGate`), runs the terminal actions
(`actions.default_actions`) for a new terminal delivery, and answers.

Answers (our decisions): 200 for an accepted delivery and for a duplicate; 401 for a
missing or bad signature; 400 for a stale timestamp or a body that is not a task
object; 413 for a body over the limit; 405 for anything but POST; 503 when an action
failed (the sender tries again later). What is logged: the job id, its status, the
decision and each action's outcome; never the body, its URLs or the request's query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from prefect_legnext.orchestration.receiver.actions import TerminalAction
from prefect_legnext.orchestration.receiver.gate import Arrival, CallbackGate, Decision

logger = logging.getLogger("prefect_legnext.orchestration.receiver")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ReceiverApp:
    """An ASGI app answering Legnext's callback deliveries on any path.

    Args:
        gate: verification, reading and de-duplication.
        actions: run in order on a new delivery of a terminal status.
        on_shutdown: called when the server stops (e.g. to send queued events).
    """

    def __init__(
        self,
        gate: CallbackGate,
        actions: Sequence[TerminalAction],
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.gate = gate
        self.actions = list(actions)
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, "only POST is accepted", [(b"allow", b"POST")])
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(receive, headers, self.gate.max_body_bytes)
        if body is None:
            decision = Decision(413, f"body over {self.gate.max_body_bytes} bytes")
        else:
            decision = self.gate.decide(headers, body)
        if decision.arrival is not None and not decision.duplicate:
            decision = await self._handle(decision.arrival)
        _log(decision, scope)
        await _answer(send, decision.status, decision.reason)

    async def _handle(self, arrival: Arrival) -> Decision:
        if not arrival.is_terminal:
            # A status on the way (or unknown: never taken for success): nothing to do.
            self.gate.remember(arrival)
            status = _printable(str(arrival.delivery.job.status))
            return Decision(200, f"noted status {status}", arrival)
        outcomes, failed = [], False
        for action in self.actions:
            try:
                outcomes.append(f"{action.name}: {await action(arrival)}")
            except Exception as exc:
                failed = True
                outcomes.append(f"{action.name}: failed ({type(exc).__name__})")
                logger.error("callback for job %s: %s failed: %s: %s",
                             arrival.delivery.job.job_id, action.name, type(exc).__name__,
                             exc)  # fmt: skip
        if failed:
            # Not remembered: the sender's retry runs every (idempotent) action again.
            return Decision(503, "; ".join(outcomes), arrival)
        self.gate.remember(arrival)
        return Decision(200, "; ".join(outcomes), arrival)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._on_shutdown is not None:
                    try:
                        await self._on_shutdown()
                    except Exception as exc:
                        logger.warning("receiver shutdown: %s", type(exc).__name__)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` (by its
    Content-Length, or counted while it streams): the rest is never read."""
    declared = headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(
    send: Send, status: int, reason: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"ok": 200 <= status < 300, "detail": reason}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    if status == 413:  # the rest of the body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log(decision: Decision, scope: Scope) -> None:
    client = scope.get("client")
    peer = f"{client[0]}" if client else "?"
    if decision.arrival is None:
        logger.warning("callback from %s refused: %d %s", peer, decision.status, decision.reason)
        return
    job = decision.arrival.delivery.job
    level = logging.ERROR if decision.status >= 500 else logging.INFO
    logger.log(level, "callback for job %s (%s): %d %s",
               _printable(job.job_id), _printable(str(job.status)), decision.status,
               decision.reason)  # fmt: skip


def _printable(text: str, limit: int = 64) -> str:
    """Text from the body, fit for one log line: no control characters (a forged line
    break), not too long."""
    return "".join(c if c.isprintable() else "_" for c in text[:limit])
