#!/usr/bin/env bash
# Build the report site into docs/_build/html from nbs/ and the latest tiny run (papermill_runs/tiny-cpu/), with
# Sphinx + MyST-NB, offline, warnings as errors. Notebooks are rendered as they are (never executed here).
# Usage: scripts/build_docs.sh [extra sphinx-build options]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/python" docs/prepare.py
rm -rf docs/_build/html docs/_build/doctrees
"$BIN/sphinx-build" -b html -c docs -W --keep-going -q -d docs/_build/doctrees "$@" docs/_build/src docs/_build/html
echo "docs built: docs/_build/html/index.html"
