"""prefect-legnext: run Legnext (Midjourney) image pipelines with Prefect 3."""

from prefect_legnext.blocks import LegnextCredentials
from prefect_legnext.client import AsyncLegnextClient, LegnextClient
from prefect_legnext.endpoints import CREATE_ENDPOINTS, QUERY_ENDPOINTS, CreateEndpoint, endpoint
from prefect_legnext.errors import (
    AuthenticationError,
    BadRequestError,
    ContentRejectedError,
    InsufficientPointsError,
    InvalidRequestError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    LegnextAPIError,
    LegnextError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from prefect_legnext.polling import PollPolicy
from prefect_legnext.responses import Balance, Job, JobStatus
from prefect_legnext.retry import RetryPolicy

__all__ = [
    "CREATE_ENDPOINTS",
    "QUERY_ENDPOINTS",
    "AsyncLegnextClient",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "ContentRejectedError",
    "CreateEndpoint",
    "InsufficientPointsError",
    "InvalidRequestError",
    "Job",
    "JobError",
    "JobFailedError",
    "JobStatus",
    "JobTimeoutError",
    "LegnextAPIError",
    "LegnextClient",
    "LegnextCredentials",
    "LegnextError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PollPolicy",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "endpoint",
]
