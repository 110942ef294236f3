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
    """A Legnext output URL no longer serves its file (temporary URLs expire), and
    re-reading the job gave no fresh one. Names the job and the file, never the URL's
    query (it may carry a signature)."""


class DownloadError(StorageError):
    """An output download failed, was cut short, sent fewer or more bytes than it
    announced, or ran past its time limit; safe to retry while the URL lives."""


class DownloadRefusedError(StorageError):
    """A URL was not fetched, or its body was cut off: a scheme other than http(s), too
    many redirects, or a file over the byte limit. Not retried: the same URL gives the
    same answer. Not a `DownloadError`, so ``except DownloadError`` retries stay safe."""


class ConfigurationError(LegnextError, ValueError):
    """Neither a saved block nor the environment says how to connect."""


class ChainError(LegnextError, ValueError):
    """The chain cannot run as asked; raised before any point is spent on it."""


class BudgetExceededError(ChainError):
    """The next submit would take the run past `max_points` or the account's balance."""


class PrefectServerError(LegnextError):
    """Prefect's temporary server did not start."""
