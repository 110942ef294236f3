"""Callback delivery: POST ``{"timestamp", "data"}`` on status changes, signed when
the simulator has a secret, retried a few times on failure, with the callback faults.

The body is the vendor's (API.md, "Callbacks"); delivery on every status change, the
signature headers (`prefect_legnext.core.callbacks`), the retry schedule and every
callback fault are simulator decisions (API.md, docs/simulator.md)."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from prefect_legnext.core.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from prefect_legnext.simulator.config import Faults, SimulatorConfig

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "CallbackSender", "sign"]

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(frozen=True)
class _Callback:
    """One status change's delivery, with the faults drawn for it."""

    url: str
    task: dict[str, Any]
    faults: Faults
    forged: bool
    duplicated: bool


class CallbackSender:
    """Sends each status change of a job to its callback URL.

    Faults are drawn when the status changes (`notify`), in order, from the simulator's
    seeded RNG, so a seed and a request sequence give the same faults."""

    def __init__(
        self, http: httpx.AsyncClient, config: SimulatorConfig, rng: random.Random
    ) -> None:
        self._http = http
        self._config = config
        self._rng = rng
        # What a forged delivery is signed with: a random secret, never the real one.
        self._forged_secret = secrets.token_hex(16)
        # Deliveries held back by callback_reorder_rate, per job id, oldest first.
        self._held: dict[str, list[_Callback]] = {}
        self.delivered = 0
        self.failed_attempts = 0
        self.abandoned = 0
        self.dropped = 0
        self.delayed = 0
        self.duplicated = 0
        self.reordered = 0
        self.forged = 0

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def notify(
        self, job_id: str, url: str, task: dict[str, Any], faults: Faults, final: bool, spawn: Spawn
    ) -> None:
        """A status change of `job_id`: send its callback (through `spawn`), or drop it,
        or hold it back until the job's next change (never past the last, `final`)."""
        held = self._held.pop(job_id, [])
        current: list[_Callback] = []
        if self._draw(faults.callback_drop_rate):
            self.dropped += 1
            if not final:
                if held:  # still waiting for a later change to pass them
                    self._held[job_id] = held
                return
        else:
            callback = _Callback(
                url, task, faults,
                forged=self._draw(faults.callback_forge_rate),
                duplicated=self._draw(faults.callback_duplicate_rate),
            )  # fmt: skip
            if not final and self._draw(faults.callback_reorder_rate):
                self._held[job_id] = [*held, callback]
                return
            current = [callback]
            self.reordered += len(held)
        if current or held:
            spawn(self._in_order([*current, *held]))

    async def _in_order(self, callbacks: list[_Callback]) -> None:
        # One after the other: a held (earlier) change goes out after the later one.
        for callback in callbacks:
            await self._deliver(callback)

    async def _deliver(self, callback: _Callback) -> None:
        faults = callback.faults
        if faults.callback_delay:
            # Not scaled by time_scale (simulator decision): it stands for the network
            # and the vendor's queue, like `latency`, not for the job's work.
            self.delayed += 1
            await asyncio.sleep(faults.callback_delay)
        timestamp = str(int(time.time() * 1000))
        body = json.dumps({"timestamp": int(timestamp), "data": callback.task}).encode()
        headers = {"content-type": "application/json"}
        secret = self._config.callback_secret
        if callback.forged:
            self.forged += 1
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._forged_secret, timestamp, body)
        elif secret is not None:
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), timestamp, body)
        if await self._send(callback.url, body, headers, faults) and callback.duplicated:
            self.duplicated += 1
            await self._send(callback.url, body, headers, faults)

    async def _send(self, url: str, body: bytes, headers: dict[str, str], faults: Faults) -> bool:
        for attempt in range(self._config.callback_attempts):
            if attempt:
                await asyncio.sleep(min(30.0, 2.0**attempt * self._config.time_scale))
            if faults.callback_failure_rate and self._rng.random() < faults.callback_failure_rate:
                self.failed_attempts += 1
                continue
            try:
                response = await self._http.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                self.failed_attempts += 1
                continue
            if response.is_success:
                self.delivered += 1
                return True
            self.failed_attempts += 1
        self.abandoned += 1
        return False

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "abandoned": self.abandoned,
            "dropped": self.dropped,
            "delayed": self.delayed,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "forged": self.forged,
            "held": sum(len(held) for held in self._held.values()),
        }
