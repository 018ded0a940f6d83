# faye: `make demo` runs a preview deploy on the local stack; `make test` runs every check.
SHELL := /bin/bash
# uv from PATH, else where `pip install --user` puts it (setup installs it there when missing).
UV = $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# The environment is built from uv.lock, never re-resolved.
export UV_FROZEN := 1
# Airflow recompiles every module on each start when bytecode writing is off (these machines set it):
# keep a bytecode cache in the repo instead. It halves process start-up.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(CURDIR)/.cache/pycache

.PHONY: setup uv lint typecheck unit test test-celery demo down status clean

# Install uv when it is missing: pip --user (with PEP 668's escape hatch on Debian's own Python).
uv:
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv \
	  || python3 -m pip install --quiet --user uv 2>/dev/null \
	  || python3 -m pip install --quiet --user --break-system-packages uv \
	  || { echo "faye: cannot install uv; install it (https://docs.astral.sh/uv/) and re-run" >&2; exit 1; }

setup: uv
	@$(UV) sync --frozen --all-extras --quiet

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: setup
	$(UV) run mypy

unit: setup
	$(UV) run pytest -m "not integration"

# ruff, mypy, then every test: unit tests, then integration tests on a stack the `stack` fixture
# starts once (FAYE_HOME=.faye-test, FAYE_PORT_BASE=28800 unless set) and stops at the end.
test: setup lint typecheck
	$(UV) run pytest

# The Celery two-worker stack on PostgreSQL and Redis (tests/integration/test_celery_stack.py): opt-in,
# it takes longer than the rest of `make test` together on a 2-core machine.
test-celery: setup
	FAYE_CELERY_TESTS=1 $(UV) run pytest tests/integration/test_celery_stack.py

demo: setup
	$(UV) run faye stack up
	$(UV) run faye demo

status: setup
	$(UV) run faye stack status

down: setup
	$(UV) run faye stack down

clean: down
	rm -rf .faye .faye-test .faye-celery-test .cache
