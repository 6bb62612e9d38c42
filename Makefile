# Two commands on a fresh machine:  `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use (CPU torch 2.13.0 + this package with its dev extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# torchvision's Python transforms for the SAM2 test only, off the path (tests/data/test_grounded_sam2.py)
	$(BIN)/pip install -q --no-deps --target $(VENV)/torchvision-pure torchvision==0.28.0 \
		|| echo "note: torchvision not installed; the SAM2 test will be skipped"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/freeprop demo -o outputs/demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

.PHONY: install demo test lint
