# simmlm — `make demo` sets everything up, reruns the avMNIST benchmark and says whether it reproduced the committed
# numbers; `make test` runs the tests; `make results` regenerates the committed avMNIST headline results.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# ../shared/data where it exists (this project's machines), else data/ (downloaded by make demo)
DATA_DIR ?= $(if $(wildcard ../shared/data/avmnist),../shared/data,data)
OUT ?= results/avmnist
export SIMMLM_DATA_DIR ?= $(DATA_DIR)

.PHONY: setup lock demo results test test-fast lint docs clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel; nothing later may pull another build. constraints.txt pins the rest.
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev,text,docs]'
	touch $@

setup: $(VENV)/.installed

# Re-resolve every dependency from pyproject.toml in a scratch venv and write their versions to constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install torch==2.13.0 && .lock-venv/bin/pip install '.[dev,text,docs]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude simmlm | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

# The committed headline benchmarks and how many seeds they run; make demo reruns seeds 0-2 of the first.
RESULT_SEEDS ?= $(shell seq -s, 0 19)
COMPARE_SEEDS ?= $(RESULT_SEEDS)
DEMO_OUT ?= .cache/demo/avmnist
PORTABLE := SIMMLM_REPRODUCIBILITY=portable

# make demo trains into $(DEMO_OUT) (never into committed files) and compares with the committed results.
demo: setup
	@if [ ! -d "$(DATA_DIR)/avmnist" ]; then \
		echo "no avMNIST data under $(DATA_DIR): downloading it (simmlm download avmnist)"; \
		$(BIN)/simmlm download avmnist --data-dir $(DATA_DIR); fi
	$(PORTABLE) $(BIN)/simmlm data avmnist --data-dir $(DATA_DIR)
	rm -rf $(DEMO_OUT)
	$(PORTABLE) $(BIN)/simmlm benchmark avmnist --methods simmlm,dmome --seeds 0,1,2 --data-dir $(DATA_DIR) --out $(DEMO_OUT)
	$(BIN)/simmlm compare $(OUT)/summary.json $(DEMO_OUT)/summary.json

# Regenerate the committed avMNIST headline and comparison (portable mode; about 1 h 45 min on a 2-core CPU).
results: setup
	$(PORTABLE) $(BIN)/simmlm benchmark avmnist --methods simmlm,dmome --seeds $(RESULT_SEEDS) --data-dir $(DATA_DIR) --out $(OUT)
	$(PORTABLE) $(BIN)/simmlm benchmark avmnist --methods simmlm,dmome,late_fusion,mmp,dream --seeds $(COMPARE_SEEDS) \
		--data-dir $(DATA_DIR) --out results/avmnist-compare
	$(BIN)/simmlm report results/avmnist-compare

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

# The documentation site (docs/_build/html/index.html); warnings are errors.
docs: setup
	rm -rf docs/_build docs/_generated docs/reference/_autosummary
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
