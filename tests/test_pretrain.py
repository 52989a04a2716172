"""Staged pretraining through its real entry point (`python -m stablecode.pretrain`): exact resume after SIGKILL,
half-written and corrupt checkpoints, a changed world size, ZeRO-1 over two CPU processes against one, a NaN guard,
batch arithmetic and missing data streams checked before any work, activation checkpointing, stage transitions and
the shipped presets."""
import gzip, json, os, subprocess, sys, sysconfig
from dataclasses import replace
from pathlib import Path
import pytest
import torch

from stablecode.config import ConfigError
from stablecode.evidence import synthetic_infilling, _OPS
from stablecode.packing import DATA_PRESETS, PackConfig, pack_streams
from stablecode.pretrain import (PRETRAIN_PRESETS, PretrainConfig, TrainStage, latest_checkpoint, lr_factor,
                                 pretrain_preset, run_local, valid_checkpoints)
from stablecode.tokenizer import save_tokenizer, train_tokenizer

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A small corpus (standard-library files and arithmetic, in the corpus format), a 1,024-token BPE and two streams."
    d = tmp_path_factory.mktemp('pretrain') / 'data'
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:80]
    docs = [dict(text=f.read_text(encoding='utf-8', errors='replace'), id=f'code/{f.name}', metadata=dict(source='code'))
            for f in files]
    docs += [dict(text=f"What is {i} + {2 * i}?\nAnswer: {3 * i}.\n", id=f'math/{i}', metadata=dict(source='math'))
             for i in range(300)]
    (d / 'corpus').mkdir(parents=True)
    with gzip.open(d / 'corpus' / '00000.jsonl.gz', 'wt', encoding='utf-8') as f:
        for x in docs: f.write(json.dumps(x) + '\n')
    tok = train_tokenizer((x['text'] for x in docs), vocab_size=1024)
    save_tokenizer(tok, d / 'tokenizer')
    pack_streams(d, dict(code=PackConfig(seq_len=64), long_context=PackConfig(seq_len=128, fim_scope='file', group_by='source')), tok)
    return d

def _cfg(data, out, steps=(8, 2), save_every=4, **kw) -> PretrainConfig:
    stages = [TrainStage(name='code', init='scratch', steps=steps[0], global_batch_tokens=1024, micro_batch=8,
                         lr=3e-3, min_lr=3e-4, warmup=2, rope_theta=10_000.0),
              TrainStage(name='long_context', init='previous', steps=steps[1], global_batch_tokens=1024,
                         micro_batch=4, lr=1e-3, min_lr=1e-4, warmup=1, rope_theta=1_000_000.0)]
    return PretrainConfig(stages=stages, data_dir=str(data), out_dir=str(out), model='tiny', save_every=save_every,
                          deterministic=True, progress=False, **kw)

def _metrics(out, stage='code'): return [json.loads(l) for l in (Path(out) / stage / 'metrics.jsonl').read_text().splitlines()]

@pytest.fixture(scope='module')
def straight(data, tmp_path_factory):
    "The reference: both stages straight through, no interruption."
    out = tmp_path_factory.mktemp('straight') / 'pretrain'
    run_local(_cfg(data, out), out.parent / 'cfg.yaml')
    return out

def test_straight_run_trains_and_leaves_hf_checkpoints(straight):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    code, long = _metrics(straight), _metrics(straight, 'long_context')
    assert [r['step'] for r in code] == list(range(8)) and len(long) == 2
    assert code[-1]['loss'] < code[0]['loss'] - 0.3                         # it learns
    for r in code: assert r['tokens_per_s'] > 0 and 0 < r['mfu'] < 1 and r['peak_mem_mib'] > 0 and r['grad_norm'] > 0
    assert abs(code[0]['lr'] - 3e-3 * lr_factor(0, _cfg(straight, straight).stages[0])) < 1e-12
    m = AutoModelForCausalLM.from_pretrained(straight / 'long_context' / 'hf')          # stock transformers loads it
    assert type(m).__name__ == 'StableLmForCausalLM'
    assert m.config.rope_parameters['rope_theta'] == 1_000_000.0 and m.config.max_position_embeddings >= 128
    first = AutoModelForCausalLM.from_pretrained(straight / 'code' / 'hf')
    assert first.config.rope_parameters['rope_theta'] == 10_000.0
    assert AutoTokenizer.from_pretrained(straight / 'code' / 'hf').convert_tokens_to_ids('<fim_middle>') == 2
    assert (straight / 'code' / 'tensorboard').is_dir() and any((straight / 'code' / 'tensorboard').iterdir())
    s = json.loads((straight / 'summary.json').read_text())
    assert [x['stage'] for x in s['stages']] == ['code', 'long_context'] and s['stages'][1]['seq_len'] == 128

