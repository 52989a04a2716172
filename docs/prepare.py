"""Stage the report's source tree in docs/_build/src (called by scripts/build_docs.sh before sphinx-build).

- chapters: every nbs/NN_*.ipynb in order; where the latest tiny run executed a chapter
  (papermill_runs/tiny-cpu/<same name>.ipynb), that executed notebook is used instead, so its outputs and figures show;
- nbdev directive lines (`#| export`, ...) are removed and directive-only cells (`#| default_exp`, `#| hide`) dropped;
- implementation cells are folded (MyST-NB's `hide-input` tag: a "show code" toggle, outputs stay visible): every
  `#| export` cell, and long or definition-only cells; examples, prose and figures stay in the reading flow;
- each chapter opens with a "What this chapter shows" box: the run stage it is (found through the run manifest),
  its figures read from the stage's summaries (never typed in), or a plain statement that the run has none, and
  links to the executed notebook from the run and to the source notebook (both offered for download);
- every figure a stage saves (`*.png`, `*.svg`, ... among its artifacts) and every Markdown table it writes at the
  top of its directory is shown in its chapter, after the cell of the run section that names it, unless the
  notebook already shows it;
- the front page is nbs/index.ipynb with the latest tiny run's results table (next to the report's numbers) and the
  site's table of contents appended;
- results.md: the tiny run's manifest (date, git sha, package versions, stages, timings, config hashes), the
  comparison with the report, and every stage's result tables, JSON summaries and figures, whatever stages the run has;
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


_DIRECTIVE = re.compile(r'\s*#\|')
_EXPORT = re.compile(r'\s*#\|\s*export[is]?\b')
_KEEP_VISIBLE = {'parameters', 'injected-parameters'}
FOLD_LINES = 25     # a code cell this long is implementation, not an example: folded


def fold_reason(source: str, directives: list[str], tags: list[str]) -> str | None:
    "Why a code cell's source is folded behind a toggle (None: shown). Outputs are never folded."
    if _KEEP_VISIBLE & set(tags): return None
    body = [l for l in source.splitlines() if l.strip() and not l.lstrip().startswith('#')]
    if any(_EXPORT.match(d) for d in directives): return 'export'
    if len(body) >= FOLD_LINES: return 'long'
    top = [l for l in body if not l[:1].isspace()]
    if top and all(re.match(r'(def |class |async def |@|\)|\]|\})', l) for l in top) and len(body) >= 8:
        return 'definitions'          # a helper defined for the chapter, not an example
    return None


def _prompt(source: str) -> str:
    "The toggle's label: the names the folded cell defines and its length."
    names = re.findall(r'^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)', source, re.M)
    names += [n for n in re.findall(r'^([A-Z_][A-Z0-9_]{2,})\s*(?::[^=]*)?=', source, re.M) if n not in names]
    n = sum(1 for l in source.splitlines() if l.strip())
    what = ', '.join(names[:4]) + (f' and {len(names) - 4} more' if len(names) > 4 else '')
    return f"Show code: {what} ({n} lines)" if what else f"Show code ({n} lines)"


def clean_notebook(nb: dict, fold: bool = True) -> dict:
    """Drop nbdev directive-only cells and directive lines; keep everything else (outputs included).
    With `fold`, implementation cells get MyST-NB's `hide-input` tag (a "show code" toggle; outputs stay shown)."""
    cells = []
    for c in nb['cells']:
        if c['cell_type'] == 'code':
            lines = _src(c).splitlines()
            directives = [l for l in lines if _DIRECTIVE.match(l)]
            if any(re.match(r'\s*#\|\s*hide\b', l) for l in directives): continue
            rest = [l for l in lines if not _DIRECTIVE.match(l)]
            if directives and not any(l.strip() for l in rest): continue
            source = '\n'.join(rest).strip('\n')
            c = {**c, 'source': source}
            meta = dict(c.get('metadata') or {})
            tags = list(meta.get('tags') or [])
            if fold and 'hide-input' not in tags and fold_reason(source, directives, tags):
                meta['tags'] = tags + ['hide-input']
                meta['mystnb'] = {**(meta.get('mystnb') or {}), 'code_prompt_show': _prompt(source),
                                  'code_prompt_hide': 'Hide code'}
            c['metadata'] = meta
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


