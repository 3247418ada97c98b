# Two commands on a fresh machine:  make search   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TARGET ?= jetson
BUDGET ?= 10ms
ARGS   ?=
RUN    ?=

.PHONY: search test test-deps data install lint profile validate clean explore

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned: anything else pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,openvino,app,ray,postgres]'
	touch $@

install: $(VENV)/.installed

data: $(VENV)/.installed
	@bash scripts/ensure-data.sh $(BIN)/autocompress

search: $(VENV)/.installed data
	$(BIN)/autocompress search --target $(TARGET) --budget $(BUDGET) $(ARGS)

# chromium and postgresql (Debian) for the browser and shared-storage tests, as 'data' does for the data
test-deps:
	@bash scripts/ensure-test-deps.sh

test: $(VENV)/.installed-dev data test-deps
	$(BIN)/python -m pytest -q --durations=15 $(ARGS)

# The Pareto explorer on 127.0.0.1:8501 (RUN=runs/<name> to open one run; default: pick in runs/)
explore: $(VENV)/.installed-dev
	$(BIN)/autocompress explore $(RUN) $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check autocompress tests

# Re-measure this machine's latency tables for the shipped spaces (fp32 + int8, 1 thread),
# with ONNX Runtime and with OpenVINO; then check them against end-to-end measurements.
profile: $(VENV)/.installed-dev
	$(BIN)/autocompress profile --space fashion_mnist --replace
	$(BIN)/autocompress profile --space tiny --networks 0
	$(BIN)/autocompress profile --runtime openvino --space fashion_mnist --replace
	$(BIN)/autocompress profile --runtime openvino --space tiny --networks 0

validate: $(VENV)/.installed-dev
	$(BIN)/autocompress validate-latency --target x86-cpu-onnxruntime -n 100 --precision fp32
	$(BIN)/autocompress validate-latency --target x86-cpu-onnxruntime -n 100 --precision int8
	$(BIN)/autocompress validate-latency --target x86-cpu-openvino -n 100 --precision fp32
	$(BIN)/autocompress validate-latency --target x86-cpu-openvino -n 100 --precision int8

clean:
	rm -rf $(VENV) .pytest_cache
