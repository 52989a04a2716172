"""The sandbox on a Ray cluster (a local one of two CPUs here): the same verdicts as the local threads on HumanEval's
164 canonical solutions and their damaged copies, and an interrupted Ray run resumed from its JSONL file."""
import json, os
import pytest
from stablecode.benchmarks import load_humaneval
from stablecode.sandbox import isolation, run_batch

try: import ray
except ImportError: ray = None


def _need():
    "Ray and namespaces are in the dev install and on CI; elsewhere say what is missing."
    why = 'Ray is not installed' if ray is None else 'the sandbox has no namespaces' if isolation() != 'bwrap' else ''
    if why: (pytest.fail if os.environ.get('CI') == 'true' else pytest.skip)(why)


def _jobs():
    he = load_humaneval()
    cut = lambda s: '\n'.join(s.rstrip().split('\n')[:-1]) + '\n'        # the last line removed: most then fail
    return [{'program': p.solution(c), 'tests': p.tests, 'timeout': 5} for p in he for c in (p.canonical, cut(p.canonical))]


def test_ray_gives_the_local_verdicts_and_resumes(tmp_path):
    _need()
    import stablecode.sandbox_ray       # registers executor='ray'
    jobs, jl = _jobs(), tmp_path / 'runs.jsonl'
    here = [r.status for r in run_batch(jobs, workers=2, progress=False)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        part = run_batch(jobs[:100], executor='ray', jsonl=jl, progress=False)          # an interrupted run...
        whole = run_batch(jobs, executor='ray', jsonl=jl, progress=False)               # ...resumed
    finally: ray.shutdown()
    assert [r.status for r in part] == here[:100]
    assert [r.status for r in whole] == here
    assert here.count('passed') == 164 and here[0::2] == ['passed'] * 164                 # every canonical passes
    keys = [json.loads(l)['key'] for l in jl.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len({json.dumps(j, sort_keys=True) for j in jobs})   # nothing ran twice
    assert all(r.isolation.startswith('bwrap-forkserver') for r in whole)


def test_unknown_executor_is_one_line():
    with pytest.raises(ValueError, match="unknown sandbox executor 'slurm'"):
        run_batch(['print(1)'], executor='slurm', progress=False)
