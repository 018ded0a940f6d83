# faye: `make demo` runs a preview deploy on the local stack; `make test` runs every check.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# Airflow recompiles every module on each start when bytecode writing is off (these machines set it):
# keep a bytecode cache in the repo instead. It halves process start-up.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.cache/pycache

.PHONY: setup lint typecheck unit test demo down clean

setup:
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || python3 -m pip install --quiet --user uv
	@$(UV) sync --frozen --all-extras --quiet

lint: setup
	$(UV) run ruff check .

typecheck: setup
	$(UV) run mypy

unit: setup
	$(UV) run pytest -m "not integration"

test: setup lint typecheck
	$(UV) run pytest

demo: setup
	$(UV) run faye stack up
	$(UV) run faye demo

down: setup
	$(UV) run faye stack down

clean: down
	rm -rf .faye .faye-test .cache
