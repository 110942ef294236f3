"""Limits on fetching URLs we did not choose: Legnext's outputs, masks, input images.

Such a URL may point anywhere and its server may send anything, so every fetch is
limited to http and https, at most `MAX_REDIRECTS` redirects (followed by hand, so
that each target's scheme is checked before it is requested), a byte limit (the
Content-Length up front, then the bytes counted while streaming, so an endless body is
cut off) and a total time per file (besides httpx's per-read timeouts, which a server
sending a byte now and then never trips).

These are the rules only; each caller (orchestration's storage, the simulator) streams
the body itself and raises its own errors with the reasons given here. Public httpx
APIs only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
DEFAULT_FILE_TIMEOUT = 600.0
MAX_REDIRECTS = 5
SCHEMES = frozenset({"http", "https"})
# Ask for the bytes as stored: a compressed body could inflate far beyond what was sent.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class FetchLimits:
    """How much one file may take: bytes, seconds (all redirects and attempts), hops."""

    max_bytes: int = DEFAULT_MAX_FILE_BYTES
    timeout: float = DEFAULT_FILE_TIMEOUT
    max_redirects: int = MAX_REDIRECTS

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or not self.timeout > 0 or self.max_redirects < 0:
            raise ValueError(
                "fetch limits must be positive: "
                f"max_bytes={self.max_bytes}, timeout={self.timeout}, "
                f"max_redirects={self.max_redirects}"
            )


class Deadline:
    """The end of a file's time limit, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base` with no phase (connect, read, write, pool) longer than what is left,
        so the last read cannot overrun the deadline by a whole read timeout."""
        left = max(self.remaining(), 0.001)

        def cap(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=cap(base.connect), read=cap(base.read), write=cap(base.write),
            pool=cap(base.pool),
        )  # fmt: skip


def redact(url: str) -> str:
    """`url` without user info, query or fragment, which may carry a signature or a
    token: what errors and logs may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port or host: show nothing of it
        return "<malformed URL>"
    if not parts.scheme:
        return parts.path or "<no URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def file_name(url: str) -> str:
    """The last path segment of `url` (never its query): how errors name a file."""
    return redact(url).rstrip("/").rsplit("/", 1)[-1] or redact(url)


def scheme_refusal(url: str) -> str | None:
    """Why `url` is not fetched at all, or None when its scheme is http or https."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "refusing a malformed URL"
    scheme = parts.scheme.lower()
    if scheme in SCHEMES and parts.netloc:
        return None
    shown = f"{scheme}:" if scheme else redact(url)
    return f"refusing {shown} URL {redact(url)}: only http and https URLs are fetched"


def redirect_target(response: httpx.Response) -> str | None:
    """The absolute URL a redirect answer points to, or None for any other answer."""
    if not response.has_redirect_location:
        return None
    return str(response.url.join(response.headers["location"]))


def length_refusal(response: httpx.Response, max_bytes: int) -> str | None:
    """Why the body is refused before reading it: a Content-Length over `max_bytes`."""
    announced = content_length(response)
    if announced is not None and announced > max_bytes:
        return f"announces {announced} bytes, more than the limit of {max_bytes}"
    return None


def length_mismatch(response: httpx.Response) -> str | None:
    """After the body: the Content-Length disagrees with the bytes received."""
    announced = content_length(response)
    received = response.num_bytes_downloaded
    if announced is not None and announced != received:
        return f"sent {received} of the {announced} bytes it announced"
    return None


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
