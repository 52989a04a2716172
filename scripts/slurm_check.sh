#!/usr/bin/env bash
# The data stage on a real Slurm: a single-node cluster on this machine (Debian's slurm-wlm and munge), the tiny
# corpus built through datatrove's SlurmPipelineExecutor (one job array per stage, each depending on the one before,
# the manifest as the last dependent job), compared with a local build of the same mixture, then everything stopped.
# Needs root (apt-get, the daemons). Not part of `make test`; run with `make slurm-check`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-.venv/bin}
MAX_FILES=${MAX_FILES:-30}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
echo "slurm: $(dpkg-query -W -f '${Version}' slurm-wlm)  munge: $(dpkg-query -W -f '${Version}' munge)"

D=$(mktemp -d /tmp/slurmcheck.XXXXXX)
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; done
    rm -rf "$D"
}
trap stop EXIT

# munge: a private key and socket for this check only
mkdir -p "$D/munge" && chmod 700 "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$D/munge/munge.key"
munged -F --force --key-file="$D/munge/munge.key" --socket="$D/munge/socket" --pid-file="$D/munge/pid" \
       --log-file="$D/munge/log" --seed-file="$D/munge/seed" >"$D/munge/out" 2>&1 &
PIDS+=($!)

HOST=$(hostname -s)
mkdir -p "$D/state" "$D/spool" "$D/log"
cat > "$D/slurm.conf" <<EOF
ClusterName=check
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/socket
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$D/slurm.conf
sleep 1
slurmctld -D -f "$SLURM_CONF" >"$D/log/slurmctld.out" 2>&1 & PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$D/log/slurmd.out" 2>&1 & PIDS+=($!)
for _ in $(seq 60); do sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)' && break; sleep 1; done
sinfo

# the check itself: Slurm build (waits for the jobs) and local build, compared
rc=0
"$BIN/python" - "$D" "$MAX_FILES" "$ROOT" <<'PY' || rc=$?
import gzip, json, subprocess, sys, time
from pathlib import Path
from stablecode.data import MixtureConfig, build_corpus, mixture_preset, wait_for_slurm
d, max_files, root = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
def mix(**ex):
    m = mixture_preset('tiny', max_files=max_files, math_count=60).to_dict()
    m['executor'] = dict(m['executor'], tasks=2, **ex)
    return MixtureConfig.from_dict(m, 'slurm check')
t0 = time.time()
res = build_corpus(mix(kind='slurm', partition='check', time='00:30:00', mem_per_cpu_gb=1,
                       venv_path=str(root / '.venv' / 'bin' / 'activate')), d / 'slurm', wait=False)
print('submitted jobs by stage:', res['job_ids'], flush=True)
print(subprocess.run(['squeue', '-o', '%.6i %.16j %.9T %.30E'], capture_output=True, text=True).stdout, flush=True)
wait_for_slurm(res['job_ids'].values(), timeout=1200)
man = json.loads((d / 'slurm' / 'corpus' / 'manifest.json').read_text())   # written by the last, dependent job
ts = time.time() - t0
print(subprocess.run(['squeue', '-h'], capture_output=True, text=True).stdout or 'queue drained', flush=True)
t0 = time.time(); ref = build_corpus(mix(), d / 'local'); tl = time.time() - t0
shards = lambda o: {f.name: gzip.decompress(f.read_bytes()) for f in sorted((o / 'corpus').glob('*.jsonl.gz'))}
same = shards(d / 'slurm') == shards(d / 'local')
print(json.dumps(dict(slurm_manifest=str(d / 'slurm' / 'corpus' / 'manifest.json'), executor=man['config']['executor']['kind'],
                      docs_kept=man['totals']['docs_kept'], local_docs_kept=ref['totals']['docs_kept'],
                      content_sha256=man['content_sha256'], local_content_sha256=ref['content_sha256'],
                      shards_identical=same, slurm_seconds=round(ts, 1), local_seconds=round(tl, 1)), indent=1))
sys.exit(0 if same and man['content_sha256'] == ref['content_sha256'] else 1)
PY
for _ in $(seq 120); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done   # datatrove's merge_stats jobs
[ $rc = 0 ] || tail -n 30 "$D"/log/*.log "$D"/slurm/work/logs/*/slurm_logs/*.out 2>/dev/null || true
echo "slurm check: $([ $rc = 0 ] && echo PASSED || echo FAILED)"
exit $rc