def _load(p: Path):
    try: return json.loads(p.read_text())
    except (OSError, ValueError): return None


# ---------------------------------------------------------------------------------------------------------------
# What a run's stage wrote, found through the run manifest (papermill_runs/<run>/manifest.json) and the stage's
# directory. Nothing here knows a stage by name except `comparison_rows`, which puts known figures beside the
# report's; every other stage (present or future) is shown through the files it writes.

FIGURE_SUFFIXES = {'.png', '.svg', '.jpg', '.jpeg', '.gif'}
NOT_SUMMARIES = {'stage.json', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json',
                 'special_tokens_map.json', 'trainer_state.json', 'vocab.json', 'added_tokens.json'}


def run_manifest(run_dir: Path) -> dict | None:
    m = _load(run_dir/'manifest.json')
    return m if isinstance(m, dict) else None


def stage_of_chapter(m: dict | None, chapter: str) -> tuple[str, dict] | None:
    "The run stage whose notebook is `chapter` (a file name such as 06_pretrain.ipynb), with its manifest entry."
    for name, st in ((m or {}).get('stages') or {}).items():
        if Path(st.get('notebook') or '').name == chapter: return name, st
    return None


def _artifacts(st: dict) -> list[str]:
    return [a['path'] if isinstance(a, dict) else str(a) for a in st.get('artifacts') or []]


def stage_figures(run_dir: Path, st: dict) -> list[str]:
    "The figures a stage saved (paths relative to the run directory), in the order it wrote them."
    return [a for a in _artifacts(st) if Path(a).suffix.lower() in FIGURE_SUFFIXES and (run_dir/a).is_file()]


def _top_level(run_dir: Path, name: str, st: dict, suffix: str) -> list[str]:
    "Files with `suffix` directly in the stage's directory (its summaries), from the manifest's artifacts."
    out = [a for a in _artifacts(st) if Path(a).parent == Path(name) and Path(a).suffix == suffix
           and Path(a).name not in NOT_SUMMARIES and (run_dir/a).is_file()]
    return sorted(out)


def stage_tables(run_dir: Path, name: str, st: dict) -> list[str]: return _top_level(run_dir, name, st, '.md')
def stage_summaries(run_dir: Path, name: str, st: dict) -> list[str]: return _top_level(run_dir, name, st, '.json')


def _fmt(v) -> str:
    if isinstance(v, bool): return 'yes' if v else 'no'
    if isinstance(v, int): return f"{v:,}"
    if isinstance(v, float): return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def scalars(obj, prefix: str = '', depth: int = 4) -> list[tuple[str, str]]:
    "The scalar leaves of a JSON summary as (key path, value); long lists (per-problem records) are left out."
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if re.search(r'(sha|hash|path|dir|file)', str(k), re.I): continue   # identifiers, not results
            out += scalars(v, f"{prefix} › {k}" if prefix else str(k), depth - 1) if depth else []
    elif isinstance(obj, list):
        if obj and len(obj) <= 8 and all(isinstance(x, (int, float, str, bool)) for x in obj):
            out.append((prefix, ', '.join(_fmt(x) for x in obj)))
        elif len(obj) <= 8 and depth:
            for i, x in enumerate(obj):
                key = x.get('name') or x.get('stage') or x.get('task') if isinstance(x, dict) else None
                out += scalars(x, f"{prefix} › {key if isinstance(key, str) else i}", depth - 1)
    elif isinstance(obj, (int, float, bool)) or (isinstance(obj, str) and 0 < len(obj) <= 60 and '\n' not in obj):
        out.append((prefix, _fmt(obj)))
    return out


def _cell(s: str) -> str: return str(s).replace('|', '\\|').replace('\n', ' ')


