# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test ui lint audit bench browser clean
SHELL := /bin/bash

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

## make demo: venv + install, then register, download, load and train on the toy dataset
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## make test: install what the tests need (packages, Chromium) and run the whole suite
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory audit
	$(BIN)/python -m pytest -q

## Chromium and its driver for the browser tests (Debian packages)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver (apt)"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

## make ui: serve the web UI on http://127.0.0.1:8080
ui: $(STAMP)
	$(BIN)/pygestor ui

## pip-audit of the pinned dependencies (needs the PyPI vulnerability API; where it cannot be
## reached, pip-audit reports the packages as not audited and does not fail)
audit: $(STAMP)
	$(BIN)/pip-audit -r constraints.txt --no-deps --disable-pip --progress-spinner off 2>&1 \
	  | grep -v "could not be audited" | grep -v "^WARNING:pip_audit"; \
	  exit $${PIPESTATUS[0]}

lint: $(STAMP)
	$(BIN)/ruff check .

## make bench: the loader and scale benchmarks (minutes; not part of the tests)
bench: $(STAMP)
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) data examples/data artifacts .pytest_cache
