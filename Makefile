# The two commands a newcomer needs:
#   make demo   set up, then run the whole pipeline on the embedded default
#               (local broker + embedded ClickHouse, simulated market)
#   make test   set up, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEMO_ARGS ?= --source sim --venues all --sim-symbols 20 --duration 180 --data-dir .perpstream/demo

.PHONY: setup demo test lint graph unit integration bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/perpstream up $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The import graph between the parts of perpstream (docs/layout.md), from the same analysis
# as the layer contracts.
graph: $(STAMP)
	@$(BIN)/python .ci/import_graph.py

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/perpstream bench all

clean:
	rm -rf $(VENV) .perpstream .pytest_cache .mypy_cache .ruff_cache
