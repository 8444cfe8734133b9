# Every target sets itself up: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup lint test test-fast demo bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check harvester tests scripts
	$(VENV)/bin/ruff format --check harvester tests scripts
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

# The suite without the slow end-to-end runs, for quick iterations.
test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

demo: setup
	$(PY) scripts/demo.py

# Compiled first, as an installed package is: every harvest is a new process, and a machine
# with PYTHONDONTWRITEBYTECODE set would otherwise compile the package at each start.
bench: setup
	$(PY) -m compileall -q harvester
	$(PY) scripts/bench.py

chaos: setup
	$(PY) scripts/chaos.py --kills 200
	$(PY) scripts/chaos.py --source rqs --kills 100

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