def comparison_rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    "(stage, measure, tiny run, Stable Code 3B report) for the figures the report also states, from the artifacts."
    data, pre = _load(run_dir/'data'/'manifest.json'), _load(run_dir/'pretrain'/'summary.json')
    ev, evl = _load(run_dir/'evidence'/'evidence.json'), _load(run_dir/'eval'/'results.json')
    rows = []
    for name, st in ((data or {}).get('streams') or {}).items():
        tps = st.get('tokens_per_source') or {}
        rows.append(('data', f"tokens in the `{name}` stream ({st['seq_len']} tokens/seq)",
                     f"{sum(tps.values()):,} ({', '.join(f'{k} {v:,}' for k, v in tps.items())})",
                     "about 1.3T (starcoderdata, issues, commits, web, math)"))
    for st in (pre or {}).get('stages', []):
        rows.append(('pretrain', f"stage `{st['stage']}` ({st['seq_len']} tokens/seq, {st['steps']} steps): loss first → last",
                     f"{st['first_loss']:.2f} → {st['final_loss']:.2f}",
                     "not published" + (" (16,384 tokens, rope base 1,000,000)" if 'long' in st['stage'] else " (4,096 tokens, FIM)")))
    if ev and 'unigram_entropy' in ev:
        rows.append(('evidence', "unigram entropy of the training tokens (nats)", f"{ev['unigram_entropy']:.2f}", "—"))
    if ev and 'long_context' in ev:
        lc = ev['long_context']
        g = ', '.join(f"after `{k}` {v:+.2f}" for k, v in lc['gap_beyond_minus_within'].items())
        rows.append(('evidence', f"loss beyond minus within the first stage's {lc['first_stage_len']} positions", g, "—"))
    if ev and 'fim' in ev:
        for k, label in (('psm_exact', 'PSM, exact to end of text'), ('spm_exact', 'SPM, exact to end of text'),
                         ('spm_first_line', 'SPM, first line')):
            rates = sorted(ev['fim'], key=float, reverse=True)
            rows.append(('evidence', f"synthetic FIM infilling ({label}): FIM rate {' / '.join(rates)}",
                         ' / '.join(f"{ev['fim'][r][k]:.0%}" for r in rates), "—"))
    he = ((evl or {}).get('tasks') or {}).get('humaneval') or {}
    if he:
        p1 = (he.get('pass_at') or {}).get('pass@1')
        rows.append(('eval', "HumanEval pass@1", f"{100 * p1:.1f}%" if p1 is not None else "n/a", "30.7% (T = 0.2, n = 50)"))
    return rows + instruct_rows(run_dir) + quantize_rows(run_dir) + alignment_rows(run_dir)


def _pct(x) -> str: return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"


def _ci(heldout: dict, model: str) -> str:
    "A model's pass@1 and its 95% interval from a stage's held-out evidence (`eval.heldout_evidence`'s shape)."
    m = heldout['models'].get(model)
    return f"{_pct(m['pass@1'])} [{_pct(m['low'])}, {_pct(m['high'])}]" if m else "n/a"


