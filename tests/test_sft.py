"""SFT and DPO through their real entry points (`python -m stablecode.sft`, `python -m stablecode.dpo`): ZeRO-1 over
two CPU processes against one, the assistant-only loss mask, packed rows against separate conversations, the saved
checkpoints loaded and chatted with by stock transformers, execution-ranked pairs and their re-check, and the presets."""
import json, os, subprocess, sys, sysconfig
from pathlib import Path
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from stablecode.benchmarks import Problem, load_task
from stablecode.config import ConfigError, preset
from stablecode.dpo import DPO_PRESETS, DPORecipe, PairsConfig, dpo_preset, preference_pairs, ranked_samples, recheck
from stablecode.eval import OUTCOMES, chat_answer, chat_messages, classify_outcome, execution_outcomes, outcome_rank
from stablecode.generate import Backend
from stablecode.instruct_data import SourceSpec, sft_dataset
from stablecode.model import StableCodeForCausalLM
from stablecode.sft import SFT_PRESETS, SFTRecipe, grad_accum, load_chat_model, sft_preset, trl_args
from stablecode.tokenizer import IM_END, train_tokenizer

ALPACA = [dict(instruction=f"Write a Python function add_{i}(x) that returns x plus {i}.", input='',
               output=f"```python\ndef add_{i}(x):\n    return x + {i}\n```") for i in range(48)]

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A random tiny model with a 1,024-token BPE (the project's special tokens and ChatML template), and CodeAlpaca rows."
    d = tmp_path_factory.mktemp('sft')
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:40]
    tok = train_tokenizer([f.read_text(errors='ignore') for f in files] + [r['output'] for r in ALPACA], vocab_size=1024)
    torch.manual_seed(0)
    StableCodeForCausalLM(preset('tiny', vocab_size=len(tok), num_hidden_layers=2)).save_pretrained(d / 'base')
    tok.save_pretrained(d / 'base')
    (d / 'alpaca.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in ALPACA))     # sahil2801/CodeAlpaca-20k's schema
    return d

def _recipe(base, out, **kw) -> SFTRecipe:
    kw = dict(max_steps=4, global_batch=8, micro_batch=4, lr=1e-3, max_length=128, warmup=0.25, progress=False) | kw
    return SFTRecipe(model=str(base / 'base'), out_dir=str(out),
                     sources=[SourceSpec(name='code_alpaca', path=str(base / 'alpaca.jsonl'))], **kw)

def _launch(module, recipe, cfg_file, nproc=1):
    recipe.to_yaml(cfg_file)
    cmd = [sys.executable, '-m', module, '--config', str(cfg_file)]
    if nproc > 1: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), *cmd[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'DS_ACCELERATOR': 'cpu'})
    assert r.returncode == 0, r.stderr[-3000:]
    return r

def test_two_process_zero1_sft_equals_one_process_and_saves_a_stock_chat_checkpoint(base, tmp_path):
    losses = {}
    for n in (1, 2):
        r = _recipe(base, tmp_path / f'p{n}')
        _launch('stablecode.sft', r, tmp_path / f'p{n}.yaml', nproc=n)
        s = json.loads((tmp_path / f'p{n}' / 'summary.json').read_text())
        assert s['world_size'] == n and s['steps'] == 4 and s['data']['code_alpaca']['kept'] == 48, s
        losses[n] = [x['loss'] for x in s['records']]
    assert len(losses[1]) == 4 and losses[1][-1] < losses[1][0], losses
    assert losses[1] == pytest.approx(losses[2], rel=1e-4), losses        # same samples per step, same gradients
    hf = tmp_path / 'p1' / 'hf'
    model, tok = AutoModelForCausalLM.from_pretrained(hf), AutoTokenizer.from_pretrained(hf)
    msgs = [dict(role='user', content='Add one.')]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == '<|im_start|>user\nAdd one.<|im_end|>\n<|im_start|>assistant\n'
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors='pt', return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids['input_ids'].shape[1]

