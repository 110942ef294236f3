"""The floors hold: the core works with Prefect made unimportable, the simulator
imports nothing of the Prefect layer, and no module imports a floor above its own."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prefect_legnext"

# Each floor and the floors it may import (besides itself); the top modules may import all.
FLOORS: dict[str, set[str]] = {
    "core": set(),
    "simulator": {"core"},
    "orchestration": {"core"},
}

# A finder that refuses Prefect and its collections: an ImportError, as on a machine
# where they are not installed.
BLOCK_PREFECT = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoPrefect(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"prefect", "prefect_aws", "prefect_dask"}:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoPrefect())
    """
)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PREFECT + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_core_and_simulator_run_a_job_with_prefect_unimportable() -> None:
    done = run_python(
        """
        import prefect_legnext
        from prefect_legnext import LegnextClient, PollPolicy, InvalidRequestError
        from prefect_legnext.simulator import LegnextSimulator

        try:
            import prefect
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker let prefect through")
        with LegnextSimulator(time_scale=0.001) as sim:
            with LegnextClient(
                sim.api_key, base_url=sim.base_url, poll=PollPolicy(scale=0.001)
            ) as client:
                job = client.wait_for_job(client.diffusion(text="a red fox --draft --v 7"))
                try:
                    client.diffusion(text="")
                except InvalidRequestError as exc:
                    refused = type(exc).__name__
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in {"prefect", "prefect_aws"}
            or m.startswith("prefect_legnext.orchestration.")
            and m != "prefect_legnext.orchestration.errors"  # exported by the root; no Prefect
        )
        print(job.status.value, len(job.output.image_urls or []), refused, loaded)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["completed", "4", "InvalidRequestError", "[]"], done.stdout


def test_the_package_root_loads_prefect_only_for_the_block() -> None:
    done = run_python(
        """
        import prefect_legnext
        try:
            prefect_legnext.LegnextCredentials
        except ImportError as exc:
            print("blocked:", exc)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("blocked: prefect")


def _imports(path: Path) -> set[str]:
    """The prefect_legnext modules a file imports (at any depth, lazy ones included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if n.startswith("prefect_legnext"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prefect_legnext"))
    return found


def _floor(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_a_floor_imports_only_the_floors_below_it(floor: str) -> None:
    wrong = {
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in sorted((PACKAGE / floor).rglob("*.py"))
        for module in _imports(path)
        if _floor(module) not in FLOORS[floor] | {floor}  # the package root counts as the top
    }
    assert not wrong, sorted(wrong)


def test_the_floor_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The check itself can fail: a core file importing the Prefect layer is found.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from prefect_legnext.orchestration.tasks import x\n")
    assert "prefect_legnext.orchestration.tasks" in _imports(bad)
    assert _floor("prefect_legnext.orchestration.tasks") not in FLOORS["core"] | {"core"}
