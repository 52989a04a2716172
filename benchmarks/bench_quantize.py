"""Quantized formats against fp32 PyTorch on this CPU, and the release sizes of Stable Code 3B checked.

1. Speed and quality: a random model of the `small` preset (768 wide, 12 layers, rows that are multiples of 256, so
   the k-quants are real) exported to every format of `stablecode.quantize`; each format measured in its own process
   (`quant_table`): decode tokens/s and time to first token as ratios to fp32 PyTorch measured in the same run, the
   median of --rounds rounds with the formats alternating within each round; size, peak memory, perplexity delta and
   top-1 agreement with fp32 on held-out standard-library text.
2. Release sizes: a `stable-code-3b`-shaped checkpoint with random weights (written straight to float16 safetensors,
   layer by layer: no download, no 11 GB fp32 model in memory) converted by llama.cpp's converter to F16 and quantized
   to Q6_K and Q5_K_M; the file sizes against the released 5.59 / 2.3 / 1.99 GB, with the time and peak memory it took.

    python benchmarks/bench_quantize.py [--rounds 5] [--skip-3b] [--skip-speed]
Writes benchmarks/results/bench_quantize.json and .md.
"""
import argparse, json, os, resource, shutil, sys, sysconfig, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import machine as _machine
RELEASED_GB = {'f16': 5.59, 'q6_k': 2.3, 'q5_k_m': 1.99}    # stabilityai/stable-code-3b GGUF files (model card)
# torchao:int4wo is left out by default: on CPU its prototype kernels ran at a small fraction of fp32's speed (see the
# tiny run's table), and one round of it outlasts all the others; --formats adds it back.
FORMATS = 'gguf:f16,gguf:q8_0,gguf:q6_k,gguf:q5_k_m,gguf:q4_k_m,ct2:int8,ct2:float32,torchao:int8wo'


