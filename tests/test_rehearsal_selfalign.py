"""StarCoder2-15B-Instruct's self-alignment run (`papermill_runs/starcoder2-15b-instruct-selfalign.yaml`): its keys,
its dry run (the vLLM server's and the SFT's command lines) and its rehearsal (`stablecode run ... --rehearse`): both
stages of the shipped YAML, through the same notebooks, changed only by the YAML's `rehearsal` section (no server: a
random tiny model in process; the tiny mixture's standard-library files instead of The Stack)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import yaml

from stablecode.data import FULL_DECONT, load_mixture
from stablecode.run import build_stage_config, check_configs, check_inputs, check_notebooks, cli, load_run, STAGE_CONFIGS

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT/'papermill_runs'/'starcoder2-15b-instruct-selfalign.yaml'
NOISE = ('IProgress', 'get_accelerator', 'Failed to load', '_pytree', 'Missing packages')


def test_every_key_of_the_yaml_steers_something():
    r = load_run(YAML)                                              # strict: an unknown key anywhere is an error
    check_notebooks(r); check_inputs(r, r.config.stages); check_configs(r, r.config.stages)   # every parameter declared
    data, sa = r.config.stages
    assert (data.name, sa.name, sa.module) == ('data', 'self_align', 'stablecode.self_align')
    mix = load_mixture(ROOT/'nbs'/data.parameters['mixture'])       # The Stack v1's Python, decontaminated like the rest
    assert [(s.dataset, s.subsets, s.language) for s in mix.sources] == [('bigcode/the-stack', ['data/python'], 'python')]
    assert mix.decontamination.extra == FULL_DECONT
    (srv,) = sa.servers
    assert (srv.engine, srv.model, srv.parameter) == ('vllm', sa.parameters['base_model'], 'base_url')   # one model
    assert sa.parameters['base_url'] == 'http://gen:8000/v1'        # set by the server entry, not typed twice
    p = sa.parameters                                               # REFERENCE §4: 10 samples at T 0.7, the filter
    assert (p['n_samples'], p['temperature'], p['judge'], p['seed_corpus'], p['max_seeds']) == (10, 0.7, 'filter', 'data/corpus', None)
    rec = build_stage_config(STAGE_CONFIGS['nbs/12_self_align.ipynb'][0], p, ROOT/'nbs')
    assert (rec.lr, rec.epochs, rec.global_batch, rec.schedule, rec.warmup, rec.max_length, rec.prompt_format) == (
        1e-5, 4, 64, 'linear', 0.05, 1280, 'self_oss') and rec.model == 'bigcode/starcoder2-15b'
    lc = r.config.stage_launch('self_align')
    assert rec.global_batch % (rec.micro_batch * lc.world_size) == 0    # 64 = 2 x 8 GPUs x 4 accumulation steps
    h = load_run(YAML, rehearse=True)                               # the rehearsal: no server, its parameter back to
    check_notebooks(h); check_configs(h, h.config.stages)           # the notebook's default (the model in process)
    assert h.config.stages[1].servers == [] and 'base_url' not in h.config.stages[1].parameters


def test_a_bad_preset_name_fails_before_any_stage(tmp_path):
    full = yaml.safe_load(YAML.read_text())
    full['stages'][1]['parameters']['preset_name'] = 'starcoder2-15b-instrukt'
    y = tmp_path/'bad.yaml'; y.write_text(yaml.safe_dump(full))
    assert cli([str(y), '--dry-run']) == 1 and not (tmp_path/full['name']).exists()


def test_dry_run_prints_the_server_and_the_training_command_lines(capsys):
    assert cli([str(YAML), '--dry-run']) == 0
    out = capsys.readouterr().out
    assert '[server] gen: vllm serve bigcode/starcoder2-15b --host 0.0.0.0 --port 8000 --dtype bfloat16' in out
    assert '[dry-run] deepspeed --num_nodes 1 --num_gpus 8 --master_port 29500 --no_local_rank --module stablecode.self_align' in out
    assert '"base_url": "http://gen:8000/v1"' in out


@pytest.fixture(scope='module')
def rehearsal(tmp_path_factory):
    d = tmp_path_factory.mktemp('rehearse-selfalign')
    r = subprocess.run([str(Path(sys.executable).parent/'stablecode'), 'run', str(YAML), '--rehearse', '--no-progress',
                        '--run-dir', str(d/'run')], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return d/'run', r


def test_both_stages_ran_with_the_overlay_recorded(rehearsal):
    run_dir, r = rehearsal
    m = json.loads((run_dir/'manifest.json').read_text())
    assert m['status'] == 'done' and list(m['stages']) == ['data', 'self_align']
    assert m['run'] == 'starcoder2-15b-instruct-selfalign-rehearsal' and m['rehearsal']['parameters']['self_align']['base_model'] is None
    assert 'base_url' not in m['stages']['self_align']['parameters'] and 'expects a server' not in r.stdout + r.stderr


def test_seeds_came_from_the_data_stage_corpus_through_every_step(rehearsal):
    run_dir, _ = rehearsal
    f = json.loads((run_dir/'self_align'/'funnel.json').read_text())
    assert f['random_model'] and [c['step'] for c in f['steps']] == ['candidates', 'seeds', 'docstrings', 'instructions',
                                                                      'responses', 'execution', 'selection', 'final']
    cand, seeds = f['steps'][0], f['steps'][1]
    assert cand['n_in'] == 30 and cand['n_out'] == seeds['n_in'] > 0 and 1 <= seeds['n_out'] <= 2   # max_seeds: 2
    corpus_ids = {json.loads(l)['id'] for p in (run_dir/'data'/'corpus').glob('*.jsonl.gz')
                  for l in __import__('gzip').open(p, 'rt')}
    rows = [json.loads(l) for l in (run_dir/'self_align'/'seeds.jsonl').read_text().splitlines()]
    assert rows and all(x['path'] in corpus_ids for x in rows)         # the data stage's documents, by their ids
    # a random model writes no instruction: nothing passes, and the stage says so instead of training
    assert f['pairs'] == 0 and not (run_dir/'self_align'/'summary.json').exists()


def test_the_stage_kernels_open_without_third_party_noise(rehearsal):
    run_dir, _ = rehearsal
    for nb in ('04_packing.ipynb', '12_self_align.ipynb'):
        cells = [c for c in json.loads((run_dir/nb).read_text())['cells'] if c['cell_type'] == 'code']
        # the module line, the hidden quieting cell, the imports: what a reader sees first
        first = ''.join(''.join(o.get('text', '')) for c in cells[:3] for o in c['outputs'])
        assert not [w for w in NOISE if w in first], (nb, first[:500])
