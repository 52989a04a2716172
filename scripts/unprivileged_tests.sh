#!/usr/bin/env bash
# The sandbox tests and the abuse suite again, as an ordinary user. CI runs as root, where the sandbox drops to
# `nobody` and the harness's own files and processes belong to another uid; most researchers run as themselves, where
# the candidate program has the harness's uid. `make test` calls this after the main pytest run.
#
# As root: creates the user `stablecode-test` (once), copies the package and the tests to a folder it owns (the
# checkout may sit under a private home; theirs is outside /tmp, which the sandbox replaces), installs pytest and tqdm from the lock into its own virtualenv with the
# system's python3, delegates a cgroup to it (memory + pids, as systemd delegates one to a user's session) and runs the
# sandbox suites as that user. As any other user: nothing to add (the main run already was unprivileged).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then echo "unprivileged sandbox suite: already run as uid $(id -u) by the main pytest run"; exit 0; fi
U=${SANDBOX_TEST_USER:-stablecode-test}
id -u "$U" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$U"
W=$(runuser -u "$U" -- mktemp -d "/home/$U/stablecode-unprivileged-XXXXXX")   # outside /tmp: the sandbox must see it read-only
CG=()
cleanup() {
  for d in "${CG[@]}"; do [ -d "$d" ] && { cat "$d/cgroup.procs" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; rmdir "$d" 2>/dev/null || true; }; done
  rm -rf "$W"
}
trap cleanup EXIT
cp -r "$ROOT/stablecode" "$ROOT/tests" "$ROOT/constraints.txt" "$W/"
chown -R "$U:" "$W"
runuser -u "$U" -- /usr/bin/python3 -m venv "$W/venv"
runuser -u "$U" -- "$W/venv/bin/pip" install -q --disable-pip-version-check -c "$W/constraints.txt" pytest tqdm

# A cgroup of the user's own: on v1, a child of our memory and pids cgroups; on v2, a child of ours with both
# controllers enabled. The sandbox makes its per-run cgroups inside it.
join=""
while IFS=: read -r _ ctl path; do
  case "$ctl" in
    memory|pids) d="/sys/fs/cgroup/$ctl$path/stablecode-test-$$" ;;
    "") [ -f /sys/fs/cgroup/cgroup.controllers ] && d="/sys/fs/cgroup$path/stablecode-test-$$" || continue ;;
    *) continue ;;
  esac
  mkdir "$d" 2>/dev/null && { chown -R "$U:" "$d"; CG+=("$d"); join="$join echo \$\$ > $d/cgroup.procs;"; } || true
done < /proc/self/cgroup
[ ${#CG[@]} -gt 0 ] && echo "delegated cgroup(s) to $U: ${CG[*]}" || echo "NOTICE: no cgroup could be delegated to $U; the tree limits fall back to rlimits"

echo "sandbox suites as $U (uid $(id -u "$U")):"
cd "$W"
bash -c "$join exec runuser -u '$U' -- env CI='${CI:-}' HOME='/home/$U' PYTHONPATH='$W' '$W/venv/bin/python' -m pytest -q -p no:cacheprovider tests/test_sandbox.py tests/test_sandbox_abuse.py"
