"""PanGu-Coder2's run (`papermill_runs/pangu-coder2-rrtf.yaml`): the YAML against the preset it names (the paper's
values, every key steering something), its `--dry-run` (the vLLM servers to start and the DeepSpeed command line), and
its rehearsal end to end (`--rehearse`): the rrtf stage through the same notebook, entry point and `deepspeed`
launcher (two CPU processes), changed only by the YAML's `rehearsal` section."""
import json, os, re, subprocess, sys
from pathlib import Path

import nbformat
import pytest
import yaml

from stablecode.config import Presets
from stablecode.rrtf import RRTF_PRESETS
from stablecode.run import STAGE_CONFIGS, build_stage_config, load_run, check_notebooks, check_inputs, check_configs

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT/'papermill_runs'/'pangu-coder2-rrtf.yaml'
CLI = str(Path(sys.executable).parent/'stablecode')


def _run_cells() -> str:
    "The code of the rrtf notebook's run section (after its parameters cell)."
    nb = nbformat.read(str(ROOT/'nbs'/'13_rrtf.ipynb'), as_version=4)
    k = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
    return '\n'.join(c.source for c in nb.cells[k + 1:] if c.cell_type == 'code')


def test_the_yaml_is_the_preset_with_the_papers_values_and_every_key_steers_something():
    r = load_run(YAML)
    check_notebooks(r); check_inputs(r, r.config.stages); check_configs(r, r.config.stages)   # no SFT stage needed
    (s,) = r.config.stages
    b = STAGE_CONFIGS[s.notebook][0]
    cfg = build_stage_config(b, s.parameters, ROOT/'nbs')
    assert s.parameters['teachers'] == ['Qwen/Qwen2.5-Coder-32B-Instruct@http://teacher:8000/v1']   # set by its server
    assert s.parameters['student_server'] == 'bigcode/starcoder@http://student:8001/v1'
    assert cfg == RRTF_PRESETS('pangu-coder2', teachers=s.parameters['teachers'])   # the preset, teachers as the YAML says
    assert (cfg.model, cfg.global_batch, cfg.epochs, cfg.problems) == ('bigcode/starcoder', 512, 6, 'evolved')  # REFERENCE §5
    assert [x.name for x in cfg.sources] == ['code_alpaca'] and r.config.launch.world_size == 64
    code = _run_cells()
    for k, v in s.parameters.items():              # each parameter is read by the stage's code ...
        assert re.search(rf'\b{k}\b', code), f"parameter {k!r} is read nowhere in the run section"
        if k in b.overrides:                       # ... and one that overrides the preset changes the config when set
            other = {'max_steps': 7, 'global_batch': 64, 'n_seeds': 3, 'teachers': ['x@http://other:1/v1']}[k]
            assert build_stage_config(b, {**s.parameters, k: other}, ROOT/'nbs') != cfg, k
    assert build_stage_config(b, {**s.parameters, 'preset_name': 'tiny'}, ROOT/'nbs') != cfg
    rehearsal = yaml.safe_load(YAML.read_text())['rehearsal']['parameters']['rrtf']
    assert set(rehearsal) <= set(s.parameters) | {'max_problems'}     # the overlay only changes declared parameters


def test_dry_run_prints_the_servers_and_the_deepspeed_command():
    p = subprocess.run([CLI, 'run', str(YAML), '--dry-run'], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [l.strip() for l in p.stdout.splitlines()]
    servers = [l for l in lines if l.startswith('[server]')]     # the teacher's server once, though it serves two parameters
    assert servers == ['[server] student: vllm serve bigcode/starcoder --host 0.0.0.0 --port 8001',
                       '[server] teacher: vllm serve Qwen/Qwen2.5-Coder-32B-Instruct --host 0.0.0.0 --port 8000'], servers
    ds = [l for l in lines if l.startswith('[dry-run] deepspeed')]
    assert len(ds) == 1 and '--num_nodes 8 --num_gpus 8' in ds[0] and '--module stablecode.rrtf' in ds[0]
    assert not (ROOT/'papermill_runs'/'pangu-coder2-rrtf').exists()           # nothing ran


@pytest.fixture(scope='module')
def rehearsal(tmp_path_factory):
    d = tmp_path_factory.mktemp('rehearse-rrtf')
    r = subprocess.run([CLI, 'run', str(YAML), '--rehearse', '--no-progress', '--run-dir', str(d/'run')], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    return d/'run'


def test_the_rehearsal_ran_the_stage_through_deepspeed_with_the_funnel(rehearsal):
    m = json.loads((rehearsal/'manifest.json').read_text())
    assert m['status'] == 'done' and list(m['stages']) == ['rrtf'] and m['run'] == 'pangu-coder2-rrtf-rehearsal'
    assert m['rehearsal']['parameters']['rrtf']['tiny_student'] is True                   # the overlay is recorded
    assert 'deepspeed' in (rehearsal/'rrtf'/'launch.log').read_text()
    s = json.loads((rehearsal/'rrtf'/'summary.json').read_text())
    assert s['world_size'] == 2 and s['steps'] == 2 and s['data']['rows'] >= 1, s        # ZeRO-1 over two CPU processes
    ev = json.loads((rehearsal/'rrtf'/'evidence.json').read_text())
    tested = [json.loads(l) for l in (rehearsal/'rrtf'/'teacher_tests.jsonl').read_text().splitlines()]
    f = ev['funnel']                                                                       # the real counts, consistent
    assert f['evolution attempts'] == 5 and f['evolved problems kept'] == len(tested) == ev['teacher_tests']['problems']
    assert f['with valid tests'] == sum(t['why'] is None for t in tested) >= f['ranked'] >= f['trained on']
    assert s['data']['tasks'].get('evol', 0) == f['trained on']
    assert 'PanGu-Coder2 15B (paper) | HumanEval pass@1 (%) | n=200, T=0.2 | 61.64' in (rehearsal/'rrtf'/'results.md').read_text()
    assert (rehearsal/'rrtf'/'hf'/'chat_template.jinja').exists() and (rehearsal/'rrtf'/'funnel.png').exists()
