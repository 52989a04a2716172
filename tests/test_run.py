"""The papermill runner end to end: skip/resume/force/--from/--only, failing cells, manifests, launch dry-runs, and the
run presets under papermill_runs/."""
import json, os, shlex, shutil, sys, warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from stablecode.config import ConfigError
from stablecode.eval import judge_backend
from stablecode.run import (LaunchConfig, LaunchError, RunConfig, StageFailed, check_inputs, check_notebooks, cli,
                            launch, launch_commands, launch_stage, load_run, plan, read_hostfile, run, stage_hashes,
                            write_hostfile)

ROOT = Path(__file__).resolve().parents[1]


def stage_nb(path, *cells, params="run_dir = ''\nn = 1"):
    nb = new_notebook(cells=[new_code_cell(params, metadata={'tags': ['parameters']})] +
                      [c if not isinstance(c, str) else new_code_cell(c) for c in cells])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, str(path))


WRITE_A = ("from pathlib import Path\nd = Path(run_dir)/'a'; d.mkdir(exist_ok=True)\n"
           "(d/'out.txt').write_text(str(n * 2))\nprint('A wrote', n * 2)")
READ_B = ("from pathlib import Path\nv = int((Path(run_dir)/'a'/'out.txt').read_text())\n"
          "d = Path(run_dir)/'b'; d.mkdir(exist_ok=True)\n(d/'out.txt').write_text(str(v + 1))\n"
          "(d/'data-manifest.json').write_text('{\"shards\": 1}')")


@pytest.fixture
def two_stages(tmp_path):
    stage_nb(tmp_path/'a.ipynb', WRITE_A)
    stage_nb(tmp_path/'b.ipynb', READ_B)
    y = tmp_path/'demo.yaml'
    y.write_text("description: two stages\nstages:\n  - name: a\n    notebook: a.ipynb\n    parameters: {n: 20}\n"
                 "  - name: b\n    notebook: b.ipynb\n")
    return y


def stage_json(y, name): return json.loads((y.parent/y.stem/name/'stage.json').read_text())


def test_one_notebook_as_several_stages(tmp_path):
    "A study runs one notebook once per seed: each stage gets its name, writes its own directory and executed notebook."
    stage_nb(tmp_path/'m.ipynb', "from pathlib import Path\nd = Path(run_dir)/stage_name; d.mkdir(exist_ok=True)\n"
             "(d/'seed.txt').write_text(str(seed))", params="run_dir = ''\nstage_name = 'm'\nseed = 0")
    y = tmp_path/'study.yaml'
    y.write_text("stages:\n" + ''.join(f"  - {{name: m-seed{k}, notebook: m.ipynb, parameters: {{seed: {k}}}}}\n" for k in range(3)))
    run(y, progress=False)
    rd = tmp_path/'study'
    assert [(rd/f'm-seed{k}'/'seed.txt').read_text() for k in range(3)] == ['0', '1', '2']
    assert sorted(p.name for p in rd.glob('*.ipynb')) == [f'm.m-seed{k}.ipynb' for k in range(3)]
    assert stage_json(y, 'm-seed1')['parameters'] == {'run_dir': str(rd), 'stage_name': 'm-seed1', 'seed': 1}