def speed(work: Path, rounds: int, formats: str, heldout: int) -> dict:
    from transformers import AutoTokenizer
    from stablecode.quantize import export, markdown_table, measure_job, quant_table, random_checkpoint
    src = random_checkpoint(work / 'small', shape='small', layers=12)
    paths = {'hf:fp32': src, **export(src, work / 'formats', formats)}
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('[m-z]*.py'))
    held = [f.read_text(errors='ignore') for f in files[::max(1, len(files) // heldout)][:heldout]]
    job = measure_job(AutoTokenizer.from_pretrained(str(src)), held, ['def fibonacci(n):\n', 'import os\n\nclass '],
                      seq_len=128, greedy_tokens=16, decode_tokens=64)
    rows = quant_table(paths, job, rounds=rounds)
    return dict(model='small preset, random weights, 12 layers', threads=job['threads'], rounds=rounds, rows=rows,
                table=markdown_table(rows))


def write_3b(out: Path) -> Path:
    "A stable-code-3b-shaped checkpoint with random float16 weights, one safetensors shard per layer."
    from safetensors.torch import save_file
    from stablecode.config import preset
    from stablecode.model import StableCodeForCausalLM
    from stablecode.quantize import random_checkpoint
    cfg = preset('stable-code-3b')
    with torch.device('meta'): shapes = {k: v.shape for k, v in StableCodeForCausalLM(cfg).state_dict().items()}
    random_checkpoint(out / 'tok')                                   # a small tokenizer; the converter pads the vocabulary
    out.mkdir(parents=True, exist_ok=True)
    for f in ('tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja'):
        if (out / 'tok' / f).is_file(): shutil.copy(out / 'tok' / f, out / f)
    hf = cfg.to_hf(); hf.dtype = 'float16'; hf.save_pretrained(out)
    d = json.loads((out / 'config.json').read_text()); d['architectures'] = ['StableLmForCausalLM']
    (out / 'config.json').write_text(json.dumps(d, indent=1))
    groups = {}
    for k in shapes: groups.setdefault(k.split('.')[2] if k.startswith('model.layers.') else 'rest', []).append(k)
    index = {}
    g = torch.Generator().manual_seed(0)
    for i, (name, keys) in enumerate(groups.items()):
        fn = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: (torch.randn(shapes[k], generator=g) * 0.02).half() for k in keys}, str(out / fn), metadata={'format': 'pt'})
        index.update({k: fn for k in keys})
    (out / 'model.safetensors.index.json').write_text(json.dumps(dict(metadata={}, weight_map=index)))
    return out


def sizes_3b(work: Path) -> dict:
    from stablecode.model import count_parameters
    from stablecode.config import preset
    from stablecode.quantize import convert_gguf, gguf_type_counts, quantize_gguf
    t0 = time.time(); src = write_3b(work / '3b'); t_write = time.time() - t0
    res, t = {}, {}
    t0 = time.time(); f16 = convert_gguf(src, work / '3b-f16.gguf'); t['f16'] = time.time() - t0
    shutil.rmtree(src)                                             # room on disk for the quantized files
    for q in ('q6_k', 'q5_k_m'):
        t0 = time.time(); quantize_gguf(f16, work / f'3b-{q}.gguf', q); t[q] = time.time() - t0
    for q in RELEASED_GB:
        p = work / f'3b-{q}.gguf'
        res[q] = dict(bytes=p.stat().st_size, gb=p.stat().st_size / 1e9, released_gb=RELEASED_GB[q],
                      diff_pct=100 * (p.stat().st_size / 1e9 / RELEASED_GB[q] - 1), seconds=round(t[q], 1),
                      types=gguf_type_counts(p) if q != 'f16' else None)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
    return dict(params=count_parameters(preset('stable-code-3b')), write_random_checkpoint_s=round(t_write, 1),
                files=res, peak_child_rss_gb=peak, peak_self_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=5); ap.add_argument('--skip-3b', action='store_true')
    ap.add_argument('--skip-speed', action='store_true')
    ap.add_argument('--formats', default=FORMATS); ap.add_argument('--heldout', type=int, default=4, help='held-out files')
    ap.add_argument('--work', help='scratch directory (default: a temporary one, removed)')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    prev = json.loads((out / 'bench_quantize.json').read_text()) if (out / 'bench_quantize.json').is_file() else {}
    report = dict(benchmark='bench_quantize', machine=_machine('transformers', 'ctranslate2', 'llama_cpp', 'torchao'),
                  when=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))
    with tempfile.TemporaryDirectory(dir=a.work) as w:
        report['speed'] = prev.get('speed') if a.skip_speed else speed(Path(w), a.rounds, a.formats, a.heldout)
        report['sizes_3b'] = prev.get('sizes_3b') if a.skip_3b else sizes_3b(Path(w))
    (out / 'bench_quantize.json').write_text(json.dumps(report, indent=1))
    m = report['machine']
    lines = ['# Quantized formats on this CPU, and the release sizes of Stable Code 3B', '',
             f"Machine: {m['cpu']}, {m['cores']} cores (load {m['load_average_1min_at_start']}), torch {m['torch']}, "
             f"llama-cpp-python {m['llama_cpp']}, ctranslate2 {m['ctranslate2']}, torchao {m['torchao']}; {report['when']}.", '']
    if report.get('speed'):
        s = report['speed']
        lines += [f"## Speed and quality: {s['model']}, {s['threads']} threads, median of {s['rounds']} alternating rounds", '',
                  s['table'], '', 'Ratios are against fp32 PyTorch (transformers) measured in the same run; decode = tokens/s '
                  'of 64 greedy tokens after a 64-token prompt minus the first; TTFT = prefill + one token; quality on held-out '
                  'standard-library text (128-token windows).', '']
    if report.get('sizes_3b'):
        z = report['sizes_3b']
        lines += [f"## Release sizes: a stable-code-3b-shaped model ({z['params']:,} parameters), random weights", '',
                  '| GGUF | ours GB | released GB | difference | seconds |', '|---|---|---|---|---|']
        lines += [f"| {q.upper()} | {r['gb']:.3f} | {r['released_gb']} | {r['diff_pct']:+.1f}% | {r['seconds']} |" for q, r in z['files'].items()]
        lines += ['', f"Writing the random float16 checkpoint took {z['write_random_checkpoint_s']} s; peak resident memory "
                  f"{z['peak_child_rss_gb']:.1f} GB in the converter/quantizer processes, {z['peak_self_rss_gb']:.1f} GB here.",
                  'The sizes follow from the shapes and llama.cpp\'s types alone (weights are random): F16 is 2 bytes per weight '
                  'with the LayerNorms in F32; Q6_K is 6.5625 bits per weight, Q5_K_M 5.5 bits with half of attn_v and ffn_down '
                  'and the output matrix in Q6_K (the type counts are in the JSON). What remains is metadata: our checkpoint '
                  'carries a small tokenizer padded to 50,304 entries with [PAD] tokens, where the released files carry '
                  '50k real tokens and their merges (about a megabyte), and the released GB are rounded to 2-3 digits.']
    (out / 'bench_quantize.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
