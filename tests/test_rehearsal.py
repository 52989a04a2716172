"""The full-scale run rehearsed on this machine (`stablecode run papermill_runs/stable-code-3b-a100x256.yaml
--rehearse`): every stage of the shipped YAML, through the same notebooks, entry points and the `deepspeed` launcher
(two CPU processes), changed only by the YAML's `rehearsal` section. The data stage's packing steers training: the
rehearsal here also shortens the `code` stream to 64 tokens, and the trainer's batches follow."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def rehearsal(tmp_path_factory):
    d = tmp_path_factory.mktemp('rehearse')
    full = yaml.safe_load((ROOT/'papermill_runs'/'stable-code-3b-a100x256.yaml').read_text())
    full['rehearsal']['parameters']['data']['packs'] = {'code': {'seq_len': 64}}     # a data-stage setting
    y = ROOT/'papermill_runs'/'.test-rehearsal.yaml'                                 # beside the shipped YAMLs (same root)
    y.write_text(yaml.safe_dump(full, sort_keys=False))
    try:
        r = subprocess.run([str(Path(sys.executable).parent/'stablecode'), 'run', str(y), '--rehearse', '--no-progress',
                            '--run-dir', str(d/'run')], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=1500)
    finally: y.unlink()
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return d/'run', r


def test_every_stage_of_the_full_scale_yaml_ran(rehearsal):
    run_dir, r = rehearsal
    m = json.loads((run_dir/'manifest.json').read_text())
    assert m['status'] == 'done' and list(m['stages']) == ['data', 'pretrain', 'sft', 'dpo', 'eval', 'quantize']
    assert m['run'] == 'stable-code-3b-a100x256-rehearsal' and m['rehearsal']['launch']['launcher'] == 'deepspeed'
    assert m['rehearsal']['parameters']['pretrain']['preset_name'] == 'tiny'                # the overlay is recorded
    assert all(st['status'] == 'done' for st in m['stages'].values())


def test_sft_and_dpo_went_through_deepspeed_and_left_chat_checkpoints(rehearsal):
    run_dir, _ = rehearsal
    for stage in ('sft', 'dpo'):
        s = json.loads((run_dir/stage/'summary.json').read_text())
        assert s['world_size'] == 2 and s['steps'] == 2, s                       # two DeepSpeed CPU processes, ZeRO-1
        assert (run_dir/stage/'hf'/'chat_template.jinja').exists()
    assert json.loads((run_dir/'dpo'/'summary.json').read_text())['data']['pairs']['kept'] >= 1


def test_pretraining_went_through_deepspeed_with_two_processes(rehearsal):
    run_dir, _ = rehearsal
    log = (run_dir/'pretrain'/'launch.log').read_text()
    assert 'deepspeed.launcher.launch' in log                      # DeepSpeed's own launcher started the two ranks
    s = json.loads((run_dir/'pretrain'/'summary.json').read_text())['stages']
    assert [x['stage'] for x in s] == ['code', 'long_context'] and all(x['world_size'] == 2 for x in s)
    parts = sorted(p.name for p in (run_dir/'pretrain'/'code'/'checkpoints').rglob('*optim_states.pt'))
    assert len(parts) == 2                                                                   # ZeRO-1 over two ranks


def test_the_data_stage_owns_the_sequence_length(rehearsal):
    run_dir, _ = rehearsal
    s = {x['stage']: x for x in json.loads((run_dir/'pretrain'/'summary.json').read_text())['stages']}
    # the data stage packed `code` at 64 tokens (the preset says 128): 4,096 tokens per step = 16 x 64 x 2 ranks x 2
    assert s['code']['seq_len'] == 64 and s['code']['grad_accum'] == 2
    assert s['long_context']['seq_len'] == 512 and s['long_context']['grad_accum'] == 1
    data = json.loads((run_dir/'data'/'manifest.json').read_text())
    assert data['streams']['code']['seq_len'] == 64 and Path(s['code']['packed']).name == data['hashes']['packs']['code']


def test_evaluation_ran_on_the_final_checkpoint(rehearsal):
    run_dir, _ = rehearsal
    res = json.loads((run_dir/'eval'/'results.json').read_text())
    he = res['tasks']['humaneval']
    assert len(he['per_problem']) == 4 and all(p['n'] == 2 for p in he['per_problem'])      # the overlay's 4 x 2 samples
    assert res['model'].endswith('pretrain/long_context/hf')                                 # the rehearsed model
    sql = json.loads((run_dir/'eval'/'sql'/'sql_results.json').read_text())                 # the instruction model's SQL:
    assert (sql['dataset'], sql['engine'], sql['questions']) == ('offline bookshop set', 'sqlite', 30)   # the overlay's
    assert sum(sql['outcomes'].values()) == 30 and sql['model'] == 'dpo/hf'                  # offline set, every answer scored
    assert 'SQLCoder 7B (card)' in (run_dir/'eval'/'sql'/'sql_results.md').read_text()
    mt = json.loads((run_dir/'eval'/'mt_bench'/'mt_bench.json').read_text())                 # MT-Bench coding on the offline
    assert mt['task'] == 'mt-bench-coding' and mt['judgments'] == 2 * mt['questions'] == 6   # sample, the model judging
    assert 'self-judge stand-in' in mt['judge'] and len((run_dir/'eval'/'mt_bench'/'judgment.jsonl').read_text().splitlines()) == 6


# StableCode alpha's run rehearsed the same way: its YAML's own `rehearsal` section, nothing changed here (the
# `tiny-alpha` GPT-NeoX model, 2 + 1 steps over two DeepSpeed CPU processes, two HumanEval problems, its GGUF and CT2).
@pytest.fixture(scope='module')
def alpha_rehearsal(tmp_path_factory):
    d = tmp_path_factory.mktemp('rehearse-alpha')
    r = subprocess.run([str(Path(sys.executable).parent/'stablecode'), 'run',
                        str(ROOT/'papermill_runs'/'stablecode-alpha-a100x256.yaml'), '--rehearse', '--no-progress',
                        '--run-dir', str(d/'run')], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=1500)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return d/'run'


def test_the_alpha_yaml_rehearses_its_gpt_neox_model_end_to_end(alpha_rehearsal):
    run_dir = alpha_rehearsal
    m = json.loads((run_dir/'manifest.json').read_text())
    assert m['status'] == 'done' and list(m['stages']) == ['data', 'pretrain', 'eval', 'quantize']   # no instruct stages
    assert m['run'] == 'stablecode-alpha-a100x256-rehearsal' and m['rehearsal']['parameters']['pretrain']['preset_name'] == 'tiny-alpha'
    assert 'deepspeed.launcher.launch' in (run_dir/'pretrain'/'launch.log').read_text()
    s = json.loads((run_dir/'pretrain'/'summary.json').read_text())['stages']
    assert [(x['stage'], x['steps'], x['world_size'], x['rope_theta']) for x in s] == [
        ('code', 2, 2, 10_000.0), ('long_context', 1, 2, 10_000.0)]                       # rope base 10,000 in both
    conf = json.loads((run_dir/'pretrain'/'long_context'/'hf'/'config.json').read_text())
    assert conf['model_type'] == 'gpt_neox' and conf['architectures'] == ['GPTNeoXForCausalLM']
    res = json.loads((run_dir/'eval'/'results.json').read_text())
    assert res['model'].endswith('pretrain/long_context/hf') and len(res['tasks']['humaneval']['per_problem']) == 2
    q = json.loads((run_dir/'quantize'/'quantize.json').read_text())              # the GPT-NeoX model's exports
    rows = {r['format']: r for r in q['rows']}
    assert list(rows) == ['hf:fp32', 'gguf:f16', 'gguf:q4_k_m', 'ct2:int8'] and q['source'].endswith('pretrain/long_context/hf')
    assert rows['gguf:f16']['top1_agree'] > 0.95 and all('pass@1 humaneval' in r for r in rows.values())
