"""Callback delivery: POST ``{"timestamp", "data"}`` on status changes, signed when
the simulator has a secret, retried a few times on failure.

The body is the vendor's (API.md, "Callbacks"); delivery on every status change, the
signature headers and the retry schedule are simulator decisions (API.md)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from typing import Any

import httpx

from prefect_legnext.simulator.config import Faults, SimulatorConfig

TIMESTAMP_HEADER = "X-Legnext-Timestamp"
SIGNATURE_HEADER = "X-Legnext-Signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body``: simulator decision (API.md)."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class CallbackSender:
    def __init__(
        self, http: httpx.AsyncClient, config: SimulatorConfig, rng: random.Random
    ) -> None:
        self._http = http
        self._config = config
        self._rng = rng
        self.delivered = 0
        self.failed_attempts = 0
        self.abandoned = 0

    async def deliver(self, url: str, task: dict[str, Any], faults: Faults) -> None:
        timestamp = str(int(time.time() * 1000))
        body = json.dumps({"timestamp": int(timestamp), "data": task}).encode()
        headers = {"content-type": "application/json"}
        if self._config.callback_secret is not None:
            secret = self._config.callback_secret.get_secret_value()
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
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
                return
            self.failed_attempts += 1
        self.abandoned += 1

    def stats(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "abandoned": self.abandoned,
        }
