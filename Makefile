# `make test` and `make run` bootstrap .venv themselves from nothing, with the exact versions of the lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU machines carry this torch build as a local wheel; pip takes it from there. Override for a CUDA build.
TORCH ?= torch==2.13.0
# llama-cpp-python compiles llama.cpp from its sdist (5 to 12 min on 2 cores; pip's wheel cache keeps the build, so
# a changed LLAMA_CMAKE_ARGS needs `pip cache remove llama_cpp_python`). GGML_NATIVE=OFF: a portable build, not one tied
# to this CPU's instruction set. LLAVA_BUILD=OFF: no multimodal library (libmtmd, which llama_cpp imports only for its
# vision chat handlers; nothing here uses them), about a fifth of the compile.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
# The lock: pip constraints with the exact version of every dependency (scripts/lock.sh writes it). Empty = newest allowed.
LOCK ?= constraints.txt
PIP = $(BIN)/pip install -q --disable-pip-version-check $(if $(LOCK),-c $(LOCK))

.PHONY: install test run quickstart docs bench lock test-latest clean-venv slurm-check

# System tools the tests use: bubblewrap (the execution sandbox's namespaces), Chromium (the docs check), PostgreSQL
# (the SQL task's server: its tests start a throwaway cluster) and python3-venv (the sandbox suites' unprivileged run).
SYSTEM_PKGS ?= bubblewrap chromium chromium-driver g++ nodejs default-jdk-headless libjavatuples-java php-cli rustc golang ruby ruby-test-unit lua5.4 perl libtest-deep-perl postgresql python3-venv

$(STAMP): pyproject.toml $(LOCK)
	bash scripts/system_deps.sh $(SYSTEM_PKGS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	bash scripts/llama_cpp_sdist.sh $(VENV) $(LOCK)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) -e ".[dev,quantize]"
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

## Notebooks clean, package in sync with the notebooks, every notebook's cells, pytest, then the sandbox suites again
## as an ordinary user (when run as root: CI).
test: $(STAMP)
	BIN=$(BIN) bash scripts/check_sync.sh
	$(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest -q tests
	bash scripts/unprivileged_tests.sh

## Re-resolve the newest versions pyproject.toml allows and write them to constraints.txt (then test and commit it).
lock:
	PYTHON=$(PYTHON) TORCH="$(TORCH)" bash scripts/lock.sh

## Early warning: the test suite on the newest versions pyproject.toml allows, in .venv-latest (the lock is not used).
test-latest:
	rm -rf .venv-latest
	$(MAKE) test VENV=.venv-latest LOCK=

## The data stage on a real single-node Slurm (Debian's slurm-wlm + munge; needs root): corpus jobs vs a local build.
slurm-check: $(STAMP)
	BIN=$(BIN) bash scripts/slurm_check.sh

clean-venv:
	rm -rf $(VENV)
