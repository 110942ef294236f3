"""Writes a flow run makes for people (artifacts), sent off the steps' path and
settled before the run returns: a step does not wait for the Prefect server to store
its gallery (tens of ms each on a busy server), yet every artifact is stored, or its
error raised, by the time the flow ends. Our decision; a direct ``flow.fn(...)`` call
(no `background_writes` around it) writes in line, as before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from typing import Any

logger = logging.getLogger("prefect_legnext.orchestration.background")

_WRITER: ContextVar[_Writer | None] = ContextVar("legnext_background_writer", default=None)


class _Writer:
    def __init__(self) -> None:
        # One thread: the run's artifacts are stored in the order they were made.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="legnext-artifacts")
        self._pending: list[Future[Any]] = []

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        # The caller's context: the artifact belongs to its flow (or task) run.
        self._pending.append(self._pool.submit(copy_context().run, write, *args))

    def settle(self) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True)


def write_later(write: Callable[..., Any], *args: Any) -> None:
    """Run ``write(*args)`` in the background of the current `background_writes`, or
    now when there is none."""
    writer = _WRITER.get()
    if writer is None:
        write(*args)
    else:
        writer.submit(write, *args)


@contextmanager
def background_writes() -> Iterator[None]:
    """Writes made inside go to one background thread; all are done (or the first
    failure raised, unless the block itself failed) when it exits."""
    writer = _Writer()
    token = _WRITER.set(writer)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _WRITER.reset(token)
        if failed:
            try:
                writer.settle()
            except Exception:  # the run's own error is the one to report
                logger.exception("an artifact of a failed run could not be written")
        else:
            writer.settle()
