"""SFT throughput with packing against padding, through TRL's SFTTrainer, in one run.

The same tiny model (random init, the `tiny` preset with a 4,096-token BPE) is fine-tuned on the same conversations
(the offline instruction set of the tiny run: standard-library functions and generated math, of very unequal
lengths) in two ways: packed (TRL's best-fit-decreasing packing into 512-token rows, padding-free: conversations kept
apart by restarting position ids) and padded (each batch of 8 conversations padded to its longest). The measure is
real (non-padding) tokens per second over a fixed number of optimizer steps; the two alternate for `--rounds` rounds
so that load from other processes falls on both, and the ratio is the median over rounds. One CPU process, float32.

    python benchmarks/bench_sft.py [--rounds 5] [--steps 12]
Writes benchmarks/results/bench_sft.json and .md.
"""
import argparse, json, statistics, sys, sysconfig, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))
from machine import machine as _machine

def setup(d: Path):
    import torch
    from datasets import Dataset
    from stablecode.config import preset
    from stablecode.instruct_data import offline_instructions
    from stablecode.model import StableCodeForCausalLM
    from stablecode.tokenizer import train_tokenizer
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:150]
    tok = train_tokenizer((f.read_text(encoding='utf-8', errors='replace') for f in files), vocab_size=4096)
    torch.manual_seed(0)
    StableCodeForCausalLM(preset('tiny', vocab_size=len(tok))).save_pretrained(d / 'base'); tok.save_pretrained(d / 'base')
    rows = [dict(messages=r['messages']) for r in offline_instructions(seed=0)]
    return Dataset.from_list(rows)

def run(d: Path, ds, packing: bool, steps: int) -> dict:
    from trl import SFTConfig, SFTTrainer
    from stablecode.instruct_data import SourceSpec
    from stablecode.sft import SFTRecipe, load_chat_model, trl_args
    r = SFTRecipe(model=str(d / 'base'), out_dir=str(d / ('packed' if packing else 'padded')), sources=[SourceSpec(name='offline')],
                  max_steps=steps, global_batch=8, micro_batch=8, lr=1e-3, max_length=512, zero_stage=0, progress=False,
                  logging_steps=steps)
    model, tok = load_chat_model(r.model)
    args = trl_args(r, SFTConfig, 1, packing=packing, assistant_only_loss=True)
    tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    t = time.time(); tr.train(); secs = time.time() - t
    return dict(tokens=int(tr.state.num_input_tokens_seen), seconds=secs, tokens_per_s=tr.state.num_input_tokens_seen / secs)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--rounds', type=int, default=5); ap.add_argument('--steps', type=int, default=12)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix='bench-sft-'))
    ds = setup(d)
    rounds = []
    for i in range(a.rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        res = {('packed' if p else 'padded'): run(d, ds, p, a.steps) for p in order}
        res['ratio'] = res['packed']['tokens_per_s'] / res['padded']['tokens_per_s']
        rounds.append(res)
        print(f"round {i + 1}: packed {res['packed']['tokens_per_s']:,.0f} tokens/s, padded {res['padded']['tokens_per_s']:,.0f} "
              f"tokens/s, ratio {res['ratio']:.2f}", flush=True)
    med = lambda k: statistics.median(r[k]['tokens_per_s'] for r in rounds)
    out = dict(machine=_machine('transformers', 'trl'), rounds=rounds, steps=a.steps, conversations=len(ds),
               packed_tokens_per_s=med('packed'), padded_tokens_per_s=med('padded'),
               ratio_median=statistics.median(r['ratio'] for r in rounds))
    res_dir = ROOT / 'benchmarks' / 'results'; res_dir.mkdir(exist_ok=True)
    (res_dir / 'bench_sft.json').write_text(json.dumps(out, indent=1))
    m = out['machine']
    (res_dir / 'bench_sft.md').write_text('\n'.join([
        '# SFT: packing vs padding', '',
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}; "
        f"load average at start {m['load_average_1min_at_start']}.", '',
        f"The tiny model fine-tuned for {a.steps} optimizer steps of 8 rows on the offline instruction set "
        f"({len(ds):,} conversations), one CPU process; real (non-padding) tokens per second, median of {a.rounds} alternating rounds.", '',
        '| layout | tokens/s (median) |', '|---|---|',
        f"| packed (BFD, 512-token rows, padding-free) | {out['packed_tokens_per_s']:,.0f} |",
        f"| padded (8 conversations per batch) | {out['padded_tokens_per_s']:,.0f} |", '',
        f"**Packed / padded: {out['ratio_median']:.2f}x** (per round: {', '.join(f'{r['ratio']:.2f}' for r in rounds)}). "
        "Packed rows hold several conversations, so each step also sees more tokens; the ratio is of tokens per second, "
        "the cost that matters for a fixed dataset.", '']))
    print(f"packed/padded tokens/s: {out['ratio_median']:.2f}x")

if __name__ == '__main__': main()