def instruct_rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    "The Instruct half's figures (SFT, DPO, the final model's evaluation) next to the report's."
    sft, dpo = _load(run_dir/'sft'/'evidence.json'), _load(run_dir/'dpo'/'evidence.json')
    ins = ((_load(run_dir/'eval'/'instruct'/'results.json') or {}).get('tasks') or {})
    rows = []
    h = (sft or {}).get('heldout') or {}
    if h:
        c = sft.get('closes_turn') or {}
        rows.append(('sft', "greedy answers closing their turn with `<|im_end|>`: base → SFT",
                     f"{_pct(c.get('base'))} → {_pct(c.get('sft'))}", "—"))
        rows.append(('sft', f"held-out `exercises` pass@1 ({h['problems']} problems, 95% interval): base → SFT",
                     f"{_ci(h, 'base')} → {_ci(h, 'sft')}", "MultiPL-E average .44 after SFT"))
    if dpo:
        h, rw = dpo.get('heldout') or {}, dpo.get('rewards') or {}
        if h: rows.append(('dpo', f"held-out `exercises` pass@1 ({h['problems']} problems, 95% interval): SFT → DPO",
                           f"{_ci(h, 'sft')} → {_ci(h, 'dpo')}", "MultiPL-E average .44 → .47"))
        if rw.get('accuracies') is not None:
            rows.append(('dpo', "held-out execution-ranked pairs: reward accuracy / margin after DPO (0 / 0 before)",
                         f"{rw['accuracies']:.2f} / {rw['margins']:.3f}", "—"))
    for task, label, ref in (('humaneval', 'HumanEval', 'StableCode alpha instruct 26.9%'), ('exercises', '`exercises`', '—')):
        p1 = ((ins.get(task) or {}).get('pass_at') or {}).get('pass@1')
        if p1 is not None: rows.append(('eval', f"{label} pass@1 of the final instruction model (ChatML)", _pct(p1), ref))
    return rows


def quantize_rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    "Each quantized format of the final (instruction) model: size, decode speed and top-1 agreement against fp32."
    q = _load(run_dir/'quantize'/'quantize.json') or {}
    # like with like: the Instruct release's GGUF files (its Q5_K_M size is not stated), not the base model's
    ref = {'gguf:q4_k_m': 'Instruct Q4_K_M GGUF 1.71 GB', 'gguf:q5_k_m': 'Instruct Q5_K_M GGUF (size not stated)'}
    return [('quantize', f"`{r['format']}`: size, decode speed vs fp32, top-1 agreement with fp32",
             f"{r['size_mb']:.1f} MB, {r['decode_x']:.2f}x, {_pct(r.get('top1_agree'))}", ref.get(r['format'], '—'))
            for r in q.get('rows', []) if r['format'] != 'hf:fp32' and r.get('decode_x') is not None]


def alignment_rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    "The alignment recipes beside the report: self-alignment's funnel, RRTF against SFT and DPO, GRPO against SFT."
    fun, rr = _load(run_dir/'self_align'/'funnel.json'), _load(run_dir/'rrtf'/'evidence.json')
    rows = []
    if fun and fun.get('steps'):
        st = fun['steps']
        rows.append(('self_align', "Self-OSS-Instruct funnel: " + ' → '.join(x['step'] for x in st),
                     ' → '.join(str(x['n_out']) for x in st), "StarCoder2-Instruct: 238k instructions → ~50k pairs"))
    h = (rr or {}).get('heldout') or {}
    if h:
        rows.append(('rrtf', f"held-out `exercises` pass@1 ({h['problems']} problems, 95% interval): " + ' / '.join(h['models']),
                     ' / '.join(_ci(h, m) for m in h['models']),
                     "PanGu-Coder2 15B after RRTF: HumanEval 61.64% (n=200, T=0.2), 62.20% greedy"))
    g = _load(run_dir/'grpo'/'evidence.json') or {}
    if g.get('heldout'):
        h, before, after = g['heldout'], (g.get('headroom') or {}).get('mean') or {}, (g.get('headroom_after') or {}).get('mean') or {}
        rw = ' / '.join(f"{before[k]:.3f} → {after[k]:.3f}" for k in after) or "n/a"
        rows.append(('grpo', f"held-out `exercises` pass@1 ({h['problems']} problems, 95% interval): SFT / GRPO; mean reward "
                     f"({' / '.join(after)}) on the same training problems, before → after", f"{_ci(h, 'sft')} / {_ci(h, 'grpo')}; {rw}",
                     "no GRPO run in the reports (REFERENCE)"))
    return rows


def _table(rows, head=("measure", "tiny run", "Stable Code 3B (report)")) -> list[str]:
    return [f"| {' | '.join(head)} |", '|' + '---|' * len(head)] + [f"| {' | '.join(_cell(x) for x in r)} |" for r in rows]