def test_run_skip_rerun_and_manifest(two_stages):
    y, rd = two_stages, two_stages.parent/'demo'
    m = run(y, progress=False)
    assert (rd/'a'/'out.txt').read_text() == '40' and (rd/'b'/'out.txt').read_text() == '41'
    # executed notebooks, with the injected parameters and the cell output
    ex = nbformat.read(str(rd/'a.ipynb'), as_version=4)
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in ex.cells)
    assert 'A wrote 40' in json.dumps(ex.cells[-1].outputs)
    # run manifest
    mf = json.loads((rd/'manifest.json').read_text())
    assert mf == json.loads(json.dumps(m, default=str))
    assert mf['status'] == 'done' and mf['run'] == 'demo'
    assert set(mf['config_hashes']) == {'a', 'b'} and set(mf['timings']) == {'a', 'b'}
    assert all(isinstance(t, float) and t > 0 for t in mf['timings'].values())
    assert mf['packages']['papermill'] and mf['packages']['python']
    assert 'sha' in mf['git'] and 'dirty' in mf['git']
    assert mf['artifacts'] == ['a/out.txt', 'b/data-manifest.json', 'b/out.txt']
    assert list(mf['data_manifests']) == ['b/data-manifest.json'] and len(mf['data_manifests']['b/data-manifest.json']) == 64
    # stage manifest
    sa = stage_json(y, 'a')
    assert sa['status'] == 'done' and sa['config_hash'] == mf['config_hashes']['a']
    assert sa['parameters'] == {'run_dir': str(rd), 'n': 20} and sa['attempts'] == 1
    assert sa['artifacts'] == [{'path': 'a/out.txt', 'bytes': 2,
                                'sha256': 'd59eced1ded07f84c145592f65bdf854358e009c5cd705f5215bf18697fed103'}]
    # a second run skips both (nothing executed again)
    mtime = (rd/'a.ipynb').stat().st_mtime_ns
    assert [p['action'] for p in plan(y)] == ['skip (done, same config)'] * 2
    run(y, progress=False)
    assert (rd/'a.ipynb').stat().st_mtime_ns == mtime and stage_json(y, 'a')['started'] == sa['started']
    # changing stage a's parameters changes both hashes (chained): both run again, old results moved aside
    h0 = stage_hashes(load_run(y).config)
    y.write_text(y.read_text().replace('n: 20', 'n: 5'))
    h1 = stage_hashes(load_run(y).config)
    assert h0['a'] != h1['a'] and h0['b'] != h1['b']
    run(y, progress=False)
    assert (rd/'b'/'out.txt').read_text() == '11'
    assert (rd/f"a.old-{h0['a']}"/'out.txt').read_text() == '40'


def test_only_from_force(two_stages):
    y, rd = two_stages, two_stages.parent/'demo'
    with pytest.raises(StageFailed, match="FileNotFoundError"):  # b alone: a's artifact is missing
        run(y, only='b', progress=False)
    run(y, only='a', progress=False)
    assert not (rd/'b'/'out.txt').exists() and stage_json(y, 'a')['status'] == 'done'
    run(y, from_stage='b', progress=False)
    assert (rd/'b'/'out.txt').read_text() == '41'
    assert stage_json(y, 'b')['attempts'] == 2          # the failed attempt, then the resumed one
    t_a = stage_json(y, 'a')['started']
    run(y, only='b', force=True, progress=False)
    assert stage_json(y, 'a')['started'] == t_a
    assert stage_json(y, 'b')['status'] == 'done' and any(p.name.startswith('b.old-') for p in rd.iterdir())
    with pytest.raises(ConfigError, match="no stage 'zz'"):
        run(y, only='zz', progress=False)


def test_failing_cell_stops_the_run_and_keeps_outputs(tmp_path):
    stage_nb(tmp_path/'a.ipynb', WRITE_A)
    stage_nb(tmp_path/'boom.ipynb', new_markdown_cell('a markdown cell'), "print('before the failure')",
             "# the failing cell\nraise ValueError('tokenizer shard 3 is empty')", "print('never runs')")
    stage_nb(tmp_path/'c.ipynb', "open(run_dir + '/c.txt', 'w').write('c')")
    y = tmp_path/'r.yaml'
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb}\n  - {name: boom, notebook: boom.ipynb}\n"
                 "  - {name: c, notebook: c.ipynb}\n")
    rd = tmp_path/'r'
    with pytest.raises(StageFailed) as ei:
        run(y, progress=False)
    msg = str(ei.value)
    assert "stage 'boom' failed: ValueError: tokenizer shard 3 is empty" in msg
    assert str(rd/'boom.ipynb') in msg and '# the failing cell' in msg and 'In [4]' in msg
    # earlier stage kept, later stage not run, the failing notebook keeps the outputs before the failure
    assert (rd/'a'/'out.txt').read_text() == '2' and not (rd/'c.txt').exists()
    ex = json.dumps(nbformat.read(str(rd/'boom.ipynb'), as_version=4).cells)
    assert 'before the failure' in ex and 'tokenizer shard 3 is empty' in ex and 'never runs\\n' not in ex
    assert stage_json(y, 'boom')['status'] == 'failed' and 'In [4]' in stage_json(y, 'boom')['error']
    mf = json.loads((rd/'manifest.json').read_text())
    assert mf['status'] == 'failed' and mf['stages']['a']['status'] == 'done'
    # the CLI reports the same without a traceback, exit code 1
    assert cli([str(y), '--no-progress']) == 1
    # fixed: the run resumes at the failed stage, the completed one is skipped
    stage_nb(tmp_path/'boom.ipynb', "print('fixed')")
    a_started = stage_json(y, 'a')['started']
    m = run(y, progress=False)
    assert m['status'] == 'done' and (rd/'c.txt').read_text() == 'c' and stage_json(y, 'a')['started'] == a_started