def test_sigkill_then_resume_gives_identical_losses(data, straight, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out)
    r = run_local(cfg, tmp_path / 'cfg.yaml', env=dict(STABLECODE_FAULT='kill_after_save:4'), check=False)
    assert r.returncode == -9                                               # SIGKILL, after the step-4 checkpoint
    assert [p.name for p in valid_checkpoints(out / 'code')] == ['step_00000004']
    assert len(_metrics(out)) == 4 and not (out / 'code' / 'hf').exists()
    r = run_local(replace(cfg, resume=True), tmp_path / 'cfg.yaml')
    assert "stage 'code': resuming at step 4" in r.stdout
    for stage in ('code', 'long_context'):
        a, b = _metrics(straight, stage), _metrics(out, stage)
        assert [x['step'] for x in b] == [x['step'] for x in a]
        assert [x['loss'] for x in b] == [x['loss'] for x in a]            # bit for bit (CPU, float32, deterministic)
        assert [x['grad_norm'] for x in b] == [x['grad_norm'] for x in a]
    from safetensors.torch import load_file
    wa, wb = load_file(straight / 'long_context' / 'hf' / 'model.safetensors'), load_file(out / 'long_context' / 'hf' / 'model.safetensors')
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

def test_kill_during_checkpoint_write_leaves_no_valid_looking_checkpoint(data, straight, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out, save_every=2)
    r = run_local(cfg, tmp_path / 'cfg.yaml', env=dict(STABLECODE_FAULT='kill_during_save:4'), check=False)
    assert r.returncode == -9
    ck = out / 'code' / 'checkpoints'
    assert (ck / '.tmp-step_00000004').is_dir() and not (ck / 'step_00000004').exists()   # the half-written one
    assert latest_checkpoint(out / 'code').name == 'step_00000002'
    run_local(replace(cfg, resume=True), tmp_path / 'cfg.yaml')
    assert [x['loss'] for x in _metrics(out)] == [x['loss'] for x in _metrics(straight)]
    assert not (ck / '.tmp-step_00000004').exists() or (ck / '.tmp-step_00000004' / 'trainer_state.json').exists() is False

def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(data, straight, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out, save_every=2)
    r = run_local(cfg, tmp_path / 'cfg.yaml', env=dict(STABLECODE_FAULT='kill_after_save:4'), check=False)
    assert r.returncode == -9 and [p.name for p in valid_checkpoints(out / 'code')] == ['step_00000002', 'step_00000004']
    states = sorted((out / 'code' / 'checkpoints' / 'step_00000004').rglob('*model_states.pt'))
    assert states
    states[0].write_bytes(states[0].read_bytes()[:1000])                       # truncated, as by a full disk
    r = run_local(replace(cfg, resume=True), tmp_path / 'cfg.yaml')
    assert 'cannot load' in r.stdout and "stage 'code': resuming at step 2" in r.stdout
    assert any(p.name.startswith('step_00000004.corrupt-') for p in (out / 'code' / 'checkpoints').iterdir())  # kept aside
    assert [x['loss'] for x in _metrics(out)] == [x['loss'] for x in _metrics(straight)]   # same result as never interrupted

