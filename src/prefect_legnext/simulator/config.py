"""Settings of the offline Legnext simulator, including its fault injection.

Every number is refused when it is not finite (``inf``, ``nan``) or out of bounds, so a
bad setting fails at start (or answers 400 on ``PUT /_sim/faults``) instead of making
every request hang.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, field_validator

from prefect_legnext.core.client import clean_api_key
from prefect_legnext.core.endpoints import (
    ACCOUNT_INFO,
    ACTIVE_TASKS,
    BALANCE,
    CREATE_ENDPOINTS,
    GET_JOB,
)

ALL_ENDPOINTS = "*"
FILES = "files"
# Names a fault setting may be keyed by: "*", "files" (output downloads) and every
# endpoint name. Refusing any other name (a typo would silently do nothing) is a
# simulator decision, not the vendor's.
FAULT_TARGETS: tuple[str, ...] = (
    ALL_ENDPOINTS,
    FILES,
    *(e.name for e in CREATE_ENDPOINTS),
    GET_JOB.name,
    BALANCE.name,
    ACCOUNT_INFO.name,
    ACTIVE_TASKS.name,
)
# The longest injected delay (latency, download_delay, retry_after, callback_delay), in
# seconds: a simulator decision, so that no setting can hang a request for ever.
MAX_DELAY = 600.0
# The largest time_scale (600x slower than real): a simulator decision keeping every job
# duration finite.
MAX_TIME_SCALE = 600.0


class Faults(BaseModel):
    """Faults injected on one endpoint (or on all, under the key ``"*"``).

    Rates are probabilities in 0..1 drawn from the simulator's seeded RNG, so a
    run with the same seed and the same requests meets the same faults. Delays are
    seconds in 0..``MAX_DELAY``.

    An endpoint's settings layer over the ``"*"`` settings field by field: only the
    fields given for the endpoint (``model_fields_set``) override; see
    `SimulatorConfig.faults_for`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    server_error_rate: float = Field(0.0, ge=0, le=1, description="answer 5xx before handling")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="answer 429 before handling")
    retry_after: float = Field(
        1.0, ge=0, le=MAX_DELAY, description="Retry-After seconds sent with a 429"
    )
    drop_after_accept_rate: float = Field(
        0.0, ge=0, le=1, description="create and charge the job, then drop the connection"
    )
    latency: float = Field(0.0, ge=0, le=MAX_DELAY, description="seconds added before answering")
    job_failure_rate: float = Field(0.0, ge=0, le=1, description="jobs that end failed")
    stuck_rate: float = Field(0.0, ge=0, le=1, description="jobs that never finish")
    download_error_rate: float = Field(0.0, ge=0, le=1, description="output downloads that 500")
    download_delay: float = Field(
        0.0, ge=0, le=MAX_DELAY, description="seconds before an output download"
    )
    callback_failure_rate: float = Field(
        0.0, ge=0, le=1, description="callback deliveries that fail (and are retried)"
    )
    # The callback faults below are simulator decisions (docs/simulator.md), drawn once
    # per status change of a job.
    callback_drop_rate: float = Field(
        0.0, ge=0, le=1, description="status changes whose callback is never sent"
    )
    callback_delay: float = Field(
        0.0, ge=0, le=MAX_DELAY,
        description="seconds before a callback is first sent (not scaled by time_scale)",
    )  # fmt: skip
    callback_duplicate_rate: float = Field(
        0.0, ge=0, le=1, description="callbacks sent a second time after they were delivered"
    )
    callback_reorder_rate: float = Field(
        0.0, ge=0, le=1,
        description="status changes whose callback is held back and sent after the next one's",
    )  # fmt: skip
    callback_forge_rate: float = Field(
        0.0, ge=0, le=1, description="callbacks signed with a wrong secret instead of the real one"
    )


def _check_targets(faults: dict[str, Faults]) -> dict[str, Faults]:
    unknown = sorted(set(faults) - set(FAULT_TARGETS))
    if unknown:
        raise ValueError(
            f"unknown fault target {', '.join(map(repr, unknown))}: "
            f"expected one of {', '.join(FAULT_TARGETS)}"
        )
    return faults


_FAULTS_ADAPTER: TypeAdapter[dict[str, Faults]] = TypeAdapter(dict[str, Faults])


