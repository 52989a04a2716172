# `make test` and `make run` bootstrap .venv themselves from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU machines carry this torch build as a local wheel; pip takes it from there. Override for a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install test run clean-venv

# System tools the tests use: bubblewrap (the execution sandbox's namespaces) and Chromium (the docs check).
SYSTEM_PKGS ?= bubblewrap chromium chromium-driver

$(STAMP): pyproject.toml
	bash scripts/system_deps.sh $(SYSTEM_PKGS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The default main job on the embedded default corpus.
run: $(STAMP)
	$(BIN)/stablecode quickstart

## Notebooks clean, package in sync with the notebooks, every notebook's cells, then pytest.
test: $(STAMP)
	bash scripts/check_sync.sh
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest -q tests

clean-venv:
	rm -rf $(VENV)
