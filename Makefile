# Two commands: `make up` runs tickpipe on this machine, `make test` proves it works.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test up db down bench status

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Everything in the foreground: QuestDB (or SQLite without Java), the simulator unless
# POLYGON_API_KEY is set, the ingester, the API. Ctrl+C stops it all.
up: install
	$(BIN)/python -m ingest.stack

# QuestDB alone, in the background (for working on one part at a time).
db: install
	$(BIN)/tickpipe-questdb start
	$(BIN)/python -m sql apply

down:
	$(BIN)/tickpipe-questdb stop

# The benchmark harness (about 25 minutes; BENCH_ARGS=--quick for the one-minute smoke run).
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

status:
	$(BIN)/tickpipe-questdb status
