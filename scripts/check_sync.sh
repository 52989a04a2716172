#!/usr/bin/env bash
# Fails when `nbdev-clean` or `nbdev-export` would change anything: notebooks must be clean and the
# `stablecode` package must be exactly what the notebooks export (new modules included).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
snap() { find nbs stablecode -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' \
           -not -path '*/__pycache__/*' -print0 2>/dev/null | sort -z | xargs -0 sha256sum; }
before=$(snap)
"$BIN/nbdev-clean"
after_clean=$(snap)
if [ "$before" != "$after_clean" ]; then
  echo "FAIL: nbdev-clean changed these notebooks (run nbdev-clean and commit):" >&2
  diff <(echo "$before") <(echo "$after_clean") | grep '^[<>]' | awk '{print "   ", $3}' | sort -u >&2
  exit 1
fi
# nbdev-export rewrites pyproject.toml with the same content: keep its time, or the next `make` re-installs everything
keep=$(mktemp); cp -p pyproject.toml "$keep"
"$BIN/nbdev-export"
if cmp -s "$keep" pyproject.toml; then touch -r "$keep" pyproject.toml; fi
rm -f "$keep"
after_export=$(snap)
if [ "$before" != "$after_export" ]; then
  echo "FAIL: the stablecode package is out of sync with nbs/ (run nbdev-export and commit):" >&2
  diff <(echo "$before") <(echo "$after_export") | grep '^[<>]' | awk '{print "   ", $3}' | sort -u >&2
  exit 1
fi
echo "notebooks clean; stablecode/ in sync with nbs/"
"$BIN/python" scripts/make_readme.py --check