def results_table(run_dir: Path) -> str:
    "The front page's table: the latest tiny run's figures next to the report's (Markdown; empty without a run)."
    rows = comparison_rows(run_dir)
    if not rows: return ''
    out = ["## Results of the latest tiny run", "",
           f"From `{run_dir.name}` (a 1.9M-parameter model trained for minutes on two CPU cores) next to the report's "
           "3B model; the tiny model is not expected to approach the report's scores, and 0% on HumanEval is its honest "
           "result. The [results page](results.md) has every table of the run, its stages and timings.", ""]
    return '\n'.join(out + _table([r[1:] for r in rows])) + '\n'


def _short_date(iso: str | None) -> str:
    return (iso or '').replace('T', ' ')[:16] + (' UTC' if iso and iso.endswith('+00:00') else '') if iso else 'not finished'


def _demote(md: str, top: int | None) -> str:
    "Shift a Markdown table file's headings so that its highest is level `top` (None: headings become bold lines)."
    levels = [len(m.group(1)) for m in re.finditer(r'^(#+)\s', md, re.M)]
    if not levels: return md
    if top is None: return re.sub(r'^#+\s+(.+)$', r'**\1**', md, flags=re.M)
    shift = top - min(levels)
    return re.sub(r'^(#+)(?=\s)', lambda m: '#' * max(1, min(6, len(m.group(1)) + shift)), md, flags=re.M)


def _label(path: str) -> str: return 'run-' + re.sub(r'[^a-z0-9]+', '-', path.lower()).strip('-')


def _stage_link(name: str, st: dict) -> str:
    ch = Path(st.get('notebook') or '').stem
    return f"[{name}]({ch}.ipynb)" if (SRC/f"{ch}.ipynb").exists() or (ROOT/'nbs'/f"{ch}.ipynb").exists() else name