def test_bad_batch_and_bad_config_are_one_line_errors(base, tmp_path):
    r = _recipe(base, tmp_path / 'x', global_batch=10)
    r.to_yaml(tmp_path / 'bad.yaml')
    p = subprocess.run([sys.executable, '-m', 'stablecode.sft', '--config', str(tmp_path / 'bad.yaml')], capture_output=True, text=True)
    assert p.returncode == 2 and 'not divisible' in p.stderr and 'Traceback' not in p.stderr, p.stderr[-2000:]
    with pytest.raises(ConfigError, match='unknown prompt_format'): _recipe(base, tmp_path, prompt_format='vicuna')
    with pytest.raises(ConfigError, match="'sources' is empty"): SFTRecipe(model='m')

def _trainer(base, tmp_path, **kw):
    model, tok = load_chat_model(str(base / 'base'))
    ds, _ = sft_dataset([SourceSpec(name='code_alpaca', path=str(base / 'alpaca.jsonl'))], decont=None, progress=False)
    r = _recipe(base, tmp_path, zero_stage=0, **kw)
    args = trl_args(r, SFTConfig, 1, packing=True, assistant_only_loss=True)
    args.gradient_accumulation_steps = 1
    return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok), model, tok

def test_loss_only_on_assistant_tokens_and_packed_rows_equal_separate_conversations(base, tmp_path):
    tr, model, tok = _trainer(base, tmp_path)
    b = next(iter(tr.get_train_dataloader()))
    ids, labels = b['input_ids'][0], b['labels'][0]
    n_docs = int((b['position_ids'][0] == 0).sum())
    assert n_docs > 1                                         # several conversations in one packed row
    kept = tok.decode(ids[labels != -100])
    assert kept.count(IM_END) == n_docs and 'Write a Python function' not in kept and '<|im_start|>' not in kept
    assert kept.count('```python') == n_docs                  # every answer, and only answers, carry loss
    with torch.no_grad():
        packed = model(input_ids=b['input_ids'], labels=b['labels'], position_ids=b['position_ids']).loss
        starts = (b['position_ids'][0] == 0).nonzero().flatten().tolist() + [len(ids)]
        tot, n = 0.0, 0
        for s, e in zip(starts, starts[1:]):                  # each conversation alone: the same tokens, no neighbours
            lab = labels[s:e][None]
            k = int((lab[:, 1:] != -100).sum())
            tot += model(input_ids=ids[s:e][None], labels=lab).loss.item() * k; n += k
    assert packed.item() == pytest.approx(tot / n, rel=1e-4)

def test_activation_checkpointing_gives_the_same_losses(base, tmp_path):
    losses = []
    for ckpt in (False, True):
        tr, _, _ = _trainer(base, tmp_path / str(ckpt), activation_checkpointing=ckpt, max_steps=2, logging_steps=1)
        tr.train()
        losses.append([h['loss'] for h in tr.state.log_history if 'loss' in h])
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-5), losses

class Fixed(Backend):
    name = 'fixed'
    def __init__(self, answers): self.answers = answers
    def generate(self, prompts, stops, n=1, **kw): return [self.answers[:n] for _ in prompts]

def test_outcome_ranking_order_and_classification():
    assert OUTCOMES == ('compile_error', 'runtime_error', 'some_pass', 'all_pass')
    assert [classify_outcome(s, k) for s, k in [('passed', 0), ('compile_error', 0), ('failed', 0), ('timeout', 0),
                                                ('failed', 1), ('crashed', 2)]] == \
           ['all_pass', 'compile_error', 'runtime_error', 'runtime_error', 'some_pass', 'some_pass']
    o = lambda out, k, n: dict(outcome=out, checks_passed=k, checks=n)
    ranked = sorted([o('some_pass', 1, 3), o('all_pass', 3, 3), o('compile_error', 0, 3), o('runtime_error', 0, 3),
                     o('some_pass', 2, 3)], key=outcome_rank)
    assert [(x['outcome'], x['checks_passed']) for x in ranked] == [('compile_error', 0), ('runtime_error', 0),
                                                                    ('some_pass', 1), ('some_pass', 2), ('all_pass', 3)]

