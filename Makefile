# aios_dagster: every entry point a user or CI needs. `make demo` and `make test` work on a fresh
# clone: they create the environment from uv.lock first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

export AIOS_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(AIOS_DATA_DIR)/dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export UV_LINK_MODE := copy

DBT_DIR := dbt_project
MANIFEST := $(DBT_DIR)/target/manifest.json

.PHONY: install manifest demo dev mlflow-ui drift-ui test browser lint format bench clean

# Bytecode is compiled here, as pip would at install time: uv does not by default, and where
# PYTHONDONTWRITEBYTECODE is set (containers, CI) every process would otherwise compile all it
# imports from source again (Dagster's definitions take more than twice as long to load). Our
# own sources are recompiled on each call, only the files that changed.
install: $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j 0 aios_dagster tests bench >/dev/null

$(VENV)/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# dagster-dbt loads the manifest when the code location loads; prepare it here, never at import.
manifest: $(MANIFEST)

$(MANIFEST): $(VENV)/.installed $(shell find $(DBT_DIR)/models $(DBT_DIR)/macros -type f 2>/dev/null) $(DBT_DIR)/dbt_project.yml $(DBT_DIR)/profiles.yml
	$(BIN)/dbt parse --project-dir $(DBT_DIR) --profiles-dir $(DBT_DIR) --quiet
	@touch $@

demo: install manifest
	$(BIN)/aios-dagster demo $(DEMO_ARGS)

# Dagster UI plus a supervised Triton on fixed ports (restarted if it dies); see `aios-dagster
# dev --help` for the ports, e.g. make dev DEV_ARGS="--port 3001 --triton-grpc-port 9001".
dev: install manifest
	$(BIN)/aios-dagster dev $(DEV_ARGS)

# The MLflow UI over the model registry (versions, runs, aliases, model cards) on 127.0.0.1;
# e.g. make mlflow-ui MLFLOW_UI_ARGS="--port 5001".
mlflow-ui: install
	$(BIN)/aios-dagster mlflow-ui $(MLFLOW_UI_ARGS)

# The Evidently UI over the drift workspace (a project per model: drift and quality reports over
# time, a dashboard) on 127.0.0.1; e.g. make drift-ui DRIFT_UI_ARGS="--port 8010".
drift-ui: install
	$(BIN)/aios-dagster drift-ui $(DRIFT_UI_ARGS)

# Two workers: each test module runs whole on one of them (module fixtures are built once), and
# the integration package, whose whole-flow runs are package fixtures, is one unit on one worker
# (tests/conftest.py groups them).
PYTEST_WORKERS := -n 2 --durations=25
test: install manifest browser
	$(BIN)/pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The UI tests drive Debian's Chromium (never a browser download); installed once, as root or
# through sudo.
CHROMIUM := /usr/bin/chromium
browser: $(CHROMIUM)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM) (Debian: apt-get install chromium)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update && \
	       $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends chromium; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install manifest
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf data $(DBT_DIR)/target $(DBT_DIR)/logs