def write_results(run_dir: Path) -> str:
    "The results page of the latest tiny run; returns its Markdown."
    m = run_manifest(run_dir)
    if not m:
        return ("# Results of the tiny run\n\nNo executed tiny run was found (`papermill_runs/tiny-cpu/manifest.json`) "
                "when this site was built, so there are no results to show. Run `make run` (or `stablecode run "
                "papermill_runs/tiny-cpu.yaml`) and rebuild the docs; the chapters then show the executed notebooks "
                "with their outputs, and this page every table the run writes.\n")
    git = m.get('git') or {}
    out = ["# Results of the tiny run", "",
           f"The executed notebooks of the chapters come from the run `{m.get('run')}` "
           f"(status **{m.get('status')}**, started {_short_date(m.get('started'))}, finished "
           f"{_short_date(m.get('finished'))}, git `{(git.get('sha') or 'unknown')[:12]}`"
           f"{' with uncommitted changes' if git.get('dirty') else ''}, host `{m.get('host', 'unknown')}`). "
           "Every figure and table on this page is read from the run's artifacts when the site is built.", "",
           "Package versions: " + ', '.join(f"{k} {v}" for k, v in (m.get('packages') or {}).items() if v) + ".", ""]
    env = m.get('environment') or {}
    if env.get('lock_packages'):       # recorded by runs since the lock file: what differed from it
        drift = env.get('lock_drift') or {}
        out += [f"Against the lock (`{Path(str(env.get('lock'))).name}`, {env['lock_packages']} packages): "
                + ("every locked package was installed at its pinned version." if not drift else
                   "these differed: " + ', '.join(f"{k} {v[1]} (locked {v[0]})" for k, v in drift.items()
                                                  if isinstance(v, (list, tuple)) and len(v) == 2) + "."), ""]
    rows = comparison_rows(run_dir)
    if rows:
        out += ["## Next to the report", "",
                "The figures the Stable Code report also states (or would), beside its 3B model's. The tiny model "
                "is a few minutes of CPU training and is not expected to approach them.", ""]
        out += _table([(f"[{r[0]}](#stage-{r[0]})",) + r[1:] for r in rows], ("stage", "measure", "tiny run", "Stable Code 3B (report)"))
        out.append("")
    out += ["## Stages", "",
            "The run manifest records, per stage, the config hash that decides whether a re-run skips it, the timings "
            "and the artifacts.", "",
            "| stage | status | seconds | finished | config hash | artifacts | notebook since the run |",
            "|---|---|---:|---|---|---:|---|"]
    stages = m.get('stages') or {}
    for name, st in stages.items():
        secs = st.get('seconds')
        nb = ROOT/'nbs'/Path(st.get('notebook') or '').name      # the notebook this site renders
        now = hashlib.sha256(nb.read_bytes()).hexdigest() if nb.is_file() else None
        changed = 'unchanged' if now == st.get('notebook_sha256') else ('**edited** (re-run to refresh)' if now else 'missing')
        out.append(f"| {_stage_link(name, st)} | {st.get('status')} | {'' if secs is None else f'{secs:.1f}'} | "
                   f"{_short_date(st.get('finished'))} | `{st.get('config_hash')}` | {len(_artifacts(st))} | {changed} |")
    fig = loss_figure(run_dir, m)
    if fig:
        out += ["", "## Training loss", "", f"```{{figure}} {fig}", ":alt: training loss of the tiny run", "",
                "Training loss per step of the tiny run's training stages (from their `metrics*.jsonl` artifacts).", "```"]
    for name, st in stages.items():
        out += ["", f"## Stage `{name}`", "",
                f"Chapter: {_stage_link(name, st)}; status {st.get('status')}, "
                f"{'' if st.get('seconds') is None else format(st['seconds'], '.1f') + ' s, '}finished {_short_date(st.get('finished'))}.", ""]
        shown = False
        for t in stage_tables(run_dir, name, st):
            out += [f"### `{t}`", "", _demote((run_dir/t).read_text(), 4), ""]; shown = True
        for f in stage_figures(run_dir, st):
            out += [f"```{{figure}} {stage_copy(run_dir, f)}", f":alt: {f}", "", f"`{f}`, saved by the stage.", "```", ""]
            shown = True
        for j in stage_summaries(run_dir, name, st):
            kv = scalars(_load(run_dir/j))
            if not kv: continue
            out += [f"### `{j}`", "", f"The scalar values of this summary ({min(len(kv), 60)} of {len(kv)}; lists of "
                    "per-item records are in the file itself).", ""]
            out += _table(kv[:60], ("key", "value")) + [""]
            shown = True
        if not shown: out += ["This stage wrote no table, figure or JSON summary at the top of its directory.", ""]
    return '\n'.join(out) + '\n'


def stage_copy(run_dir: Path, rel: str) -> str:
    "Copy a run artifact into the staged tree (so Sphinx can include it); its path there."
    dest = SRC/'_run'/rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists(): shutil.copy(run_dir/rel, dest)
    return f"_run/{rel}"


def _out_text(c: dict) -> str:
    parts = []
    for o in c.get('outputs') or []:
        t = o.get('text') or (o.get('data') or {}).get('text/plain') or (o.get('data') or {}).get('text/markdown') or ''
        parts.append(''.join(t) if isinstance(t, list) else t)
    return '\n'.join(parts)


def _has_image(c: dict) -> bool:
    return any(k.startswith('image/') for o in c.get('outputs') or [] for k in (o.get('data') or {}))


