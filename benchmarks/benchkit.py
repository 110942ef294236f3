"""What every `make bench` scenario returns (issue 12), so that the runner
(`benchmarks.bench`) can print one table, write ``bench/results/latest.json`` and
regenerate docs/benchmarks.md without knowing any scenario.

A scenario is a module ``benchmarks/bench_<name>.py`` with::

    def run(*, quick: bool, workdir: Path) -> Outcome

``quick`` shrinks it to seconds (``make bench-quick``, CI): it must still produce every
figure key, with no claim about speed. Targets are read from the figures and reported,
never asserted as timed tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Figure = float | int


@dataclass(frozen=True)
class Target:
    """One target of the issue, read from a run: ``text`` says the target, ``result``
    what was measured (both shown in the table)."""

    text: str
    result: str
    met: bool


@dataclass
class Outcome:
    """One scenario's run: flat figures (keys of latest.json), the targets they decide,
    markdown lines for the docs (e.g. where the milliseconds go) and figure files."""

    figures: dict[str, Figure]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
