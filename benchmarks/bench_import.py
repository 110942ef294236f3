"""Import time (issue 12, target 6): the Legnext core client (``prefect_legnext.core.
client``) against the official SDK (``legnext`` 0.3.0, the bench dependency group), each
imported in fresh interpreters, alternating, the median of several. Each fresh core
interpreter also reports whether Prefect or any CLI machinery (click, rich, typer) was
imported with it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.benchkit import Outcome, Target

TARGET_RATIO = 1.5
CORE = "prefect_legnext.core.client"
SDK = "legnext"
HEAVY = ("prefect", "click", "rich", "typer")
_PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def _once(module: str) -> tuple[float, list[str]]:
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return float(answer["seconds"]), list(answer["heavy"])


def run(*, quick: bool, workdir: Path) -> Outcome:
    rounds = 2 if quick else 11
    _once(CORE), _once(SDK)  # warm the file system cache and the bytecode
    core, sdk, heavy = [], [], set()
    for _ in range(rounds):
        seconds, loaded = _once(CORE)
        core.append(seconds)
        heavy.update(loaded)
        sdk.append(_once(SDK)[0])
    core_s, sdk_s = statistics.median(core), statistics.median(sdk)
    figures = {
        "import_seconds_core": core_s,
        "import_seconds_sdk": sdk_s,
        "import_ratio_core_to_sdk": core_s / sdk_s,
        "import_core_loads_prefect_or_cli": int(bool(heavy)),
    }
    return Outcome(
        figures=figures,
        targets=[
            Target(
                f"core import <= {TARGET_RATIO:g} x the SDK's, no Prefect, no CLI machinery",
                f"{core_s:.3f} s vs SDK {sdk_s:.3f} s ({core_s / sdk_s:.2f} x); "
                f"loaded: {', '.join(sorted(heavy)) or 'none of ' + '/'.join(HEAVY)}",
                core_s <= TARGET_RATIO * sdk_s and not heavy,
            )
        ],
        notes=[f"Fresh interpreters, alternating, median of {rounds} each."],
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(run(quick="--quick" in sys.argv, workdir=Path(tmp)))
