# One entry point per developer task. `make demo` and `make test` do all set-up on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean services

$(BIN)/medledger: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/medledger

demo: $(BIN)/medledger
	$(BIN)/medledger demo

services:
	./scripts/ensure-services

test: $(BIN)/medledger services
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/pytest -q

# the code is laid out by hand (continuation lines aligned with their opening bracket), not by
# `ruff format`, which would rewrite most files: lint is the checks `make test` runs first
lint: $(BIN)/medledger
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench: $(BIN)/medledger
	$(BIN)/medledger bench ledger

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
