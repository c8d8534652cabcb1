# simmlm — `make demo` sets everything up and runs the avMNIST benchmark; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
OUT ?= results/avmnist
export SIMMLM_DATA_DIR ?= $(DATA_DIR)

.PHONY: setup demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel; nothing later may pull another build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/simmlm data avmnist --data-dir $(DATA_DIR)
	$(BIN)/simmlm benchmark avmnist --methods simmlm,dmome --seeds 0,1,2 --data-dir $(DATA_DIR) --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