def test_resume_with_another_world_size_is_refused_not_restarted(data, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out, steps=(4, 1), save_every=2)
    r = run_local(cfg, tmp_path / 'cfg.yaml', env=dict(STABLECODE_FAULT='kill_after_save:2'), check=False)
    assert r.returncode == -9
    r = run_local(replace(cfg, resume=True), tmp_path / 'cfg.yaml', nproc=2, check=False)
    assert r.returncode != 0 and 'was written by 1 processes and this launch has 2' in r.stderr
    assert [p.name for p in valid_checkpoints(out / 'code')] == ['step_00000002'] and len(_metrics(out)) == 2

def test_missing_stream_fails_before_any_work(data, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out)
    cfg = replace(cfg, stages=[replace(cfg.stages[0], data='cod'), cfg.stages[1]])
    r = run_local(cfg, tmp_path / 'cfg.yaml', check=False)
    assert r.returncode == 2 and "did not pack stream 'cod'" in r.stderr and 'code, long_context' in r.stderr
    assert not out.exists()

def test_two_processes_zero1_match_one_process(data, straight, tmp_path):
    "torchrun --nproc_per_node 2 (gloo, ZeRO-1, one micro-step each) vs one process (two micro-steps), same global batch."
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out, steps=(4, 1), save_every=0)
    r = run_local(cfg, tmp_path / 'cfg.yaml', nproc=2)
    one = _cfg(data, tmp_path / 'one', steps=(4, 1), save_every=0)
    run_local(one, tmp_path / 'one.yaml')
    two, single = _metrics(out), _metrics(tmp_path / 'one')
    assert [x['step'] for x in two] == [0, 1, 2, 3]
    summ = json.loads((out / 'summary.json').read_text())['stages'][0]
    assert summ['world_size'] == 2 and summ['grad_accum'] == 1
    assert json.loads((tmp_path / 'one' / 'summary.json').read_text())['stages'][0]['grad_accum'] == 2
    for a, b in zip(two, single):
        assert abs(a['loss'] - b['loss']) <= 1e-4 * abs(b['loss']), (a['loss'], b['loss'])
    assert two[-1]['loss'] != two[0]['loss']                                # it did train
    # ZeRO-1 splits the optimizer state: each rank saved its own partition
    parts = sorted(p.name for p in (out / 'code' / 'checkpoints').rglob('*optim_states.pt'))
    assert len(parts) == 2, parts

def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path):
    out = tmp_path / 'pretrain'
    cfg = _cfg(data, out, save_every=2)
    r = run_local(cfg, tmp_path / 'cfg.yaml', env=dict(STABLECODE_FAULT='nan_loss:5'), check=False)
    assert r.returncode == 3
    assert "loss is nan at step 5" in r.stderr and 'step_00000004' in r.stderr
    assert latest_checkpoint(out / 'code').name == 'step_00000004' and not (out / 'code' / 'hf').exists()

def test_real_divergence_is_caught(data, tmp_path):
    cfg = _cfg(data, tmp_path / 'pretrain', save_every=0)
    cfg = replace(cfg, stages=[replace(cfg.stages[0], lr=1e4, min_lr=1e3, warmup=0), cfg.stages[1]])
    r = run_local(cfg, tmp_path / 'cfg.yaml', check=False)
    assert r.returncode == 3 and 'loss is nan' in r.stderr and 'no checkpoint was written yet' in r.stderr

def test_indivisible_batch_rejected_before_any_work(data, tmp_path):
    with pytest.raises(ConfigError, match='not divisible by micro_batch 8 x seq_len 64'):
        TrainStage(name='x', init='scratch', steps=1, global_batch_tokens=1000, micro_batch=8).grad_accum(1, 64)
    out = tmp_path / 'pretrain'
    r = run_local(_cfg(data, out), tmp_path / 'cfg.yaml', env=dict(WORLD_SIZE='3'), check=False)
    assert r.returncode == 2 and 'x world size 3' in r.stderr
    assert not out.exists()                                                  # nothing was packed or trained
    lens = {n: p.seq_len for n, p in DATA_PRESETS('stable-code-3b').packs.items()}
    with pytest.raises(ConfigError, match='world size 3'): pretrain_preset('stable-code-3b').check_world(3, lens)

