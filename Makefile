# Everything runs from .venv, built from nothing but python3.
PY ?= python3
VENV := .venv
# uv lives in its own bootstrap venv so that `uv sync` never removes itself.
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup test test-full lint typecheck pytest demo lock bench bench-quick chaos chaos-quick clean generate

setup: $(VENV)/.synced

$(UV):
	$(PY) -m venv .uv
	.uv/bin/python -m pip install --quiet uv

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on this
# machine), every Prefect process (each worker, each flow run) would otherwise compile
# Prefect from source again, about 4 CPU-seconds a process.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PY)
	$(VENV)/bin/python -m compileall -q -j 0 src benchmarks
	touch $@

lock: $(UV)
	$(UV) lock --python $(PY)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# The typed client methods and tasks, written from the endpoint table (checked in;
# tests/test_surface.py fails while they are out of date).
generate: setup
	$(VENV)/bin/python -m prefect_legnext.codegen

# Two processes, one test file each at a time (a file's fixtures stay in one process):
# most tests wait on servers they started, so two overlap well on two cores.
# PYTEST_PROCS=0 runs everything in this process. --durations names the slowest tests.
PYTEST_PROCS ?= 2
PYTEST_FLAGS = -n $(PYTEST_PROCS) --dist loadfile --durations=15

pytest: setup
	$(VENV)/bin/pytest $(PYTEST_FLAGS)

test: lint typecheck pytest

# make test plus the large variants of its cases (pytest marker `fleet`: the 12-chain
# distributed run behind docs/scaling.md's figures).
test-full: lint typecheck
	$(VENV)/bin/pytest $(PYTEST_FLAGS) -m 'fleet or not fleet'

demo: setup
	$(VENV)/bin/prefect-legnext demo

# Every benchmark scenario side by side against its anchors (docs/benchmarks.md): prints
# the table, writes bench/results/latest.json and regenerates docs/benchmarks.md.
bench: setup
	timeout 1200 $(VENV)/bin/python -m benchmarks.bench

# The same scenarios shrunk to a minute or two, results to a temporary directory only.
bench-quick: setup
	timeout 300 $(VENV)/bin/python -m benchmarks.bench --quick

# The large chaos run (docs/reliability.md): 200 chains through deployments on a
# PostgreSQL-backed `prefect server start`, 3 process workers, some SIGKILLed. Details
# and every process's log go to chaos-output/; stdout is the one summary line.
CHAOS_SEED ?= 11
chaos: setup
	@rm -rf chaos-output && mkdir -p chaos-output
	@timeout 1500 $(VENV)/bin/python -m benchmarks.chaos --fleet --chains 200 --workers 3 \
		--kills 6 --server postgresql --seed $(CHAOS_SEED) --log-dir chaos-output/logs \
		2> chaos-output/details.log

# The chaos suite's short seeded run alone (make test runs it too: docs/reliability.md).
chaos-quick: setup
	$(VENV)/bin/pytest -m chaos -p no:cacheprovider

clean:
	rm -rf $(VENV) .uv .mypy_cache .ruff_cache .pytest_cache demo-output chaos-output
