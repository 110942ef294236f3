"""The chaos scenarios of issue 11: what each one breaks and which outcomes it allows.

Every chain is ``diffusion -> enhance`` (two paid jobs, the second on the first's
output) with a unique prompt and its own idempotency scope, so a retried or re-run
chain finds its jobs in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["completed", "outcome_unknown", "failed"]
STEPS = ["diffusion", "enhance"]


@dataclass(frozen=True)
class Scenario:
    name: str
    share: int  # chains per 100 of the run
    sim_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_ttl: float = 3600.0
    s3_error_rate: float = 0.0
    ledger_lose_rate: float = 0.0
    s3_outage_seconds: float = 0.0
    max_wait_seconds: float = 600.0
    allowed: frozenset[Outcome] = frozenset({"completed"})
    # Failures the simulator causes on purpose, named in the flow's error.
    on_purpose: tuple[str, ...] = ()


# fmt: off
SCENARIOS = [
    # 30% of creates are accepted and charged, then their answer is dropped.
    Scenario(
        "drop",
        30,
        {"diffusion": {"drop_after_accept_rate": 0.3}, "enhance": {"drop_after_accept_rate": 0.3}},
        allowed=frozenset({"completed", "outcome_unknown"}),
    ),
    # 5xx and 429 (Retry-After) at 20% on every Legnext endpoint and on S3.
    Scenario(
        "errors",
        30,
        {"*": {"server_error_rate": 0.1, "rate_limit_rate": 0.1, "retry_after": 1}},
        s3_error_rate=0.2,
    ),
    # Jobs Legnext fails: the flow fails naming the job, the step and the message.
    Scenario(
        "failing",
        8,
        {"enhance": {"job_failure_rate": 0.5}},
        allowed=frozenset({"completed", "failed"}),
        on_purpose=("JobFailedError", "Upstream generation failed"),
    ),
    # Jobs that never finish: a timed-out error at max_wait_seconds, never a hang.
    Scenario(
        "stuck",
        6,
        {"enhance": {"stuck_rate": 0.5}},
        max_wait_seconds=20,
        allowed=frozenset({"completed", "failed"}),
        on_purpose=("JobTimeoutError", "did not finish within"),
    ),
    # S3 stopped mid-run for a while, then started again.
    Scenario("s3-outage", 8, s3_outage_seconds=20),
    # Output URLs that expire before the download.
    Scenario(
        "expiry",
        4,
        output_ttl=0.001,
        allowed=frozenset({"failed"}),
        on_purpose=("OutputExpiredError", "has expired"),
    ),
    # The ledger's own S3 writes land but their answers are lost.
    Scenario("ledger-lose", 14, ledger_lose_rate=0.3),
]
# fmt: on


@dataclass(frozen=True)
class Chain:
    scenario: Scenario
    number: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.scenario.name}-{self.number}"

    def parameters(self, credentials_block: str, storage_block: str) -> dict[str, Any]:
        return {
            "prompt": f"chaos {self.seed} {self.name}: a lighthouse at dawn",
            "steps": STEPS,
            "credentials_block": credentials_block,
            "storage_block": storage_block,
            "key_prefix": f"chaos/{self.scenario.name}",
            "max_wait_seconds": self.scenario.max_wait_seconds,
            "idempotency_scope": f"chaos-{self.seed}-{self.name}",
        }


def plan(total: int, seed: int) -> dict[str, list[Chain]]:
    """`total` chains split across the scenarios by share (at least one each)."""
    if total < len(SCENARIOS):
        raise ValueError(f"at least {len(SCENARIOS)} chains: one per scenario")
    weights = sum(s.share for s in SCENARIOS)
    counts = {s.name: max(1, total * s.share // weights) for s in SCENARIOS}
    while sum(counts.values()) > total:  # the minimum of one each took too many
        counts[max(counts, key=lambda name: counts[name])] -= 1
    counts[SCENARIOS[0].name] += total - sum(counts.values())
    return {s.name: [Chain(s, i, seed) for i in range(counts[s.name])] for s in SCENARIOS}


def classify(scenario: Scenario, message: str) -> tuple[Outcome, bool]:
    """A finished chain's outcome from its error text, and whether it is allowed."""
    if not message:
        return "completed", "completed" in scenario.allowed
    if "OutcomeUnknownError" in message or "outcome is unknown" in message:
        return "outcome_unknown", "outcome_unknown" in scenario.allowed
    on_purpose = bool(scenario.on_purpose) and any(p in message for p in scenario.on_purpose)
    return "failed", on_purpose and "failed" in scenario.allowed
