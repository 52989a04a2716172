"""Decontamination's substring check at scale: `stablecode.data.SubstringIndex` (one Aho-Corasick automaton,
pyahocorasick) against the plain scan it replaces (`first_substring_scan`: each benchmark text searched for in turn),
on the same 100k+ seeds and the same benchmark texts, in one run, rounds alternating, each side in a fresh interpreter
that imports only what it needs.

The seeds are Self-OSS-Instruct-shaped: every documented top-level function of the standard library (the self-alignment
chapter's `stdlib_candidates`), copied `--copies` times, each copy with its own trailing comment so that every seed is
distinct; one seed in `--plant` holds a HumanEval problem's description in its docstring, so matches occur. The
benchmark texts are the self-alignment check's (`Contamination()`: the default decontamination config's tasks,
HumanEval's descriptions and solutions and the held-out exercises, texts of 40+ characters). Each side normalises the
whitespace of each seed and finds its first contained text; the index side's time includes building the automaton.
The answers (the first text of every seed) must be identical. The ratio is the median of per-round ratios (plain /
index).

    python benchmarks/bench_decontam.py [--rounds 5] [--copies 62] [--plant 1000]
Writes benchmarks/results/bench_decontam.json and .md.
"""
import argparse, hashlib, json, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import alternate, machine as _machine, machine_text, md_table


def side(kind: str, data: Path) -> dict:
    "One side, in this (fresh) interpreter: read the inputs, then time the checks."
    if kind == 'plain': from stablecode.data import first_substring_scan
    else: from stablecode.data import SubstringIndex
    seeds = (data / 'seeds.txt').read_text().split('\0')
    pats = json.loads((data / 'patterns.json').read_text())
    t = time.perf_counter()
    if kind == 'plain': firsts = [first_substring_scan(pats, ' '.join(s.split())) for s in seeds]
    else:
        ix = SubstringIndex(pats)
        build = time.perf_counter() - t
        firsts = [ix.first(' '.join(s.split())) for s in seeds]
    secs = time.perf_counter() - t
    hits = [[i, k] for i, k in enumerate(firsts) if k is not None]
    return dict(seconds=secs, build_s=build if kind == 'index' else 0.0, hits=len(hits),
                digest=hashlib.sha256(json.dumps(firsts).encode()).hexdigest()[:16])


def run_side(kind: str, data: Path):
    "A side in a fresh interpreter; its result is the last line of its output."
    out = subprocess.run([sys.executable, __file__, '--side', kind, '--data', str(data)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r['seconds'], r


def make_inputs(data: Path, copies: int, plant: int) -> dict:
    "Seeds (stdlib functions x copies, some with a HumanEval description planted) and the benchmark texts."
    from stablecode.benchmarks import load_humaneval
    from stablecode.self_align import Contamination, _description, stdlib_candidates
    funcs = [c['source'] for c in stdlib_candidates(None)]
    descs = [_description(p.prompt) for p in load_humaneval()]
    seeds = []
    for j in range(copies):
        for i, f in enumerate(funcs):
            n = len(seeds)
            s = f + f'# copy {j}\n'
            if n % plant == plant - 1: s = s.replace('"""', '"""' + descs[n % len(descs)] + '\n', 1)
            seeds.append(s)
    pats = list(Contamination().texts)
    (data / 'seeds.txt').write_text('\0'.join(seeds))
    (data / 'patterns.json').write_text(json.dumps(pats))
    return dict(functions=len(funcs), seeds=len(seeds), planted=sum(i % plant == plant - 1 for i in range(len(seeds))),
                patterns=len(pats), seed_chars_mean=round(sum(map(len, seeds)) / len(seeds)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--copies', type=int, default=62)
    ap.add_argument('--plant', type=int, default=1000)
    ap.add_argument('--side', choices=['plain', 'index'])
    ap.add_argument('--data')
    a = ap.parse_args()
    if a.side: print(json.dumps(side(a.side, Path(a.data)))); return
    data = Path(tempfile.mkdtemp(prefix='bench-decontam-'))
    from importlib.metadata import version
    info = dict(machine=_machine(), pyahocorasick=version('pyahocorasick'), **make_inputs(data, a.copies, a.plant))
    print(info, flush=True)
    rounds = []
    for got in alternate(a.rounds, dict(index=lambda: run_side('index', data), plain=lambda: run_side('plain', data))):
        (t_i, r_i), (t_p, r_p) = got['index'], got['plain']
        rounds.append(dict(index_s=round(t_i, 3), index_build_s=round(r_i['build_s'], 3), plain_s=round(t_p, 3),
                           ratio=round(t_p / t_i, 2), hits=r_i['hits'], identical=r_i['digest'] == r_p['digest'] and r_i['hits'] == r_p['hits']))
    ratio = statistics.median(r['ratio'] for r in rounds)
    info.update(rounds=rounds, ratio_plain_over_index=ratio, identical=all(r['identical'] for r in rounds))
    out = ROOT / 'benchmarks' / 'results'; out.mkdir(parents=True, exist_ok=True)
    (out / 'bench_decontam.json').write_text(json.dumps(info, indent=1))
    md = ['# Decontamination substring check: Aho-Corasick vs the plain scan', '',
          f"{info['seeds']:,} seeds ({info['functions']:,} standard-library functions x {a.copies} distinct copies, mean "
          f"{info['seed_chars_mean']} characters; {info['planted']} hold a HumanEval description) against {info['patterns']} "
          f"benchmark texts (HumanEval descriptions and solutions, held-out exercises). Each side in a fresh interpreter. "
          f"{machine_text(info['machine'])} pyahocorasick {info['pyahocorasick']}.", '']
    md += md_table(['round', 'Aho-Corasick (s)', 'of which building (s)', 'plain scan (s)', 'ratio', 'seeds matched', 'identical answers'],
                   [[i, r['index_s'], r['index_build_s'], r['plain_s'], r['ratio'], r['hits'], r['identical']] for i, r in enumerate(rounds)])
    md += ['', f"**Ratio (plain scan time / Aho-Corasick, median of {a.rounds} alternating rounds): {ratio:.1f}x.** "
           f"Identical answers in every round: {info['identical']}.", '',
           "Fewer seeds match than hold a planted description: descriptions shorter than 40 characters are not among "
           "the texts checked (too generic to mean contamination).", '',
           "The plain scan's time grows with the number of texts times the seeds; the automaton's with the seeds' length "
           "(one pass per seed, whatever the number of texts), so the ratio grows with the benchmark set (at full scale: "
           "HumanEval+, MBPP, MBPP+, MultiPL-E; millions of seeds).", '']
    (out / 'bench_decontam.md').write_text('\n'.join(md))
    print('\n'.join(md))


if __name__ == '__main__':
    main()
