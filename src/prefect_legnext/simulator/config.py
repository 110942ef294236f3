"""Settings of the offline Legnext simulator, including its fault injection."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ALL_ENDPOINTS = "*"


class Faults(BaseModel):
    """Faults injected on one endpoint (or on all, under the key ``"*"``).

    Rates are probabilities in 0..1 drawn from the simulator's seeded RNG, so a
    run with the same seed and the same requests meets the same faults.
    """

    model_config = ConfigDict(extra="forbid")

    server_error_rate: float = Field(0.0, ge=0, le=1, description="answer 5xx before handling")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="answer 429 before handling")
    retry_after: float = Field(1.0, ge=0, description="Retry-After seconds sent with a 429")
    drop_after_accept_rate: float = Field(
        0.0, ge=0, le=1, description="create and charge the job, then drop the connection"
    )
    latency: float = Field(0.0, ge=0, description="seconds added before answering")
    job_failure_rate: float = Field(0.0, ge=0, le=1, description="jobs that end failed")
    stuck_rate: float = Field(0.0, ge=0, le=1, description="jobs that never finish")
    download_error_rate: float = Field(0.0, ge=0, le=1, description="output downloads that 500")
    download_delay: float = Field(0.0, ge=0, description="seconds before an output download")
    callback_failure_rate: float = Field(
        0.0, ge=0, le=1, description="callback deliveries that fail (and are retried)"
    )


class SimulatorConfig(BaseModel):
    """How the simulator behaves. Defaults mimic Legnext at real speed.

    Balance, banned words, output lifetime, image size and faults are simulator
    decisions (API.md); concurrency 6 is the vendor's account limit (API.md).

    Attributes:
        api_key: the only key accepted in ``x-api-key``.
        time_scale: multiplies every job duration (1.0 real, 0.001 for tests).
        concurrency: jobs run at once per account; more wait in ``pending``.
        points: starting balance in points (1000 points = 1 USD).
        seed: seeds durations, outputs and fault draws.
        banned_words: prompts containing one are refused with 403 (body shape B).
        output_ttl: seconds an output URL stays downloadable after completion.
        image_size: pixel size of each generated (square) image.
        video_bytes: size of each generated video file.
        callback_secret: when set, callbacks are signed (see API.md).
        callback_attempts: deliveries tried per callback before giving up.
        faults: per endpoint name (``"*"`` for all) fault settings.
    """

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = SecretStr("sim-key")
    time_scale: float = Field(1.0, gt=0)
    concurrency: int = Field(6, ge=1)
    points: int = Field(100_000, ge=0)
    seed: int = 0
    banned_words: list[str] = Field(default_factory=lambda: ["forbidden", "nsfw"])
    output_ttl: float = Field(3600.0, gt=0)
    image_size: int = Field(512, ge=64, le=2048)
    video_bytes: int = Field(256 * 1024, ge=1024)
    callback_secret: SecretStr | None = None
    callback_attempts: int = Field(3, ge=1)
    faults: dict[str, Faults] = Field(default_factory=dict)

    def faults_for(self, endpoint: str) -> Faults:
        return self.faults.get(endpoint) or self.faults.get(ALL_ENDPOINTS) or Faults()
