"""Training-step throughput of our model vs transformers' StableLmForCausalLM, same config, same batch, one run.

A step is forward + backward + AdamW step, float32 on CPU (bf16 on CUDA with --device cuda). The two models are
timed alternately, step by step, so that load from other processes on a shared machine falls on both equally; the
ratio is the median of per-round ratios. Peak memory is measured per model in a fresh subprocess (resident memory sampled every 2 ms
above the post-import baseline on CPU, torch.cuda.max_memory_allocated on CUDA).

    python benchmarks/bench_model.py [--configs tiny,small] [--rounds 12] [--device cpu]
Writes benchmarks/results/bench_model.json and .md.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import machine as _machine
SHAPES = {'tiny': dict(batch=8, seq=256), 'small': dict(batch=4, seq=512)}

def build(kind, name, device, dtype):
    from transformers import StableLmForCausalLM
    from stablecode.config import preset
    from stablecode.model import StableCodeForCausalLM
    cfg = preset(name)
    torch.manual_seed(0)
    m = (StableCodeForCausalLM(cfg) if kind == 'ours' else StableLmForCausalLM(cfg.to_hf()))
    if kind == 'hf': m.config._attn_implementation = 'sdpa'
    m = m.to(device=device, dtype=dtype).train()
    return cfg, m, torch.optim.AdamW(m.parameters(), lr=1e-4)

def step(m, opt, ids):
    loss = m(input_ids=ids, labels=ids).loss
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return loss

def sync(device):
    if device == 'cuda': torch.cuda.synchronize()


def peak_memory(kind, name, device, dtype):
    "Peak memory (MiB) of a few training steps of one model, in a fresh process, above its RSS once imports are done."
    code = f"""
import sys, threading, time, torch; sys.path.insert(0, {str(ROOT / 'benchmarks')!r})
from bench_model import build, step, SHAPES
import transformers, stablecode.model
page = 4096 / 2**20
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * page
base, peak, done = rss(), [0.0], [False]
def sample():
    while not done[0]: peak[0] = max(peak[0], rss()); time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
cfg, m, opt = build({kind!r}, {name!r}, {device!r}, getattr(torch, {str(dtype).split('.')[-1]!r}))
s = SHAPES[{name!r}]; ids = torch.randint(0, cfg.vocab_size, (s['batch'], s['seq']), device={device!r})
for _ in range(3): step(m, opt, ids)
done[0] = True; t.join()
if {device!r} == 'cuda': print(torch.cuda.max_memory_allocated() / 2**20)
else: print(peak[0] - base)
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])

def bench(name, device, dtype, rounds, warmup=2):
    s = SHAPES[name]
    cfg, ours, o1 = build('ours', name, device, dtype)
    _, hf, o2 = build('hf', name, device, dtype)
    ids = torch.randint(0, cfg.vocab_size, (s['batch'], s['seq']), device=device)
    times = {'ours': [], 'hf': []}
    for r in range(warmup + rounds):
        for kind, m, o in (('ours', ours, o1), ('hf', hf, o2)) if r % 2 == 0 else (('hf', hf, o2), ('ours', ours, o1)):
            sync(device); t = time.perf_counter(); step(m, o, ids); sync(device)
            if r >= warmup: times[kind].append(time.perf_counter() - t)
    tokens = s['batch'] * s['seq']
    ratios = [h / o for o, h in zip(times['ours'], times['hf'])]
    params = sum(p.numel() for p in ours.parameters())
    res = dict(config=name, params=params, batch=s['batch'], seq=s['seq'], dtype=str(dtype).split('.')[-1],
               ours_tokens_per_s=tokens / statistics.median(times['ours']),
               hf_tokens_per_s=tokens / statistics.median(times['hf']),
               speed_ratio=statistics.median(ratios), rounds=rounds)
    res['ours_peak_mib'] = peak_memory('ours', name, device, dtype)
    res['hf_peak_mib'] = peak_memory('hf', name, device, dtype)
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--configs', default='tiny,small'); ap.add_argument('--rounds', type=int, default=12)
    ap.add_argument('--device', default='cpu'); ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results'))
    a = ap.parse_args()
    dtype = torch.float32 if a.device == 'cpu' else torch.bfloat16
    results = [bench(n, a.device, dtype, a.rounds) for n in a.configs.split(',')]
    report = dict(benchmark='bench_model', machine=_machine('transformers'), device=a.device, results=results,
                  when=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    suffix = '' if a.device == 'cpu' else f'_{a.device}'
    (out / f'bench_model{suffix}.json').write_text(json.dumps(report, indent=2))
    lines = [f"# Training step: ours vs transformers' StableLmForCausalLM ({a.device}, {results[0]['dtype']})", '',
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch {report['machine']['torch']}, "
             f"transformers {report['machine']['transformers']}; {report['when']}.", '',
             '| config | params | batch x seq | ours tok/s | transformers tok/s | speed ratio (ours/theirs) | peak MiB ours / theirs |',
             '|---|---|---|---|---|---|---|']
    for r in results:
        lines.append(f"| {r['config']} | {r['params']/1e6:.1f}M | {r['batch']} x {r['seq']} | {r['ours_tokens_per_s']:,.0f} | "
                     f"{r['hf_tokens_per_s']:,.0f} | {r['speed_ratio']:.2f} | {r['ours_peak_mib']:.0f} / {r['hf_peak_mib']:.0f} |")
    lines += ['', 'Ratio = median over rounds of (their step time / our step time), the two models timed alternately.']
    (out / f'bench_model{suffix}.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
