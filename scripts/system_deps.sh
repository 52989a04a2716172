#!/usr/bin/env bash
# Install the Debian packages the project's tests use, when missing. Needs root (or sudo) and apt; where neither is
# available it says so and carries on: the tests that need a missing tool report it as skipped (and fail under CI=true).
set -uo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
if ! command -v apt-get >/dev/null || { [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; }; then
  echo "NOTICE: cannot install ${missing[*]} here (no apt-get or no root); tests needing them will be skipped." >&2
  [ "${CI:-}" = "true" ] && { echo "ERROR: under CI=true every system package is required" >&2; exit 1; }
  exit 0
fi
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "NOTICE: apt-get could not install ${missing[*]}" >&2; [ "${CI:-}" = "true" ] && exit 1; exit 0; }
