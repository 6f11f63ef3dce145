# robo-trader: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# the backtest benchmark's peers (vectorbt, backtrader, nautilus-trader) need pandas < 3: own venv
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp
export DAGSTER_HOME := $(CURDIR)/dagster_home
export PYTHONUNBUFFERED := 1
# OpenMP threads sleep instead of spin-waiting: on 2 cores, spinning next to another busy process
# (a parallel test worker, another partition run) made XGBoost/LightGBM/torch 30-50x slower
export OMP_WAIT_POLICY ?= PASSIVE
# pytest workers (the machine has 2 cores)
WORKERS ?= 2

.PHONY: install kernels run test lint format typecheck contracts pytest postgres ui bench clean-data

# uv resolves and installs the same requirements as pip several times faster (about 75 s instead
# of 4 min fresh), from the sources pip is configured with (scripts/pip_sources_for_uv.py); pip
# itself is the fallback. --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE set, every
# process would otherwise compile every module it imports (CI's pytest took 15 min instead of 9,
# and a restarted live session started too late for its test's market)
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing robo-trader into $(VENV) (first time takes about a minute)"
	@$(PY) -m pip install --quiet --disable-pip-version-check 'uv>=0.5' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
	  && $(VENV)/bin/uv pip install --quiet --python $(PY) --index-strategy unsafe-best-match --compile-bytecode \
	       $$($(PY) scripts/pip_sources_for_uv.py) -e '.[dev]' \
	  || { echo "uv could not install; installing with pip"; \
	       $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
	@touch $@

install: $(STAMP)

## kernels: compile the live path's numba kernels once (cached on disk; a fresh checkout pays about
## half a minute here instead of in the first bar, or in every test process at once)
kernels: install
	@$(PY) -m trader_runtime.compiled

$(BENCH_STAMP): pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo "installing robo-trader with the bench extra into $(BENCH_VENV) (first time takes a few minutes)"
	@$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

## run: the pipeline on the embedded default (synthetic market + real index history)
run: install kernels
	$(PY) -m orchestration.pipeline

## test: lint, import contracts and types side by side with the kernels' compile step (two
## cores: about half a minute less than one after the other), then every test
test: install
	@$(MAKE) --no-print-directory --output-sync=target -j2 lint contracts typecheck kernels postgres
	@$(MAKE) --no-print-directory pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

contracts: install
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy trader_runtime

pytest: install postgres kernels
	$(PY) -m pytest -n $(WORKERS) --dist loadscope -q --durations=15

## postgres: PostgreSQL server binaries for the team-profile tests (tests/pg_kit.py starts a private
## server per test module); Debian's postgresql package, installed only when none are present
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| test -x "$${PG_BIN_DIR:-/nonexistent}/initdb"; then :; else \
		echo "installing PostgreSQL (Debian's postgresql package) for the team-profile tests"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	fi

## ui: Dagster (webserver + daemon) on :3000 and MLflow on :5000, loopback only
ui: install
	@mkdir -p mlruns/artifacts
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000 & \
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## bench: every benchmark at full size in .venv-bench (with the backtest peers); rewrites docs/benchmarks.md
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks --all --write-docs docs/benchmarks.md

clean-data:
	rm -rf data/lake data/warehouse.duckdb data/reports
