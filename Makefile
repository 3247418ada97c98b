# Two commands on a fresh machine:  make search   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TARGET ?= jetson
BUDGET ?= 10ms
ARGS   ?=

.PHONY: search test data install lint profile clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned: anything else pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

data: $(VENV)/.installed
	@bash scripts/ensure-data.sh $(BIN)/autocompress

search: $(VENV)/.installed data
	$(BIN)/autocompress search --target $(TARGET) --budget $(BUDGET) $(ARGS)

test: $(VENV)/.installed-dev data
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check autocompress tests

# Re-measure this machine's latency table for the shipped spaces (fp32 + int8, 1 thread).
profile: $(VENV)/.installed
	$(BIN)/autocompress profile --space fashion_mnist --replace
	$(BIN)/autocompress profile --space tiny

clean:
	rm -rf $(VENV) .pytest_cache
