"""The GRPO run (`papermill_runs/stable-code-instruct-3b-grpo.yaml`) rehearsed end to end (`--rehearse`): the grpo stage
through the same notebook, entry point and `deepspeed` launcher (two CPU processes), changed only by the YAML's
`rehearsal` section (a random tiny policy, the tiny preset, one step)."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YAML = ROOT/'papermill_runs'/'stable-code-instruct-3b-grpo.yaml'
CLI = str(Path(sys.executable).parent/'stablecode')


def test_the_rehearsal_trains_one_step_through_deepspeed_and_reports_intervals(tmp_path):
    d = tmp_path/'run'
    r = subprocess.run([CLI, 'run', str(YAML), '--rehearse', '--no-progress', '--run-dir', str(d)], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-6000:])
    m = json.loads((d/'manifest.json').read_text())
    assert m['status'] == 'done' and list(m['stages']) == ['grpo'] and m['run'] == 'stable-code-instruct-3b-grpo-rehearsal'
    assert 'deepspeed' in (d/'grpo'/'launch.log').read_text()
    s = json.loads((d/'grpo'/'summary.json').read_text())
    assert s['world_size'] == 2 and s['steps'] == 1 and s['num_generations'] == 4, s
    (h,) = json.loads((d/'grpo'/'log_history.json').read_text())
    assert {'reward', 'frac_reward_zero_std', 'completions/clipped_ratio', 'rewards/check_fraction/mean'} <= set(h)
    ev = json.loads((d/'grpo'/'evidence.json').read_text())
    h = ev['heldout']                                            # eval.heldout_evidence's shape
    assert h['problems'] == 2 and h['base'] == 'sft' and set(h['models']) == {'sft', 'grpo'} and 'grpo - sft' in h['differences']
    assert 0 <= h['models']['grpo']['low'] <= h['models']['grpo']['pass@1'] <= h['models']['grpo']['high'] <= 1
    assert len(h['per_problem']['grpo']) == len(h['per_problem']['task_id']) == 2
    assert (d/'grpo'/'hf'/'chat_template.jinja').exists() and (d/'grpo'/'reward.png').exists()