def test_config_errors_name_key_and_file(tmp_path):
    stage_nb(tmp_path/'a.ipynb', WRITE_A)
    y = tmp_path/'bad.yaml'
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb, paramters: {n: 1}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'stages\[0\]\.paramters'|'stages\[0\]\.paramters'.*"):
        load_run(y)
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb, parameters: {m: 1}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: stage 'a': unknown parameter 'm' for a\.ipynb \(declared: n, run_dir\)"):
        run(y, progress=False)
    assert not (tmp_path/'bad'/'a').exists()                 # nothing executed
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb}\n  - {name: a, notebook: a.ipynb}\n")
    with pytest.raises(ConfigError, match="'a' is used twice"): load_run(y)
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb, parameters: {run_dir: x}}\n")
    with pytest.raises(ConfigError, match="set by the runner"): load_run(y)
    y.write_text("stages:\n  - {name: a, notebook: a.ipynb, parameters: {stage_name: x}}\n")
    with pytest.raises(ConfigError, match="'stage_name' is set by the runner"): load_run(y)
    y.write_text("launch: {nodes: 2, gpus_per_node: 8}\nstages:\n  - {name: a, notebook: a.ipynb}\n")
    with pytest.raises(ConfigError, match="need a 'hostfile'"): load_run(y)
    y.write_text("stages:\n  - {name: a, notebook: nope.ipynb}\n")
    with pytest.raises(ConfigError, match="nope.ipynb does not exist"): run(y, progress=False)


def test_launch_commands_exact(tmp_path):
    hf = write_hostfile([f"node{i}" for i in range(4)], 8, tmp_path/'hostfile')
    assert read_hostfile(hf) == [(f"node{i}", 8) for i in range(4)]
    ds = LaunchConfig(nodes=4, gpus_per_node=8, hostfile=str(hf), master_port=29600)
    assert launch_commands(ds, 'stablecode.pretrain', 'cfg.yaml') == [[
        'deepspeed', '--hostfile', str(hf), '--num_nodes', '4', '--num_gpus', '8', '--master_port', '29600',
        '--no_local_rank', '--module', 'stablecode.pretrain', '--config', 'cfg.yaml']]
    tr = LaunchConfig(launcher='torchrun', nodes=4, gpus_per_node=8, hostfile=str(hf))
    cmds = launch_commands(tr, 'stablecode.sft', 'c.yaml')
    assert len(cmds) == 4 and cmds[3] == ['torchrun', '--nnodes', '4', '--nproc_per_node', '8', '--node_rank', '3',
                                          '--master_addr', 'node0', '--master_port', '29500', '-m', 'stablecode.sft',
                                          '--config', 'c.yaml']
    one = LaunchConfig(launcher='torchrun', gpus_per_node=2, accelerator='cpu')
    assert launch_commands(one, 'm', 'c.yaml') == [['torchrun', '--standalone', '--nnodes', '1', '--nproc_per_node', '2',
                                                    '-m', 'm', '--config', 'c.yaml']]
    # a hostfile that does not match the launch is refused before anything starts
    bad = write_hostfile(['n0', 'n1'], 4, tmp_path/'small')
    with pytest.raises(ConfigError, match='2 hosts listed, the launch needs 4'):
        launch(LaunchConfig(nodes=4, gpus_per_node=8, hostfile=str(bad)), 'm', 'c.yaml', dry_run=False)
    (tmp_path/'broken').write_text('node0 slots=8\nnode1 8\n')
    with pytest.raises(ConfigError, match=r"broken:2: expected 'HOST slots=N'"): read_hostfile(tmp_path/'broken')
    # the launch holds processes and hosts only: ZeRO stage, precision and batch belong to the stage's own config
    with pytest.raises(ConfigError, match="unknown key 'zero_stage'"): LaunchConfig.from_dict(dict(zero_stage=1))


