# Every target sets itself up: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Every library, its version and the hash of every file it may come from (all platforms,
# Python 3.11 and up): two machines that run `make` get the same bytes. `make lock` refreshes it.
LOCK   := requirements.lock
# Only `make lock` needs uv (its resolver writes one lock valid on every platform).
UV_VERSION := 0.13.9

.PHONY: setup browser lint test test-fast demo bench chaos clean lock

# The lock first (hashes required, so nothing unpinned slips in), then harvester itself with
# the locked build backend and no dependency resolution of its own.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Resolves the newest versions pyproject.toml allows, then `make` installs exactly those.
# `make lock UPGRADE=` only adds what pyproject.toml gained, keeping every other pin.
UPGRADE ?= --upgrade
lock:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra postgres --universal \
		--python-version 3.11 --generate-hashes $(UPGRADE) --quiet \
		--custom-compile-command 'make lock' --output-file $(LOCK)

# The report tests open `harvester report`'s page in a real headless Chromium: Debian's package,
# installed once when missing (as root, or through sudo), skipped when it is there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (Debian package) for the report tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

lint: setup
	$(VENV)/bin/ruff check harvester tests scripts
	$(VENV)/bin/ruff format --check harvester tests scripts
	$(VENV)/bin/mypy

test: lint browser
	$(VENV)/bin/pytest

# The suite without the slow end-to-end runs, for quick iterations.
test-fast: setup browser
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
	$(PY) scripts/chaos_workers.py --kills 50
	$(PY) scripts/chaos_workers.py --kills 50 --s3

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
