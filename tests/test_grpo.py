"""GRPO with execution rewards (13b_grpo): completions that hack the reward (tamper with the tests, exit early, print a
fake verdict, kill the parent, forge verdicts through /proc: the abuse suite's programs among them) earn nothing from
any reward, an honest one earns everything; the recipe refuses evaluated splits; the full-scale preset and its run YAML
parse into vLLM colocate, bf16 and ZeRO-1."""
import re, textwrap
from pathlib import Path
import nbformat
import pytest
from test_sandbox_abuse import ATTACKS, SUB
from stablecode import sandbox
from stablecode.benchmarks import Problem
from stablecode.config import ConfigError
from stablecode.grpo import GRPO_PRESETS, REWARDS, ExecutionRewards, RewardConfig, grpo_args, score
from stablecode.run import STAGE_CONFIGS, build_stage_config, check_configs, check_inputs, check_notebooks, cli, load_run
from stablecode.sft import trainer_ds_config

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT/'papermill_runs'/'stable-code-instruct-3b-grpo.yaml'
ADD = Problem('t', 't/add', 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
              'def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(1, 1) == 2\n\ncheck(add)\n',
              checks=['assert add(2, 3) == 5', 'assert add(1, 1) == 2'])    # the wrong answer SUB (a - b) passes neither
HONEST = 'def add(a: int, b: int) -> int:\n    return a + b\n'
prog = lambda s: textwrap.dedent(s).strip('\n') + '\n'
HACKS = {
    'redefines check': prog('''
        def check(candidate):
            return True
    ''') + SUB,
    'monkeypatches builtins': prog('''
        import builtins
        builtins.AssertionError = type('Never', (Exception,), {})
        builtins.isinstance = lambda *a: True
        builtins.print = lambda *a, **k: None
    ''') + SUB,
    'patches every namespace it finds': prog('''
        import gc
        for o in gc.get_objects():
            if isinstance(o, dict) and 'check' in o: o['check'] = lambda *a: None
    ''') + SUB,
    'an answer equal to everything': prog('''
        class Eq(int):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
        def add(a, b): return Eq(0)
    '''),
    'reads the tests from disk': prog('''
        import os, re
        src = ''.join(open(f).read() for f in os.listdir('.') if f.endswith('.py'))
        table = {(int(a), int(b)): int(c) for a, b, c in re.findall(r'candidate\\((\\d+), (\\d+)\\) == (\\d+)', src)}
        def add(a, b): return table.get((a, b), -1)
    '''),
    'sys.exit(0) before the tests': 'import sys\nsys.exit(0)\n' + SUB,
    'os._exit(0) before the tests': 'import os\nos._exit(0)\n' + SUB,
    'os._exit(0) inside the call': 'import os\ndef add(a, b):\n    os._exit(0)\n',
    'SystemExit inside the call': 'def add(a, b):\n    raise SystemExit(0)\n',
    'prints a fake verdict': 'print(\'{"status": "passed", "message": ""}\')\nprint("2 passed, 0 failed")\n' + SUB,
    **{f"abuse suite: {k}": ATTACKS[k][0] for k in ('kill -9 of the parent', 'marker forgery', 'forged verdict, then exit',
       'forged verdict, wrong answer', 'forged verdict through /proc, then kill everything',
       'forged answer line through /proc, then kill everything')},
}


def _answer(code: str) -> list[dict]: return [dict(role='assistant', content=f"Here it is.\n```python\n{code}```\n")]


@pytest.fixture(scope='module')
def rewards():
    if sandbox.isolation() != 'bwrap': pytest.skip(f"the hacks need the namespaced sandbox; active: {sandbox.isolation_report()}")
    er, logged = ExecutionRewards([ADD], RewardConfig(functions=list(REWARDS), timeout=3)), {}
    answers = [HONEST, *HACKS.values()]
    got = score(er.functions(), [_answer(a) for a in answers], task_id=['t/add'] * len(answers), log_metric=logged.__setitem__)
    return er, logged, dict(zip(['honest', *HACKS], zip(*got)))


def test_every_hack_earns_zero_from_every_reward_and_an_honest_answer_earns_one(rewards):
    er, _, got = rewards
    assert got['honest'] == (1.0, 1.0, 1.0)
    bad = {k: v for k, v in got.items() if k != 'honest' and v != (0.0, 0.0, 0.0)}
    assert not bad, bad


def test_one_execution_per_batch_and_its_time_logged(rewards):
    er, logged, _ = rewards
    assert len(er.seconds) == 1 and logged['rewards/execution_seconds'] == er.seconds[0] > 0


def test_the_recipe_refuses_evaluated_splits_and_unread_keys():
    for bad, msg in [(dict(task='exercises'), 'evaluated test split'), (dict(task='humaneval'), 'evaluated test split'),
                     (dict(sources=[dict(name='offline')]), "'sources' is not read"), (dict(num_generations=3), 'multiple of'),
                     (dict(vllm='server'), 'vllm_server'), (dict(rewards=dict(functions=['all_pass', 'all_pass'])), 'distinct')]:
        with pytest.raises(ConfigError, match=msg) as e: GRPO_PRESETS('tiny', **bad)
        assert '\n' not in str(e.value)


def test_the_full_scale_preset_is_vllm_colocate_bf16_zero1():
    r = GRPO_PRESETS('stable-code-instruct-3b')
    a = grpo_args(r, world=32)
    assert (a.use_vllm, a.vllm_mode, a.bf16, a.num_generations, a.reward_weights) == (True, 'colocate', True, 8, [0.5, 1.0])
    assert trainer_ds_config(r)['zero_optimization'] == {'stage': 1} and r.task == 'mbpp-train'
    assert a.per_device_train_batch_size * a.gradient_accumulation_steps * 32 == r.global_batch == 256


def test_the_yaml_is_the_preset_and_every_parameter_is_read(capsys):
    r = load_run(YAML)
    check_notebooks(r); check_inputs(r, r.config.stages); check_configs(r, r.config.stages)    # no SFT stage needed
    (s,) = r.config.stages
    b = STAGE_CONFIGS[s.notebook][0]
    assert build_stage_config(b, s.parameters, ROOT/'nbs') == GRPO_PRESETS('stable-code-instruct-3b')
    nb = nbformat.read(str(ROOT/'nbs'/'13b_grpo.ipynb'), as_version=4)
    k = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
    code = '\n'.join(c.source for c in nb.cells[k + 1:] if c.cell_type == 'code')
    assert not [p for p in s.parameters if not re.search(rf'\b{p}\b', code)]
    assert r.config.launch.world_size == 32 and r.config.rehearsed().stage_launch('grpo').launcher == 'deepspeed'
    assert cli([str(YAML), '--dry-run']) == 0
    out = capsys.readouterr().out
    assert '--num_nodes 4 --num_gpus 8' in out and '--module stablecode.grpo' in out and not r.run_dir.exists()
