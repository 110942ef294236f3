"""prefect-legnext: run Legnext (Midjourney) image pipelines with Prefect 3.

Floors, each importing only those below it (docs/architecture.md):
`prefect_legnext.core` (the Legnext client, models, errors; no Prefect),
`prefect_legnext.orchestration` (blocks, tasks, ledger, storage, flows),
`prefect_legnext.simulator` (the offline Legnext and S3 servers, on the core only),
and the command line on top. Importing this package loads no Prefect:
`LegnextCredentials` loads it on first use.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version
from typing import TYPE_CHECKING, Any

from prefect_legnext.core.client import AsyncLegnextClient, LegnextClient
from prefect_legnext.core.endpoints import (
    CREATE_ENDPOINTS,
    QUERY_ENDPOINTS,
    CreateEndpoint,
    endpoint,
)
from prefect_legnext.core.errors import (
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
    MissingExtraError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from prefect_legnext.core.polling import PollPolicy
from prefect_legnext.core.responses import Balance, Job, JobStatus
from prefect_legnext.core.retry import RetryPolicy
from prefect_legnext.orchestration.errors import (
    BucketNotFoundError,
    BudgetExceededError,
    ChainError,
    ConfigurationError,
    DownloadError,
    DownloadRefusedError,
    OutputExpiredError,
    PrefectServerError,
    StorageAccessError,
    StorageError,
    StorageUnavailableError,
)

__all__ = [
    "CREATE_ENDPOINTS",
    "QUERY_ENDPOINTS",
    "AsyncLegnextClient",
    "AuthenticationError",
    "BadRequestError",
    "Balance",
    "BucketNotFoundError",
    "BudgetExceededError",
    "ChainError",
    "ConfigurationError",
    "ContentRejectedError",
    "CreateEndpoint",
    "DownloadError",
    "DownloadRefusedError",
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
    "MissingExtraError",
    "NotFoundError",
    "OutcomeUnknownError",
    "OutputExpiredError",
    "PollPolicy",
    "PrefectServerError",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "StorageAccessError",
    "StorageError",
    "StorageUnavailableError",
    "TransportError",
    "__version__",
    "endpoint",
]


def _source_tree_version() -> str:
    """The version ``pyproject.toml`` declares, for a source tree used uninstalled."""
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "0+unknown"
    if project.get("name") != "prefect-legnext":
        return "0+unknown"
    return str(project.get("version", "0+unknown"))


try:
    __version__ = _distribution_version("prefect-legnext")
except PackageNotFoundError:
    __version__ = _source_tree_version()
"""The running version. Prefect versions block schemas by a package's ``__version__``:
it is also the version of the ``LegnextCredentials`` schema a server registers."""

if TYPE_CHECKING:
    from prefect_legnext.orchestration.blocks import LegnextCredentials


def __getattr__(name: str) -> Any:
    if name == "LegnextCredentials":
        from prefect_legnext.orchestration.blocks import LegnextCredentials

        return LegnextCredentials
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # `prefect block register -m prefect_legnext` lists these
    return sorted(set(globals()) | {"LegnextCredentials"})
