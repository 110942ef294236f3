"""How far Legnext's clock is from ours, measured from our own creates.

A lost create is matched to its job by the job's ``created_at`` (Legnext's clock)
against when we sent the create (our clock). Without a measurement the two clocks
may disagree by up to a generous bound (the ledger's ``CLOCK_SKEW``), which makes
every lost create's creation interval minutes wide, and two lost creates minutes
apart cannot be told apart.

Every answered create measures it: the job was created between our send and its
answer, so ``created_at - answered <= offset <= created_at - sent``. Legnext's
create answer may leave ``created_at`` blank (its samples do), so a job's first read
completes the measurement. A ``created_at`` without a fraction of a second (as in
Legnext's samples) is taken to mean any time within that second. The bounds of the
recent samples intersect into a narrow interval; when they disagree (a clock that was
stepped, or servers whose clocks differ), their hull is used instead, which is wide
but still true.

A fresh process (every Prefect flow run is one) has measured nothing when its first
create is lost, so the estimate is also shared through a small file per base URL in
the machine's temp directory: processes on one machine share one clock. Every rule
here (how long a sample or the shared estimate is trusted, the margin added) is our
decision; Legnext publishes nothing about its clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# How long a sample or the shared estimate stays trusted.
TRUSTED_SECONDS = 600.0
REFRESH_SECONDS = 60.0  # a steady estimate is written to the shared file this often
# Added on each side of the shared estimate: another process measured it, earlier.
SHARED_MARGIN_SECONDS = 0.25
MAX_SAMPLES = 64
MAX_PENDING = 1024  # created jobs whose created_at is still to be read
DIRECTORY_ENV = "PREFECT_LEGNEXT_CLOCK_DIR"


@dataclass(frozen=True)
class Offset:
    """Legnext's clock minus ours, in seconds: at least `low`, at most `high`."""

    low: float
    high: float

    def widened(self, seconds: float) -> Offset:
        return Offset(self.low - seconds, self.high + seconds)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sample(created_at: datetime, sent: datetime, answered: datetime) -> Offset:
    """What one created job says: it was created between `sent` and `answered` (our
    clock) at `created_at` (Legnext's, any time within that second when it has no
    fraction)."""
    created = _utc(created_at)
    resolution = 1.0 if created.microsecond == 0 else 0.0
    return Offset(
        (created - _utc(answered)).total_seconds(),
        (created - _utc(sent)).total_seconds() + resolution,
    )


class ClockGauge:
    """The offset estimate for one base URL in this process (thread-safe)."""

    def __init__(self, base_url: str, directory: Path | None = None) -> None:
        digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
        folder = directory or Path(
            os.environ.get(DIRECTORY_ENV) or Path(tempfile.gettempdir()) / "prefect-legnext"
        )
        self.path = folder / f"clock-{digest}.json"
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, Offset]] = deque(maxlen=MAX_SAMPLES)
        self._pending: OrderedDict[str, tuple[datetime, datetime]] = OrderedDict()
        self._own: Offset | None = None
        self._shared_at = 0.0

    def __repr__(self) -> str:
        return f"ClockGauge({self._own})"

    def created(self, job_id: str, created_at: datetime | None, sent: datetime,
                answered: datetime) -> None:  # fmt: skip
        """A create answered with job `job_id` (sent and answered on our clock)."""
        if created_at is not None:
            self._add(sample(created_at, sent, answered))
            return
        with self._lock:
            self._pending[job_id] = (sent, answered)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)

    def seen(self, job_id: str, created_at: datetime | None) -> None:
        """A read of job `job_id`: completes the measurement of a create of ours."""
        if created_at is None or job_id not in self._pending:
            return
        with self._lock:
            times = self._pending.pop(job_id, None)
        if times is not None:
            self._add(sample(created_at, *times))

    def offset(self) -> Offset | None:
        """The estimate: our own samples, or the machine's shared estimate before we
        have measured anything (never both: narrowing ours by another process's could
        hide a disagreement our newer samples show)."""
        with self._lock:
            own = self._current()
        return own if own is not None else self._read_shared()

    def _add(self, new: Offset) -> None:
        with self._lock:
            now = time.time()
            self._samples.append((now, new))
            before, current = self._own, self._current()
            self._own = current
            # Shared again when it changes, and while it holds: the others trust the
            # file for TRUSTED_SECONDS only (a steady estimate must not go stale there).
            due = current != before or now - self._shared_at > REFRESH_SECONDS
            if due:
                self._shared_at = now
        if current is not None and due:
            self._share(current)

    def _current(self) -> Offset | None:
        """The intersection of the trusted samples, or their hull when they disagree
        (caller holds the lock)."""
        horizon = time.time() - TRUSTED_SECONDS
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        if not self._samples:
            return None
        lows = [each.low for _, each in self._samples]
        highs = [each.high for _, each in self._samples]
        if max(lows) <= min(highs):
            return Offset(max(lows), min(highs))
        return Offset(min(lows), max(highs))

    def _read_shared(self) -> Offset | None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            if time.time() - float(data["at"]) > TRUSTED_SECONDS:
                return None
            return Offset(float(data["low"]), float(data["high"])).widened(SHARED_MARGIN_SECONDS)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or unreadable: measured again soon enough

    def _share(self, current: Offset) -> None:
        """Best effort: write our estimate atomically for the machine's other processes."""
        text = json.dumps({"low": current.low, "high": current.high, "at": time.time()})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, staged = tempfile.mkstemp(dir=self.path.parent, prefix=".clock-")
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.replace(staged, self.path)
        except OSError:
            pass  # a read-only temp directory: each process measures for itself


_gauges: dict[str, ClockGauge] = {}
_gauges_lock = threading.Lock()


def gauge_for(base_url: str) -> ClockGauge:
    """The process's gauge for a base URL (one Legnext account's server clock)."""
    with _gauges_lock:
        gauge = _gauges.get(base_url)
        if gauge is None:
            gauge = _gauges[base_url] = ClockGauge(base_url)
        return gauge
