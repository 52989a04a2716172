"""Stage the report's source tree in docs/_build/src (called by scripts/build_docs.sh before sphinx-build).

- chapters: every nbs/NN_*.ipynb in order; where the latest tiny run executed a chapter
  (papermill_runs/tiny-cpu/<same name>.ipynb), that executed notebook is used instead, so its outputs and figures show;
- nbdev directive lines (`#| export`, ...) are removed and directive-only cells (`#| default_exp`, `#| hide`) dropped;
- the front page is nbs/index.ipynb with the latest tiny run's results table (next to the report's numbers) and the
  site's table of contents appended;
- results.md: the tiny run's manifest (stages, status, timings, config hashes, artifacts) and its loss curve;
- benchmarks.md: every recorded benchmark summary (benchmarks/results/*.md), each a ratio against a baseline
  measured in the same run, with its machine;
- api/: one autodoc page per module of the exported `stablecode` package;
- references.md: the bibliography (docs/references.bib).
Nothing is executed: the site shows the notebooks as they are.
"""
from __future__ import annotations
import hashlib, json, os, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT/'docs'
SRC = Path(os.environ.get('DOCS_SRC', DOCS/'_build'/'src'))
RUN = Path(os.environ.get('DOCS_RUN', ROOT/'papermill_runs'/'tiny-cpu'))


def _src(c) -> str: return ''.join(c['source']) if isinstance(c['source'], list) else c['source']


def clean_notebook(nb: dict) -> dict:
    "Drop nbdev directive-only cells and directive lines; keep everything else (outputs included)."
    cells = []
    for c in nb['cells']:
        if c['cell_type'] == 'code':
            lines = _src(c).splitlines()
            directives = [l for l in lines if re.match(r'\s*#\|', l)]
            if any(re.match(r'\s*#\|\s*hide\b', l) for l in directives): continue
            rest = [l for l in lines if not re.match(r'\s*#\|', l)]
            if directives and not any(l.strip() for l in rest): continue
            c = {**c, 'source': '\n'.join(rest).strip('\n')}
        cells.append(c)
    return {**nb, 'cells': cells}


def chapters() -> list[Path]:
    return sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if p.name != 'index.ipynb' and re.match(r'\d', p.name))


def _title(nb: dict, default: str) -> str:
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+)$', _src(c), re.M)
            if m: return m.group(1).strip()
    return default


def write_results(run_dir: Path) -> str:
    "The results page of the latest tiny run; returns its Markdown."
    mf = run_dir/'manifest.json'
    if not mf.exists():
        return ("# Results of the tiny run\n\nNo executed tiny run was found (`papermill_runs/tiny-cpu/manifest.json`). "
                "Run `make run` (or `stablecode run papermill_runs/tiny-cpu.yaml`) and rebuild the docs; the chapters "
                "then show the executed notebooks with their outputs.\n")
    m = json.loads(mf.read_text())
    git = m.get('git') or {}
    out = ["# Results of the tiny run", "",
           f"The executed notebooks of the chapters come from the run `{m.get('run')}` "
           f"(status **{m.get('status')}**, finished {m.get('finished') or 'not yet'}, git "
           f"`{(git.get('sha') or 'unknown')[:12]}`{' with uncommitted changes' if git.get('dirty') else ''}). "
           "The run manifest records, per stage, the config hash that decides whether a re-run skips it, the "
           "timings and the artifacts.", "",
           "| stage | status | seconds | config hash | artifacts | notebook since the run |", "|---|---|---:|---|---:|---|"]
    for name, st in (m.get('stages') or {}).items():
        secs = st.get('seconds')
        nb = Path(st.get('notebook') or '')
        now = hashlib.sha256(nb.read_bytes()).hexdigest() if nb.is_file() else None
        changed = 'unchanged' if now == st.get('notebook_sha256') else ('**edited** (re-run to refresh)' if now else 'missing')
        out.append(f"| {name} | {st.get('status')} | {'' if secs is None else f'{secs:.1f}'} | "
                   f"`{st.get('config_hash')}` | {len(st.get('artifacts') or [])} | {changed} |")
    pk = m.get('packages') or {}
    out += ["", "Package versions: " + ', '.join(f"{k} {v}" for k, v in pk.items() if v) + "."]
    fig = loss_figure(run_dir, m)
    if fig:
        out += ["", "## Training loss", "", f"```{{figure}} {fig}", ":alt: training loss of the tiny run", "",
                "Training loss per step of the tiny run's training stages (from their `metrics*.jsonl` artifacts).", "```"]
    arts = m.get('artifacts') or []
    if arts:
        out += ["", "## Artifacts", "", "| file |", "|---|"] + [f"| `{a}` |" for a in arts[:200]]
    return '\n'.join(out) + '\n'


