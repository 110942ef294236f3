"""Serving the receiver (uvicorn, `prefect_legnext.core.serving`): in a background
thread (`ReceiverServer`, for tests and for a process that waits in-process) or in
the foreground (`serve`, for the ``prefect-legnext receiver`` command)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence

from pydantic import SecretStr

from prefect_legnext.core.serving import LOOPBACK, BackgroundServer
from prefect_legnext.core.serving import serve as serve_app
from prefect_legnext.orchestration.ledger import JobLedger
from prefect_legnext.orchestration.receiver.actions import TerminalAction, default_actions
from prefect_legnext.orchestration.receiver.asgi import ReceiverApp
from prefect_legnext.orchestration.receiver.gate import DEFAULT_TOLERANCE_SECONDS, CallbackGate


def build_receiver(
    secret: SecretStr | str | None,
    ledger: JobLedger | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    actions: Sequence[TerminalAction] | None = None,
) -> ReceiverApp:
    """The receiver app: `actions` default to record in `ledger`, emit, resume."""
    gate = CallbackGate(secret, tolerance=tolerance)
    chosen = default_actions(ledger) if actions is None else actions
    return ReceiverApp(gate, chosen, on_shutdown=_drain_events)


async def _drain_events() -> None:
    """Send the events still queued before the server stops."""
    from prefect.events.worker import EventsWorker

    with contextlib.suppress(RuntimeError):  # never started
        drained = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained


class ReceiverServer(BackgroundServer):
    """The receiver on `host` (loopback by default) in a background thread; its base
    URL is `url` once started."""

    def __init__(self, app: ReceiverApp, host: str = LOOPBACK, port: int = 0) -> None:
        super().__init__(app, "receiver", host, port)

    def __enter__(self) -> ReceiverServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    app: ReceiverApp, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run in the foreground until interrupted (Ctrl-C stops it cleanly)."""
    serve_app(app, host, port, on_ready=on_ready)
