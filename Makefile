# DealerPulse developer commands. Everything runs from a virtualenv that the
# targets create on first use (.venv), so a fresh clone needs only Python >= 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv run test lint proto bench clean

help:
	@echo "make run    - set up and run collector + one local agent on SQLite"
	@echo "make test   - set up and run the test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make proto  - regenerate the protobuf/gRPC stubs"
	@echo "make bench  - run the benchmarks (not tests); results in bench/results/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/dealerpulse up

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

proto: $(STAMP)
	$(BIN)/python protos/generate.py

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