def place_run_outputs(nb: dict, run_dir: Path, name: str, st: dict) -> list[tuple[str, str]]:
    """Show every figure and Markdown table the stage saved where the chapter makes its claim: after the last cell of
    the run section (from the `parameters` cell on) that names the file (or, failing that, the last cell of that
    section with output). Files the notebook already shows are left alone. Returns (kind, label) of what it added."""
    cells = nb['cells']
    start = next((i for i, c in enumerate(cells) if set((c.get('metadata') or {}).get('tags') or []) & _KEEP_VISIBLE), 0)
    added, inserts = [], []
    for rel in stage_figures(run_dir, st) + stage_tables(run_dir, name, st):
        base, is_fig = Path(rel).name, Path(rel).suffix.lower() in FIGURE_SUFFIXES
        naming = [i for i, c in enumerate(cells) if base in _src(c) or base in _out_text(c)]
        if is_fig and any(_has_image(cells[i]) for i in naming if cells[i]['cell_type'] == 'code' and
                          re.search(r'Image\(|display\(|imshow|\.show\(', _src(cells[i]))): continue
        text = (run_dir/rel).read_text() if not is_fig else ''
        if not is_fig and any(text.strip() and text.strip() in _out_text(c) for c in cells):
            continue          # the notebook already prints this table
        after = [i for i in naming if i >= start]
        with_out = [i for i, c in enumerate(cells) if i >= start and c['cell_type'] == 'code' and c.get('outputs')]
        at = (after or with_out or [len(cells) - 1])[-1]
        label = _label(rel)
        if is_fig:
            md = (f"```{{figure}} {stage_copy(run_dir, rel)}\n:name: {label}\n:alt: {rel}\n\n"
                  f"`{rel}`, saved by this stage in the latest tiny run (shown here by the docs build).\n```")
        else:
            md = f"({label})=\n**`{rel}`**, written by this stage in the latest tiny run:\n\n{_demote(text, None)}"
        inserts.append((at, {'cell_type': 'markdown', 'id': label[:60], 'metadata': {}, 'source': md}))
        added.append(('figure' if is_fig else 'table', rel))
    for k, (at, cell) in sorted(enumerate(inserts), key=lambda x: (-x[1][0], -x[0])): cells.insert(at + 1, cell)
    return added


def module_users(m: dict | None, run_dir: Path, module: str | None) -> list[str]:
    "The run's stages whose executed notebook imports `stablecode.<module>`."
    if not (m and module): return []
    pat = re.compile(rf'\bstablecode\.{re.escape(module)}\b|from stablecode import [^\n]*\b{re.escape(module)}\b')
    out = []
    for name, st in (m.get('stages') or {}).items():
        ex = run_dir/Path(st.get('executed_notebook') or st.get('notebook') or '').name
        nb = _load(ex) if ex.is_file() else None
        if nb and any(pat.search(_src(c)) for c in nb['cells'] if c['cell_type'] == 'code'): out.append(name)
    return out