def test_pairs_from_exercises_are_ranked_by_execution_and_recheckable():
    p = load_task('exercises', limit=1)[0]
    good = chat_answer(p, p.canonical)
    wrong = chat_answer(p, p.canonical.replace('return ', 'return 1 + ', 1))
    broken = chat_answer(p, '    return (\n')
    ranked = ranked_samples(Fixed([broken, wrong, good]), [p], PairsConfig(samples=3, reference=False), progress=False)
    outs = [s['outcome'] for s in ranked[0]]
    assert outs[0] == 'compile_error' and outs[2] == 'all_pass' and outs[1] in ('runtime_error', 'some_pass'), outs
    rows = preference_pairs([p], ranked, pairs_per_problem=2)
    assert [(r['chosen_outcome'], r['rejected_outcome']) for r in rows] == [('all_pass', 'compile_error'), ('all_pass', outs[1])]
    assert rows[0]['prompt'] == chat_messages(p) and rows[0]['chosen'] == [dict(role='assistant', content=good)]
    assert all(recheck(r) for r in rows)
    forged = dict(rows[0], chosen_program=rows[0]['rejected_program'])  # a row whose chosen program does not pass
    assert not recheck(forged)
    # with the reference solution as a teacher: a problem the model never solves still gives a pair
    ranked = ranked_samples(Fixed([broken, broken]), [p], PairsConfig(samples=2), progress=False)
    rows = preference_pairs([p], ranked)
    assert len(rows) == 1 and rows[0]['chosen_is_reference'] and rows[0]['chosen_outcome'] == 'all_pass'

def test_dpo_trains_from_pairs_and_measures_heldout_rewards(base, tmp_path):
    ex = load_task('exercises-train', limit=12)
    def rows(problems):
        out = []
        for p in problems:
            good, bad = chat_answer(p, p.canonical), chat_answer(p, '    return None\n')
            out.append(dict(prompt=chat_messages(p), chosen=[dict(role='assistant', content=good)],
                            rejected=[dict(role='assistant', content=bad)], tests=p.tests,
                            chosen_outcome='all_pass', rejected_outcome='runtime_error'))
        return ''.join(json.dumps(r) + '\n' for r in out)
    (tmp_path / 'pairs.jsonl').write_text(rows(ex[:8])); (tmp_path / 'held.jsonl').write_text(rows(ex[8:]))
    r = DPORecipe(model=str(base / 'base'), out_dir=str(tmp_path / 'dpo'), sources=[SourceSpec(name='pairs', path=str(tmp_path / 'pairs.jsonl'))],
                  eval_pairs=str(tmp_path / 'held.jsonl'), max_steps=3, global_batch=4, micro_batch=4, lr=1e-3,
                  max_length=256, progress=False)
    _launch('stablecode.dpo', r, tmp_path / 'dpo.yaml')
    s = json.loads((tmp_path / 'dpo' / 'summary.json').read_text())
    assert s['steps'] == 3 and s['data']['pairs']['kept'] == 8
    assert s['heldout']['margins'] > 0 and s['heldout']['accuracies'] > 0.5, s   # it learnt the preference (both 0 at start)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / 'dpo' / 'hf') is not None

def test_presets_carry_the_report_values():
    r = sft_preset('stable-code-instruct-3b')
    assert (r.epochs, r.schedule, r.warmup, r.lr, r.global_batch, r.max_length, r.prompt_format, r.zero_stage) == \
           (3, 'cosine', 0.1, 5e-5, 512, 4096, 'chatml', 1)
    assert {s.name for s in r.sources} == {'openhermes', 'code_feedback', 'code_alpaca'}
    assert grad_accum(r, 256) == 1                          # 512 sequences = 2 per GPU on the report's 256 A100s
    d = dpo_preset('stable-code-instruct-3b')
    assert {s.name: s.max_rows for s in d.sources}['hh_harmless'] == 15_000 and grad_accum(d, 256) == 1
    assert {s.name for s in d.sources} == {'ultrafeedback', 'capybara', 'hh_harmless', 'pairs'}
    for reg in (SFT_PRESETS, DPO_PRESETS):
        for name in reg.names(): reg(name)                    # every preset parses and validates
    with pytest.raises(ConfigError, match="'samples' must be >= 2"): PairsConfig(samples=1)