def _load(p: Path):
    try: return json.loads(p.read_text())
    except (OSError, ValueError): return None


def results_table(run_dir: Path) -> str:
    "The front page's table: the latest tiny run's figures next to the report's (Markdown; empty without a run)."
    data, pre = _load(run_dir/'data'/'manifest.json'), _load(run_dir/'pretrain'/'summary.json')
    ev, evl = _load(run_dir/'pretrain'/'evidence.json'), _load(run_dir/'eval'/'results.json')
    if not any((data, pre, ev, evl)): return ''
    rows = []
    if data:
        tps = data.get('tokens_per_source') or {}
        rows.append(("training tokens (data stage)", f"{sum(tps.values()):,} ({', '.join(f'{k} {v:,}' for k, v in tps.items())})",
                     "about 1.3T (starcoderdata, issues, commits, web, math)"))
    for st in (pre or {}).get('stages', []):
        rows.append((f"stage `{st['stage']}` ({st['seq_len']} tokens/seq, {st['steps']} steps): loss first → last",
                     f"{st['first_loss']:.2f} → {st['final_loss']:.2f}",
                     "not published" + (" (16,384 tokens, rope base 1,000,000)" if 'long' in st['stage'] else " (4,096 tokens, FIM)")))
    if ev and 'unigram_entropy' in ev:
        rows.append(("unigram entropy of the training tokens (nats)", f"{ev['unigram_entropy']:.2f}", "—"))
    if ev and 'long_context' in ev:
        lc = ev['long_context']
        g = ', '.join(f"after `{k}` {v:+.2f}" for k, v in lc['gap_beyond_minus_within'].items())
        rows.append((f"loss beyond minus within the first stage's {lc['first_stage_len']} positions", g, "—"))
    if ev and 'fim' in ev:
        for k, label in (('psm_exact', 'PSM, exact to end of text'), ('spm_exact', 'SPM, exact to end of text'),
                         ('spm_first_line', 'SPM, first line')):
            rates = sorted(ev['fim'], key=float, reverse=True)
            rows.append((f"synthetic FIM infilling ({label}): FIM rate {' / '.join(rates)}",
                         ' / '.join(f"{ev['fim'][r][k]:.0%}" for r in rates), "—"))
    he = ((evl or {}).get('tasks') or {}).get('humaneval') or {}
    if he:
        p1 = (he.get('pass_at') or {}).get('pass@1')
        rows.append(("HumanEval pass@1", f"{100 * p1:.1f}%" if p1 is not None else "n/a", "30.7% (T = 0.2, n = 50)"))
    out = ["## Results of the latest tiny run", "",
           f"From `{run_dir.name}` (a 1.9M-parameter model trained for minutes on two CPU cores) next to the report's "
           "3B model; the tiny model is not expected to approach the report's scores, and 0% on HumanEval is its honest "
           "result. The [results page](results.md) has the run's stages and timings.", "",
           "| measure | tiny run | Stable Code 3B (report) |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return '\n'.join(out) + '\n'


def loss_figure(run_dir: Path, m: dict) -> str | None:
    "Plot loss against step from every metrics JSONL artifact that has them; the figure's path, or None."
    series = {}
    for a in m.get('artifacts') or []:
        p = run_dir/a
        if not (p.name.startswith('metrics') and p.suffix == '.jsonl' and p.exists()): continue
        pts = []
        for line in p.read_text().splitlines():
            try: r = json.loads(line)
            except ValueError: continue
            if isinstance(r, dict) and isinstance(r.get('loss'), (int, float)) and isinstance(r.get('step'), (int, float)):
                pts.append((r['step'], r['loss']))
        if pts: series[a] = pts
    if not series: return None
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, pts in series.items(): ax.plot(*zip(*pts), label=name)
    ax.set_xlabel('step'); ax.set_ylabel('loss'); ax.grid(alpha=.3); ax.legend(fontsize=8)
    fig.tight_layout(); (SRC/'_figures').mkdir(parents=True, exist_ok=True)
    fig.savefig(SRC/'_figures'/'tiny-loss.png'); plt.close(fig)
    return '_figures/tiny-loss.png'


def write_benchmarks() -> str:
    "The benchmarks page: the recorded summaries in benchmarks/results/, demoted one heading level."
    parts = ["# Benchmarks", "",
             "Every speed claim of this report is a script in `benchmarks/` that measures a ratio against a baseline in "
             "the same run, on the machine it names (machines here are shared and noisy, so absolute figures vary). "
             "`make bench` re-runs them; the summaries below are the latest recorded results.", ""]
    found = sorted((ROOT/'benchmarks'/'results').glob('*.md'))
    for f in found:
        parts += [re.sub(r'^(#+)', r'#\1', l) for l in f.read_text().splitlines()] + [""]
    if not found: parts.append("No benchmark has been recorded yet.")
    return '\n'.join(parts) + '\n'


def api_pages() -> list[str]:
    "One page per exported module of `stablecode`, from the package's nbdev index."
    sys.path.insert(0, str(ROOT))
    from stablecode._modidx import d
    mods = sorted({m for m in d['syms']} - {'stablecode._modidx'})
    (SRC/'api').mkdir(parents=True, exist_ok=True)
    for mod in mods:
        title = f"``{mod}``"
        (SRC/'api'/f"{mod}.rst").write_text(f"{title}\n{'=' * len(title)}\n\n.. automodule:: {mod}\n   :members:\n")
    body = ["API reference", "=============", "",
            "The modules of the ``stablecode`` package, exported from the chapters' ``#| export`` cells.", "",
            ".. autosummary::", ""] + [f"   {m}" for m in mods] + ["", ".. toctree::", "   :maxdepth: 1", ""] + \
           [f"   {m}" for m in mods]
    (SRC/'api'/'index.rst').write_text('\n'.join(body) + '\n')
    return mods


def main():
    if SRC.exists(): shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    shutil.copy(DOCS/'references.bib', SRC/'references.bib')
    used_run = []
    names = []
    for nb_path in chapters():
        ex = RUN/nb_path.name
        src = ex if ex.exists() else nb_path
        if ex.exists(): used_run.append(nb_path.name)
        nb = clean_notebook(json.loads(src.read_text()))
        (SRC/nb_path.name).write_text(json.dumps(nb, indent=1))
        names.append(nb_path.stem)
    (SRC/'results.md').write_text(write_results(RUN))
    (SRC/'benchmarks.md').write_text(write_benchmarks())
    (SRC/'references.md').write_text("# References\n\nThe papers and reports this project reproduces or builds on.\n\n"
                                     "```{bibliography}\n:all:\n```\n")
    api_pages()
    index = clean_notebook(json.loads((ROOT/'nbs'/'index.ipynb').read_text()))
    toc = ("```{toctree}\n:maxdepth: 1\n:caption: Chapters\n\n" + '\n'.join(names) + "\n```\n\n"
           "```{toctree}\n:maxdepth: 1\n:caption: Run and reference\n\nresults\nbenchmarks\napi/index\nreferences\n```")
    table = results_table(RUN)
    if table: index['cells'].append({'cell_type': 'markdown', 'id': 'docs-results', 'metadata': {}, 'source': table})
    index['cells'].append({'cell_type': 'markdown', 'id': 'docs-toc', 'metadata': {}, 'source': toc})
    (SRC/'index.ipynb').write_text(json.dumps(index, indent=1))
    print(f"docs source staged in {SRC}: {len(names)} chapters"
          + (f", executed notebooks from {RUN} for {', '.join(used_run)}" if used_run else ', no executed tiny run found'))


if __name__ == '__main__':
    main()
