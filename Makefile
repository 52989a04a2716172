# `make test` and `make run` bootstrap .venv themselves from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU machines carry this torch build as a local wheel; pip takes it from there. Override for a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install test run quickstart docs bench clean-venv

# System tools the tests use: bubblewrap (the execution sandbox's namespaces) and Chromium (the docs check).
SYSTEM_PKGS ?= bubblewrap chromium chromium-driver g++ nodejs default-jdk-headless libjavatuples-java php-cli rustc golang ruby ruby-test-unit lua5.4 perl libtest-deep-perl

$(STAMP): pyproject.toml
	bash scripts/system_deps.sh $(SYSTEM_PKGS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The default main job: the tiny CPU run of the pipeline, executed notebooks in papermill_runs/tiny-cpu/.
run: $(STAMP)
	$(BIN)/stablecode run papermill_runs/tiny-cpu.yaml

## The smallest end-to-end proof: a few training steps of the tiny model, a checkpoint and a greedy sample.
quickstart: $(STAMP)
	$(BIN)/stablecode quickstart

## The report site in docs/_build/html, from nbs/ and the latest tiny run (warnings as errors).
docs: $(STAMP)
	BIN=$(BIN) bash scripts/build_docs.sh

## Speed benchmarks (ratios against a baseline measured in the same run); results in benchmarks/results/.
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

## Notebooks clean, package in sync with the notebooks, every notebook's cells, then pytest.
test: $(STAMP)
	bash scripts/check_sync.sh
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest -q tests

clean-venv:
	rm -rf $(VENV)