def test_activation_checkpointing_same_losses(data, straight, tmp_path):
    out = tmp_path / 'pretrain'
    run_local(_cfg(data, out, steps=(3, 1), save_every=0, activation_checkpointing=True), tmp_path / 'cfg.yaml')
    a, b = _metrics(straight)[:3], _metrics(out)
    assert [x['loss'] for x in b][0] == a[0]['loss']
    for x, y in zip(a, b): assert abs(x['loss'] - y['loss']) <= 1e-5 * abs(x['loss'])

def test_completed_stages_are_skipped_and_changed_ones_rerun(data, straight, tmp_path):
    import shutil
    out = tmp_path / 'pretrain'
    shutil.copytree(straight, out)
    cfg = _cfg(data, out, resume=True)
    r = run_local(cfg, tmp_path / 'cfg.yaml')
    assert r.stdout.count("': complete (") == 2 and _metrics(out) == _metrics(straight)
    cfg2 = replace(cfg, stages=[cfg.stages[0], replace(cfg.stages[1], steps=3)])
    r = run_local(cfg2, tmp_path / 'cfg.yaml')
    assert "stage 'code': complete" in r.stdout and len(_metrics(out, 'long_context')) == 3
    assert any(p.name.startswith('checkpoints.superseded-') for p in (out / 'long_context').iterdir())   # kept, not deleted

def test_bad_config_file_names_key_and_file(tmp_path):
    f = tmp_path / 'bad.yaml'
    f.write_text('stages: [{name: a, init: scratch, steps: 1, seq_len: 64}]\n')   # seq_len belongs to the data stage now
    r = subprocess.run([sys.executable, '-m', 'stablecode.pretrain', '--config', str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown key 'stages[0].seq_len'" in r.stderr and 'bad.yaml' in r.stderr
    f.write_bytes(b'stages: [{name: \xff}]\n')                                           # not UTF-8
    r = subprocess.run([sys.executable, '-m', 'stablecode.pretrain', '--config', str(f)], capture_output=True, text=True)
    assert r.returncode == 2 and 'bad.yaml' in r.stderr and 'UTF-8' in r.stderr and 'Traceback' not in r.stderr

def test_presets_parse_and_match_the_report():
    big, data = pretrain_preset('stable-code-3b'), DATA_PRESETS('stable-code-3b')
    code, long = big.stages
    dcode, dlong = data.packs[code.stream], data.packs[long.stream]
    assert big.precision == 'bf16' and big.zero_stage == 1 and big.model == 'stable-code-3b'
    assert code.init == 'stabilityai/stablelm-3b-4e1t' and long.init == 'previous'
    assert code.global_batch_tokens == long.global_batch_tokens == 4_194_304
    assert dcode.seq_len == 4096 and dcode.fim_rate > 0
    assert dlong.seq_len == 16_384 and long.rope_theta == 1_000_000.0 and dlong.fim_scope == 'file' and dlong.fim_rate > 0
    assert dlong.group_by == 'repository'
    assert big.check_world(256, {n: p.seq_len for n, p in data.packs.items()}) == {'code': 1, 'long_context': 1}
    tiny, tdata = pretrain_preset('tiny'), DATA_PRESETS('tiny')
    assert [s.init for s in tiny.stages] == ['scratch', 'previous'] and tiny.stages[1].rope_theta == 1_000_000.0
    assert tdata.packs['long_context'].seq_len > tdata.packs['code'].seq_len and tdata.packs['long_context'].fim_scope == 'file'
    assert sum(s.total_steps * s.global_batch_tokens for s in tiny.stages) < 2_000_000     # minutes on 2 cores
    with pytest.raises(ConfigError, match='first stage'): pretrain_preset('tiny', stages=[dict(name='a', steps=1)])

def test_synthetic_infilling_holes_are_determined():
    for d in synthetic_infilling(50, seed=3):
        assert d['prefix'] + d['middle'] + d['suffix'] == d['text']
        op = d['prefix'].rsplit('def ', 1)[1].split('(')[0]
        assert d['middle'] == f" x {_OPS[op]} y" and d['prefix'].endswith('return')