def test_launch_dry_run_and_real(tmp_path, capsys, monkeypatch):
    mod = tmp_path/'mods'; mod.mkdir()
    (mod/'fakestage.py').write_text(
        "import sys, pathlib\nassert sys.argv[1] == '--config'\ncfg = pathlib.Path(sys.argv[2])\n"
        "print('training with', cfg.read_text().strip())\n(cfg.parent/'done.txt').write_text('ok')\n"
        "sys.exit(3 if 'fail' in cfg.read_text() else 0)\n")
    lc = LaunchConfig(launcher='python', env={'PYTHONPATH': str(mod)})
    (tmp_path/'config.yaml').write_text('steps: 1\n')
    # dry run prints, runs nothing
    lines = launch(lc, 'fakestage', tmp_path/'config.yaml', dry_run=True)
    assert lines == [f"PYTHONPATH={shlex.quote(str(mod))} {shlex.join([sys.executable, '-m', 'fakestage', '--config', str(tmp_path/'config.yaml')])}"]
    assert '[dry-run] PYTHONPATH=' in capsys.readouterr().out and not (tmp_path/'done.txt').exists()
    monkeypatch.setenv('STABLECODE_DRY_RUN', '1')
    launch(lc, 'fakestage', tmp_path/'config.yaml')
    assert not (tmp_path/'done.txt').exists()
    monkeypatch.delenv('STABLECODE_DRY_RUN')
    # real launch: the process runs, its output goes to the log
    launch(lc, 'fakestage', tmp_path/'config.yaml', log_file=tmp_path/'launch.log')
    assert (tmp_path/'done.txt').read_text() == 'ok' and 'training with steps: 1' in (tmp_path/'launch.log').read_text()
    (tmp_path/'config.yaml').write_text('fail: true\n')
    with pytest.raises(LaunchError, match='exited with code 3'):
        launch(lc, 'fakestage', tmp_path/'config.yaml', log_file=tmp_path/'launch.log')
    # launch_stage inside a run: writes the stage config and uses the run's launch section
    (tmp_path/'run').mkdir()
    RunConfig.from_dict({'launch': {'launcher': 'python', 'env': {'PYTHONPATH': str(mod)}},
                         'stages': [{'name': 'pre', 'notebook': 'x.ipynb', 'module': 'fakestage'}]}).to_yaml(tmp_path/'run'/'run.yaml')
    lines = launch_stage(tmp_path/'run', 'pre', {'steps': 7})
    assert 'fakestage --config' in lines[0] and (tmp_path/'run'/'pre'/'done.txt').exists()
    assert 'training with steps: 7' in (tmp_path/'run'/'pre'/'launch.log').read_text()


def test_full_scale_dry_run_prints_deepspeed(capsys):
    y = ROOT/'papermill_runs'/'stable-code-3b-a100x256.yaml'
    assert cli([str(y), '--dry-run']) == 0
    out = capsys.readouterr().out
    cfg_file = ROOT/'papermill_runs'/'stable-code-3b-a100x256'/'pretrain'/'config.yaml'
    want = shlex.join(['deepspeed', '--hostfile', '/job/hostfile', '--num_nodes', '32', '--num_gpus', '8',
                       '--master_port', '29500', '--no_local_rank', '--module', 'stablecode.pretrain',
                       '--config', str(cfg_file)])
    assert f"[dry-run] {want}" in out
    assert not (ROOT/'papermill_runs'/'stable-code-3b-a100x256').exists()   # a dry run writes nothing


def _check_alignment_stages(run, st):
    "The SFT and DPO stages name presets that exist, validate, and whose global batch divides over the stage's launch."
    from stablecode.dpo import dpo_preset
    from stablecode.sft import grad_accum, sft_preset
    from stablecode.rrtf import rrtf_preset
    from stablecode.grpo import grpo_preset
    for name, presets in (('sft', sft_preset), ('dpo', dpo_preset), ('rrtf', rrtf_preset), ('grpo', grpo_preset)):
        if name in st:
            assert grad_accum(presets(st[name].parameters['preset_name']), run.stage_launch(name).world_size) >= 1

