"""The callback receiver (docs/callbacks.md): Legnext POSTs a finished task to it; it
verifies, de-duplicates, records the job in the ledger, emits the job's event and
resumes the flow run waiting for it.

- `gate`: the core, headers and raw body in, a decision out (no I/O, no Prefect).
- `actions`: what a terminal delivery does, a list of idempotent actions.
- `asgi`: the ASGI app around them; `server`: uvicorn, in a thread or the foreground.
"""

from prefect_legnext.orchestration.receiver.actions import (
    DeliverToFlowRun,
    EmitJobEvent,
    LegnextTaskInput,
    RecordInLedger,
    ReleaseJobSlot,
    ResumeFlowRun,
    TerminalAction,
    default_actions,
    pause_key_for,
)
from prefect_legnext.orchestration.receiver.asgi import ReceiverApp
from prefect_legnext.orchestration.receiver.gate import (
    DEFAULT_TOLERANCE_SECONDS,
    MAX_BODY_BYTES,
    Arrival,
    CallbackGate,
    Decision,
)
from prefect_legnext.orchestration.receiver.server import ReceiverServer, build_receiver, serve

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "MAX_BODY_BYTES",
    "Arrival",
    "CallbackGate",
    "Decision",
    "DeliverToFlowRun",
    "EmitJobEvent",
    "LegnextTaskInput",
    "ReceiverApp",
    "ReceiverServer",
    "RecordInLedger",
    "ReleaseJobSlot",
    "ResumeFlowRun",
    "TerminalAction",
    "build_receiver",
    "default_actions",
    "pause_key_for",
    "serve",
]
