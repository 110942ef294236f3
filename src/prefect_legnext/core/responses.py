"""Response models: what Legnext really sends, read leniently.

Unknown keys are ignored, "not set" timestamps (``0001-01-01T00:00:00Z`` live,
``""`` in the vendor's examples) become ``None``, task types are normalised to
underscores, and an unknown status is kept as text and never counts as success.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

NOT_SET_TIMESTAMPS = frozenset({"", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00"})


class JobStatus(StrEnum):
    PENDING = "pending"
    STAGED = "staged"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


def _timestamp(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip() in NOT_SET_TIMESTAMPS):
        return None
    return value


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _status(value: Any) -> Any:
    try:
        return JobStatus(value)
    except ValueError:
        return value  # kept verbatim: an unknown status is never success


def normalize_task_type(value: str) -> str:
    """``remove-background`` and ``remove_background`` name the same task type."""
    return value.strip().lower().replace("-", "_")


Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Usage(ResponseModel):
    type: str = "point"
    frozen: int = 0
    consume: int = 0


class JobMeta(ResponseModel):
    created_at: Timestamp = None
    started_at: Timestamp = None
    ended_at: Timestamp = None
    usage: Usage = Field(default_factory=Usage)


class WebhookConfig(ResponseModel):
    endpoint: OptionalText = None
    secret: str = Field(default="", repr=False)


class JobConfig(ResponseModel):
    service_mode: str = ""
    webhook_config: WebhookConfig | None = None


class JobErrorInfo(ResponseModel):
    code: int = 0
    raw_message: str = ""
    message: str = ""
    detail: Any = None

    @property
    def is_set(self) -> bool:
        return bool(self.code or self.message or self.raw_message)


class JobOutput(ResponseModel):
    image_url: OptionalText = None
    image_urls: list[str] | None = None
    video_urls: list[str] | None = None
    seed: OptionalText = None
    available_actions: dict[str, list[int] | bool] = Field(default_factory=dict)
    prompts: list[str] | None = None

    @field_validator("available_actions", mode="before")
    @classmethod
    def _normalize_actions(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):  # entries that are neither lists nor flags mean "not allowed"
            return {
                normalize_task_type(k): v for k, v in value.items() if isinstance(v, bool | list)
            }
        return value

    def allows(self, action: str, image_no: int | None = None) -> bool:
        """Whether `available_actions` permits `action` (on `image_no`, for per-image ones)."""
        allowed = self.available_actions.get(normalize_task_type(action))
        if isinstance(allowed, bool):
            return allowed
        if allowed is None:
            return False
        return image_no is None or image_no in allowed

    @property
    def urls(self) -> list[str]:
        """The individual output files: images, else videos, else the single image."""
        if self.image_urls:
            return list(self.image_urls)
        if self.video_urls:
            return list(self.video_urls)
        return [self.image_url] if self.image_url else []


class Job(ResponseModel):
    """A Legnext task object, as returned by every create call and by GET job."""

    job_id: str
    model: OptionalText = None
    task_type: str = ""
    status: Annotated[JobStatus | str, BeforeValidator(_status)]
    config: JobConfig | None = None
    input: Any = None
    output: JobOutput | None = None
    meta: JobMeta = Field(default_factory=JobMeta)
    detail: Any = None
    logs: list[Any] | None = None
    error: JobErrorInfo = Field(default_factory=JobErrorInfo)

    @field_validator("task_type", mode="before")
    @classmethod
    def _task_type(cls, value: Any) -> Any:
        return normalize_task_type(value) if isinstance(value, str) else value

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("meta", mode="before")
    @classmethod
    def _meta(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def is_known_status(self) -> bool:
        return isinstance(self.status, JobStatus)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status is JobStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.status is JobStatus.FAILED

    @property
    def points_charged(self) -> int:
        """Points Legnext consumed (``usage.consume``): the job's price once it completed,
        0 while it runs and 0 for a failed job (Legnext releases the frozen points)."""
        return self.meta.usage.consume

    @property
    def points_held(self) -> int:
        """Points frozen for a job still running (``usage.frozen``); 0 once it finished,
        whether completed (they were consumed) or failed (they were released)."""
        return 0 if self.is_finished else self.meta.usage.frozen

    @property
    def points(self) -> int:
        """What the job costs the account: once finished, the points charged (0 for a
        failed job); while running (or in an unknown status), the points held for it."""
        return self.points_charged if self.is_finished else self.meta.usage.frozen

    @property
    def output_urls(self) -> list[str]:
        return self.output.urls if self.output else []


class Balance(ResponseModel):
    """The ``data`` of ``GET /api/account/balance``."""

    account_id: int | str | None = None
    balance_usd: float = 0.0
    available_credits: int = 0
    available_points: int = 0
    alert_threshold: float | None = None
    low_balance_alert: bool = False
    updated_at: Timestamp = None


class AccountInfo(ResponseModel):
    """``GET /api/account/info``: loosely specified by Legnext, every field optional."""

    model_config = ConfigDict(extra="allow")

    account_id: int | str | None = None
    email: str | None = None
    plan: str | None = None
    status: str | None = None
    balance: float | None = None


class ActiveTask(ResponseModel):
    job_id: str
    task_type: str = ""
    status: Annotated[JobStatus | str, BeforeValidator(_status)] = ""
    created_at: Timestamp = None

    @field_validator("task_type", mode="before")
    @classmethod
    def _task_type(cls, value: Any) -> Any:
        return normalize_task_type(value) if isinstance(value, str) else value


class ActiveTasks(ResponseModel):
    """``GET /api/account/active_tasks``: loosely specified, every field optional."""

    model_config = ConfigDict(extra="allow")

    total_active: int | None = None
    concurrent_limit: int | None = None
    tasks: list[ActiveTask] = Field(default_factory=list)


def unwrap_data(body: Any) -> Any:
    """Account endpoints wrap their payload as ``{code, message, data}``; some may not."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return body["data"]
    return body