@pytest.mark.parametrize('yaml_path', sorted((ROOT/'papermill_runs').glob('*.yaml')), ids=lambda p: p.name)
def test_run_presets_parse_and_validate(yaml_path):
    r = load_run(yaml_path)
    assert r.config.name == yaml_path.stem and r.run_dir == ROOT/'papermill_runs'/yaml_path.stem
    stages = {s.name: s for s in r.config.stages}
    assert all(stages[n].notebook == nb for n, nb in (('pretrain', 'nbs/06_pretrain.ipynb'), ('eval', 'nbs/10_eval.ipynb')) if n in stages)
    missing = check_notebooks(r, missing_ok=True)
    if missing:   # a stage notebook not written yet: the YAML's schema is checked, its parameters cannot be
        warnings.warn(f"{yaml_path.name}: notebooks of stages {missing} do not exist yet; their parameters are unchecked")
    for s in r.config.stages:
        lc = r.config.stage_launch(s.name)
        if s.module: assert lc is not None, f"stage {s.name} has a module but no launch"
    check_inputs(r, r.config.stages)                                   # every stage input comes from an earlier stage
    from stablecode.packing import DATA_PRESETS
    from stablecode.pretrain import pretrain_preset
    for run in ([r.config] + ([r.config.rehearsed()] if r.config.rehearsal else [])):
        st = {s.name: s for s in run.stages}
        _check_alignment_stages(run, st)
        if 'pretrain' not in st: continue                                # an alignment-only run (PanGu-Coder2's RRTF)
        pc, dp = pretrain_preset(st['pretrain'].parameters['preset_name']), st['data'].parameters['data_preset']
        lens = {n: p.seq_len for n, p in DATA_PRESETS(dp).with_packs(st['data'].parameters.get('packs')).packs.items()}
        pc.check_world(run.stage_launch('pretrain').world_size, lens)  # the streams exist and the batch fits the launch
    if yaml_path.stem == 'tiny-cpu':
        assert r.config.launch is None and stages['pretrain'].parameters['preset_name'] == 'tiny'
        assert [s.name for s in r.config.stages] == ['data', 'pretrain', 'evidence', 'sft', 'dpo', 'eval', 'quantize', 'self_align', 'rrtf', 'grpo']
    if yaml_path.stem == 'tiny-alignment-study':                      # each method from the one SFT model, >= 3 seeds
        assert stages['sft'].parameters['n_check'] is None and r.config.stages[-1].notebook == 'nbs/13c_study.ipynb'
        for nb in ('nbs/10c_dpo.ipynb', 'nbs/13_rrtf.ipynb', 'nbs/13b_grpo.ipynb'):
            ms = [s for s in r.config.stages if s.notebook == nb]
            assert len({s.parameters['seed'] for s in ms}) >= 3 and {s.parameters['sft_model'] for s in ms} == {'sft/hf'}
            assert all(s.parameters.get('n_check', None) is None for s in ms)      # all 430 held-out problems
        assert len({r.executed(s) for s in r.config.stages}) == len(r.config.stages)   # one executed notebook per stage
    if yaml_path.stem == 'stable-code-3b-a100x256':
        lc, p = r.config.launch, stages['pretrain'].parameters
        assert (lc.launcher, lc.nodes, lc.gpus_per_node, lc.world_size) == ('deepspeed', 32, 8, 256)
        pc = pretrain_preset(p['preset_name'])
        assert (pc.zero_stage, pc.precision) == (1, 'bf16') and all(s.global_batch_tokens == 4_194_304 for s in pc.stages)
        assert pc.check_world(lc.world_size, {'code': 4096, 'long_context': 16384}) == {'code': 1, 'long_context': 1}
        assert r.config.rehearsed().stage_launch('pretrain').launcher == 'deepspeed'     # rehearsed with the same launcher
        assert stages['sft'].parameters['preset_name'] == stages['dpo'].parameters['preset_name'] == 'stable-code-instruct-3b'
        assert stages['eval'].parameters['instruct_model_path'] == 'dpo/hf'
        ev, rev = stages['eval'].parameters, {s.name: s for s in r.config.rehearsed().stages}['eval'].parameters
        assert judge_backend(ev['mt_bench_judge']).name == ev['mt_bench_judge'] and ev['mt_bench_questions'] == 'hub'
        assert ev['sql_db'].startswith('postgresql://') and ev['sql_questions'].endswith('questions_gen_postgres.csv')
        assert (rev['mt_bench_judge'], rev['mt_bench_questions'], rev['sql_questions'], rev['sql_db']) == (None, 'sample', None, 'sqlite')


def test_a_run_missing_a_stage_input_fails_before_any_work(tmp_path):
    import yaml
    full = yaml.safe_load((ROOT/'papermill_runs'/'stable-code-3b-a100x256.yaml').read_text())
    full['stages'] = [s for s in full['stages'] if s['name'] != 'data']; full['rehearsal']['parameters'].pop('data')
    y = tmp_path / 'no-data.yaml'
    y.write_text(yaml.safe_dump(full))
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs'); (tmp_path/'pyproject.toml').write_text('')
    assert cli([str(y), '--dry-run']) == 1
    with pytest.raises(ConfigError, match=r"stage 'pretrain' \(nbs/06_pretrain.ipynb\) reads what nbs/04_packing.ipynb produces"):
        run(y, progress=False)
    assert not (tmp_path/'no-data').exists()


