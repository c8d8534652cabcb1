# simmlm — `make demo` sets everything up and runs the avMNIST benchmark; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# ../shared/data where it exists (this project's machines), else data/ (downloaded by make demo)
DATA_DIR ?= $(if $(wildcard ../shared/data/avmnist),../shared/data,data)
OUT ?= results/avmnist
export SIMMLM_DATA_DIR ?= $(DATA_DIR)

.PHONY: setup lock demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel; nothing later may pull another build. constraints.txt pins the rest.
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev,text]'
	touch $@

setup: $(VENV)/.installed

# Re-resolve every dependency from pyproject.toml in a scratch venv and write their versions to constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install torch==2.13.0 && .lock-venv/bin/pip install '.[dev,text]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude simmlm | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

demo: setup
	@if [ ! -d "$(DATA_DIR)/avmnist" ]; then \
		echo "no avMNIST data under $(DATA_DIR): downloading it (simmlm download avmnist)"; \
		$(BIN)/simmlm download avmnist --data-dir $(DATA_DIR); fi
	@mkdir -p .cache && (git show HEAD:$(OUT)/summary.json > .cache/reference-summary.json 2>/dev/null \
		|| cp $(OUT)/summary.json .cache/reference-summary.json 2>/dev/null || true)
	$(BIN)/simmlm data avmnist --data-dir $(DATA_DIR)
	$(BIN)/simmlm benchmark avmnist --methods simmlm,dmome --seeds 0,1,2 --data-dir $(DATA_DIR) --out $(OUT)
	@if [ -s .cache/reference-summary.json ]; then \
		$(BIN)/simmlm compare .cache/reference-summary.json $(OUT)/summary.json; \
	else echo "no committed $(OUT)/summary.json to compare with"; fi

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
