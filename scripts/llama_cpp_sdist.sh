#!/usr/bin/env bash
# llama.cpp's own GGUF converter (convert_hf_to_gguf.py, its `conversion/` package and gguf-py) ships only in the
# llama-cpp-python *sdist*, not in a wheel. Keep that sdist, at the version the lock names, unpacked in
# $VENV/src/llama-cpp-python/ where `stablecode.quantize` looks for it (or set STABLECODE_LLAMA_CPP to a llama.cpp checkout).
# The same download is what pip then builds the package from (its HTTP cache serves it; its wheel cache keeps the build).
# Usage: scripts/llama_cpp_sdist.sh VENV [CONSTRAINTS]
set -euo pipefail
VENV=$1; LOCK=${2:-}
spec=llama-cpp-python
if [ -n "$LOCK" ] && v=$(grep -iE '^llama[-_]cpp[-_]python==' "$LOCK" | cut -d= -f3) && [ -n "$v" ]; then spec="llama-cpp-python==$v"; fi
dest="$VENV/src/llama-cpp-python"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: "$spec" -d "$tmp" 2>&1 | { grep -v '^WARNING: Location' || true; }
rm -rf "$dest"; mkdir -p "$dest"
tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$dest" --strip-components=1
test -f "$dest/vendor/llama.cpp/convert_hf_to_gguf.py" || { echo "ERROR: no convert_hf_to_gguf.py in the $spec sdist" >&2; exit 1; }
echo "llama.cpp converter: $dest/vendor/llama.cpp/convert_hf_to_gguf.py ($spec)"