def test_the_alpha_yaml_is_the_alpha_recipe(capsys):
    "StableCode alpha's run: its mixture, streams, GPT-NeoX model and two stages at 256 GPUs; rehearsed at `tiny-alpha`."
    from stablecode.data import mixture_preset
    from stablecode.packing import DATA_PRESETS
    from stablecode.pretrain import pretrain_preset
    y = ROOT/'papermill_runs'/'stablecode-alpha-a100x256.yaml'
    r = load_run(y)
    st = {s.name: s.parameters for s in r.config.stages}
    assert list(st) == ['data', 'pretrain', 'eval', 'quantize'] and r.config.launch.world_size == 256
    assert st['quantize']['model_path'] == 'pretrain/long_context/hf' and 'gguf:q4_k_m' in st['quantize']['formats']
    mix = mixture_preset(st['data']['mixture'])
    assert [s.dataset for s in mix.sources] == ['bigcode/starcoderdata'] and len(mix.sources[0].subsets) == 7   # launch article
    lens = {n: p.seq_len for n, p in DATA_PRESETS(st['data']['data_preset']).packs.items()}
    pc = pretrain_preset(st['pretrain']['preset_name'], **st['pretrain']['preset_args'])
    assert pc == pretrain_preset('stablecode-alpha-3b')                  # the YAML spells out the preset's defaults
    assert [(s.stream, lens[s.stream], s.tokens, s.rope_theta, s.init) for s in pc.stages] == [
        ('code', 4096, 300_000_000_000, 10_000.0, 'scratch'), ('long_context', 16384, 200_000_000_000, 10_000.0, 'previous')]
    assert pc.model == 'stablecode-alpha-3b' and pc.check_world(256, lens) == {'code': 1, 'long_context': 1}
    assert pretrain_preset('stablecode-alpha-3b', **{**st['pretrain']['preset_args'], 'lr': 1e-4}).stages[0].lr == 1e-4
    reh = {s.name: s.parameters for s in r.config.rehearsed().stages}['pretrain']
    assert (reh['preset_name'], reh['preset_args']) == ('tiny-alpha', None)
    assert cli([str(y), '--dry-run']) == 0
    assert '--module stablecode.pretrain --config' in capsys.readouterr().out and not r.run_dir.exists()


@pytest.mark.parametrize('stage,param', [('data', 'mixture'), ('data', 'data_preset'), ('pretrain', 'preset_name'),
                                         ('sft', 'preset_name'), ('dpo', 'preset_name'), ('rrtf', 'preset_name'),
                                         ('grpo', 'preset_name')])
def test_an_unknown_preset_in_any_stage_fails_before_the_first_stage(tmp_path, capsys, stage, param):
    "A typo in a preset name stops `stablecode run` at once, in one line naming the stage and the key; nothing runs."
    import time, yaml
    tiny = yaml.safe_load((ROOT/'papermill_runs'/'tiny-cpu.yaml').read_text())
    next(s for s in tiny['stages'] if s['name'] == stage)['parameters'][param] = 'no-such-preset'
    y = tmp_path/'typo.yaml'
    y.write_text(yaml.safe_dump(tiny))
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs'); (tmp_path/'pyproject.toml').write_text('')
    t0 = time.time()
    assert cli([str(y), '--no-progress']) == 1
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith('error:')]   # (not third-party import noise)
    print(f"failed in {time.time() - t0:.1f}s: {err}")
    assert len(err) == 1 and f"stage '{stage}': parameter '{param}' ('no-such-preset')" in err[0]
    assert not (tmp_path/'tiny-cpu').exists()                   # no run directory: no stage started
    assert cli([str(y), '--dry-run']) == 1                     # the dry run checks the same


def test_every_run_yaml_builds_every_stage_config():
    "Every stage config of every run YAML (and of its rehearsal) builds from its parameters."
    from stablecode.run import check_configs
    for y in sorted((ROOT/'papermill_runs').glob('*.yaml')):
        for rehearse in ([False, True] if load_run(y).config.rehearsal else [False]):
            r = load_run(y, rehearse=rehearse)
            check_configs(r, r.config.stages)
