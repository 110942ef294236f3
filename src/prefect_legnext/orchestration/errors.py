"""The errors of the Prefect layer: storage, chain planning, configuration and the
temporary Prefect server. All derive from `LegnextError` (the core's root), so one
``except LegnextError`` catches everything this package raises on purpose."""

from __future__ import annotations

from prefect_legnext.core.errors import LegnextError


class StorageError(LegnextError):
    """Persisting outputs failed."""


class BucketNotFoundError(StorageError):
    """The S3 bucket does not exist at the configured endpoint."""


class StorageAccessError(StorageError):
    """S3 refused the credentials or the operation."""


class StorageUnavailableError(StorageError):
    """S3 could not be reached or answered with a transient error; safe to retry."""


class OutputExpiredError(StorageError):
    """A Legnext output URL no longer serves its file (temporary URLs expire)."""


class DownloadError(StorageError):
    """An output download failed or was cut short; safe to retry while the URL lives."""


class ConfigurationError(LegnextError, ValueError):
    """Neither a saved block nor the environment says how to connect."""


class ChainError(LegnextError, ValueError):
    """The chain cannot run as asked; raised before any point is spent on it."""


class BudgetExceededError(ChainError):
    """The next submit would take the run past `max_points` or the account's balance."""


class PrefectServerError(LegnextError):
    """Prefect's temporary server did not start."""