def chapter_box(nb_path: Path, m: dict | None, run_dir: Path, stage: tuple[str, dict] | None,
                added: list[tuple[str, str]], n_output_images: int, downloads: dict[str, str],
                failed_at: str | None = None) -> str:
    "The 'What this chapter shows' box at the top of a chapter: the run's figures for it, or a plain statement that there are none."
    lines = [":::{admonition} What this chapter shows", ":class: chapter-box", ""]
    src = json.loads(nb_path.read_text())
    mod = next((m_.group(1) for c in src['cells'] if c['cell_type'] == 'code'
                for m_ in [re.search(r'^#\|\s*default_exp\s+(\S+)', _src(c), re.M)] if m_), None)
    if stage:
        name, st = stage
        git = (st.get('git') or {}).get('sha') or ''
        secs = st.get('seconds')
        lines += [f"This chapter is the **`{name}`** stage of the tiny run `{m.get('run')}`: the outputs below are that "
                  f"run's (status **{st.get('status')}**{f', {secs:.0f} s' if secs is not None else ''}, finished "
                  f"{_short_date(st.get('finished'))}, git `{git[:12] or 'unknown'}`).", ""]
        if failed_at:
            lines += [f"**The stage stopped with an error** in cell {failed_at}: <a href=\"#papermill-error-cell\">the "
                      "failing cell</a> shows it, and the cells after it have no outputs.", ""]
        nbf = ROOT/'nbs'/nb_path.name
        if nbf.is_file() and hashlib.sha256(nbf.read_bytes()).hexdigest() != st.get('notebook_sha256'):
            lines += ["The notebook has been edited since this run: its prose may describe code the run did not "
                      "execute. `make run` refreshes it.", ""]
        rows = [r[1:] for r in comparison_rows(run_dir) if r[0] == name]
        if rows:
            lines += _table(rows) + [""]
        else:
            kv = [(f"`{Path(j).name}` › {k}", v) for j in stage_summaries(run_dir, name, st)
                  for k, v in scalars(_load(run_dir/j))][:8]
            lines += (_table(kv, ("from the run's summaries", "value")) if kv else
                      ["The stage wrote no JSON summary this box can read; the outputs below are its results."]) + [""]
        figs = [f"{{ref}}`{Path(r).name} <{_label(r)}>`" for k, r in added]
        what = []
        if n_output_images: what.append(f"{n_output_images} figure{'s' * (n_output_images > 1)} in the executed cells' outputs")
        if figs: what.append("the stage's saved " + ', '.join(figs))
        lines += [("Shown below: " + '; '.join(what) + ". " if what else "") +
                  f"All the run's tables are on the [results page](results.md#stage-{name}).", ""]
    elif m:
        users = module_users(m, run_dir, mod)
        lines += [f"This chapter is not a stage of the tiny run `{m.get('run')}`, so it has no figures from the run; "
                  "its code is shown as written, without outputs (`nbdev-test` executes its cells)."
                  + (f" Its module `stablecode.{mod}` runs inside the stage{'s' * (len(users) > 1)} "
                     + ', '.join(f"[`{u}`](results.md#stage-{u})" for u in users) + ", whose chapters show the results."
                     if users else ""), ""]
    else:
        lines += ["No executed tiny run was found when this site was built, so this chapter shows its code without "
                  "outputs and no figures from a run. `make run`, then `make docs`, fills them in.", ""]
    links = []
    if 'executed' in downloads:
        links.append(f"{{download}}`executed notebook from the run <{downloads['executed']}>`")
    links.append(f"{{download}}`source notebook nbs/{nb_path.name} <{downloads['source']}>`")
    lines += ["Download: " + ' · '.join(links), ":::"]
    return '\n'.join(lines)


def add_box(nb: dict, box: str):
    "Insert the box after the chapter's title and abstract (the Markdown cell with the `# title`)."
    md = [i for i, c in enumerate(nb['cells']) if c['cell_type'] == 'markdown']
    at = next((i + 1 for i in md if re.search(r'^#\s', _src(nb['cells'][i]), re.M)), md[0] + 1 if md else 0)
    nb['cells'].insert(at, {'cell_type': 'markdown', 'id': 'docs-chapter-box', 'metadata': {}, 'source': box})


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
    m = run_manifest(RUN)
    used_run = []
    names = []
    for nb_path in chapters():
        ex = RUN/nb_path.name
        stage = stage_of_chapter(m, nb_path.name)
        src = ex if ex.exists() else nb_path
        if ex.exists(): used_run.append(nb_path.name)
        nb = clean_notebook(json.loads(src.read_text()))
        downloads = {'source': f"_notebooks/source/{nb_path.name}"}
        (SRC/'_notebooks'/'source').mkdir(parents=True, exist_ok=True)
        shutil.copy(nb_path, SRC/downloads['source'])
        if ex.exists():
            downloads['executed'] = f"_notebooks/executed/{nb_path.name}"
            (SRC/'_notebooks'/'executed').mkdir(parents=True, exist_ok=True)
            shutil.copy(ex, SRC/downloads['executed'])
        failed_at = None                 # papermill's banner above the title of a failed notebook moves into the box
        for c in [c for c in nb['cells'] if 'papermill-error-cell-tag' in (c.get('metadata') or {}).get('tags', [])]:
            if 'Exception was encountered' in _src(c):
                failed_at = (re.findall(r'(In \[\d*\])', _src(c)) or ['?'])[0]; nb['cells'].remove(c)
        n_img = sum(1 for c in nb['cells'] if c['cell_type'] == 'code' and _has_image(c))
        added = place_run_outputs(nb, RUN, *stage) if stage and ex.exists() else []
        add_box(nb, chapter_box(nb_path, m, RUN, stage if ex.exists() else None, added, n_img, downloads, failed_at))
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