def parse_fault_settings(data: Any) -> dict[str, Faults]:
    """Validate a whole fault table (as sent to ``PUT /_sim/faults``) before any of it
    is applied.

    Raises:
        pydantic.ValidationError: a value is missing, not finite or out of bounds.
        ValueError: the table is not an object or names an unknown target.
    """
    if not isinstance(data, dict):
        raise ValueError(
            "fault settings must be an object of {target: {fault: value}}, "
            f"not {type(data).__name__}"
        )
    return _check_targets(_FAULTS_ADAPTER.validate_python(data))


class SimulatorConfig(BaseModel):
    """How the simulator behaves. Defaults mimic Legnext at real speed.

    Balance, banned words, output lifetime, image size and faults are simulator
    decisions (API.md); concurrency 6 is the vendor's account limit (API.md).
    Numbers must be finite (simulator decision).

    Attributes:
        api_key: the only key accepted in ``x-api-key`` (a plain string is accepted).
        time_scale: multiplies every job duration (1.0 real, 0.001 for tests; at most
            ``MAX_TIME_SCALE``).
        concurrency: jobs run at once per account; more wait in ``pending``.
        points: starting balance in points (1000 points = 1 USD).
        seed: seeds durations, outputs and fault draws.
        banned_words: prompts containing one are refused with 403 (body shape B).
        output_ttl: seconds an output URL stays downloadable after completion.
        input_timeout: seconds an input image or mask URL may take to download,
            redirects included (besides the 10 MiB, 5-redirect and http(s) limits).
        image_size: pixel size of each generated (square) image.
        video_bytes: size of each generated video file.
        callback_secret: when set, callbacks are signed (see API.md).
        callback_attempts: deliveries tried per callback before giving up.
        clock_offset: seconds the simulator's clock (its timestamps) runs ahead of the
            machine's (negative: behind), to try clients' clock handling. A simulator
            decision: Legnext's clock is simply its own.
        whole_second_timestamps: timestamps without a fraction of a second, as in
            Legnext's samples (the default keeps microseconds, which short scaled jobs
            need to be timed at all: a simulator decision).
        faults: per endpoint name (``"*"`` for all, ``"files"`` for output downloads)
            fault settings.
    """

    # hide_input_in_errors: a refused api_key must not be echoed in the error.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, validate_assignment=True, hide_input_in_errors=True
    )

    api_key: SecretStr = SecretStr("sim-key")
    time_scale: float = Field(1.0, gt=0, le=MAX_TIME_SCALE)
    concurrency: int = Field(6, ge=1)
    points: int = Field(100_000, ge=0)
    seed: int = 0
    banned_words: list[str] = Field(default_factory=lambda: ["forbidden", "nsfw"])
    output_ttl: float = Field(3600.0, gt=0)
    input_timeout: float = Field(30.0, gt=0)
    image_size: int = Field(512, ge=64, le=2048)
    video_bytes: int = Field(256 * 1024, ge=1024)
    callback_secret: SecretStr | None = None
    callback_attempts: int = Field(3, ge=1)
    clock_offset: float = Field(0.0, ge=-86400.0, le=86400.0)
    whole_second_timestamps: bool = False
    faults: dict[str, Faults] = Field(default_factory=dict)

    @field_validator("api_key", mode="before")
    @classmethod
    def _sendable_key(cls, value: Any) -> Any:
        # A key no client can send (empty, or with whitespace inside) would make every
        # request a 401: refused at start. Surrounding whitespace is stripped, as the
        # clients strip it.
        if isinstance(value, str | SecretStr):
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not raw.strip():
                raise ValueError("is empty: no client could send it")
            return clean_api_key(raw, "the key")
        return value

    @field_validator("faults")
    @classmethod
    def _known_targets(cls, faults: dict[str, Faults]) -> dict[str, Faults]:
        return _check_targets(faults)

    def faults_for(self, endpoint: str) -> Faults:
        """The faults in force on `endpoint`: its own settings layered over ``"*"``.

        Field by field: a fault the endpoint's settings give (even 0, which turns a
        ``"*"`` fault off there) wins; every other fault comes from ``"*"``; a fault
        given by neither is at its default. This merge rule is a simulator decision.
        """
        everywhere = self.faults.get(ALL_ENDPOINTS)
        own = self.faults.get(endpoint)
        if own is None:
            return everywhere or Faults()
        if everywhere is None:
            return own
        return everywhere.model_copy(
            update={name: getattr(own, name) for name in own.model_fields_set}
        )
