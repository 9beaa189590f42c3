# Two commands: `make up` runs tickpipe on this machine, `make test` proves it works.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test up down status

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

# QuestDB on loopback (fetched and started by tickpipe-questdb), then the schema.
up: install
	$(BIN)/tickpipe-questdb start
	$(BIN)/python -m sql apply
	@echo "tickpipe is up. Stop it with: make down"

down:
	$(BIN)/tickpipe-questdb stop

status:
	$(BIN)/tickpipe-questdb status
