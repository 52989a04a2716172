"""The generated `exercises` task: two disjoint, deterministic splits by parameter; reference solutions that pass in the
sandbox, as whole tests and check by check; tests that tell a problem's constant from the next one; MBPP's
`test_list` as `checks`."""
import json, os, subprocess, sys
import pytest
from stablecode.benchmarks import (EXERCISE_FAMILIES, EXERCISE_TASKS, PY_STOP, exercise, exercise_heldout, exercises,
                                   load_task)
from stablecode.eval import cli
from stablecode.sandbox import run_batch

HELD, TRAIN = exercises('heldout'), exercises('train')


def _name(p): return p.prompt.split('(', 1)[0].removeprefix('def ')
def _family(p): return next(f for f in EXERCISE_FAMILIES if f.name == p.task_id.split('/')[1])
def _k(p):
    k = p.task_id.split('/')[2]
    return k if isinstance(_family(p).ks[0], str) else int(k)
def _per_family(ps, n): return [p for f in EXERCISE_FAMILIES for p in [q for q in ps if _family(q) is f][:n]]


def test_counts_and_disjoint_splits():
    assert len(HELD) == 430 and len(TRAIN) == 2407 and len(EXERCISE_FAMILIES) == 37
    assert {p.task for p in HELD} == {'exercises'} and {p.task for p in TRAIN} == {'exercises-train'}
    assert not {(_family(p).name, _k(p)) for p in HELD} & {(_family(p).name, _k(p)) for p in TRAIN}
    assert not {p.prompt for p in HELD} & {p.prompt for p in TRAIN}
    assert not {_name(p) for p in HELD} & {_name(p) for p in TRAIN}
    assert len({_name(p) for p in HELD + TRAIN}) == 2837                 # no two problems share a function name
    for f in EXERCISE_FAMILIES:                                         # every family in both splits, ~15% held out
        h = [p for p in HELD if _family(p) is f]
        assert 1 <= len(h) <= 0.2 * len(f.ks) + 1 and len(h) + sum(_family(p) is f for p in TRAIN) == len(f.ks)
        assert sorted((_k(p) for p in h), key=f.ks.index) == exercise_heldout(f)


def test_deterministic_across_calls_and_processes():
    assert exercises('heldout') == HELD and exercises('train') == TRAIN
    code = "from stablecode.benchmarks import exercises; print([p.task_id for p in exercises('heldout')])"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         env={**os.environ, 'PYTHONHASHSEED': '12345'}).stdout
    assert eval(out) == [p.task_id for p in HELD]


def test_problem_shape():
    p = exercise(EXERCISE_FAMILIES[0], 7)
    assert (p.task, p.task_id, p.canonical) == ('exercises', 'exercises/add_const/7', '    return x + 7\n')
    assert p.prompt == 'def add_7(x: int) -> int:\n    """Return x plus 7.\n    >>> add_7(3)\n    10\n    """\n'
    assert p.checks == ['assert add_7(3) == 10', 'assert add_7(0) == 7', 'assert add_7(-7) == 0', 'assert add_7(100) == 107']
    assert p.tests.startswith('def check(candidate):\n    assert candidate(3) == 10\n') and p.tests.endswith('check(add_7)\n')
    for p in HELD + TRAIN:
        asserts = [l.strip() for l in p.tests.splitlines() if l.strip().startswith('assert ')]
        assert 3 <= len(asserts) <= 5 and len(p.checks) == len(asserts) and p.stop == PY_STOP
        assert [c.replace(f'{_name(p)}(', 'candidate(', 1) for c in p.checks] == asserts
        assert p.prompt.count('>>>') == 1 and len(p.prompt) < 200 and p.canonical.count('\n') == 1
    with pytest.raises(ValueError, match='unknown split'): exercises('test')
    with pytest.raises(ValueError, match="not a parameter of family 'add_const'"): exercise(EXERCISE_FAMILIES[0], 0)


def test_interleaved_so_a_prefix_spans_every_family():
    """A stage that scores the first n held-out problems (n_check) or trains on the first n (max_rows) sees every family,
    and in each family a spread of its constants."""
    for ps in (HELD, TRAIN):
        assert [_family(p) for p in ps[:len(EXERCISE_FAMILIES)]] == EXERCISE_FAMILIES
    ks = [_k(p) for p in TRAIN[:920] if _family(p).name == 'add_const']   # a spread of constants, not the smallest
    assert len(ks) >= 20 and max(ks) > 80 and min(ks) < 20


def test_load_task():
    assert [p.task_id for p in load_task('exercises')] == [p.task_id for p in HELD]
    assert load_task('exercises-train', limit=7) == TRAIN[:7] and set(EXERCISE_TASKS.values()) == {'exercises', 'exercises-train'}
    with pytest.raises(ValueError, match='generated and reads no data file'): load_task('exercises', 'x.jsonl')


def test_eval_cli_scores_canonical_heldout_at_100(tmp_path):
    assert cli(['--tasks', 'exercises', '--canonical', '--out', str(tmp_path), '--allow-weak-sandbox']) == 0
    res = json.loads((tmp_path/'results.json').read_text())['tasks']['exercises']
    assert res['problems'] == 430 and res['pass_at'] == {'pass@1': 1.0}


def test_checks_alone_and_a_wrong_constant_in_the_sandbox():
    "Each check passes alone for the reference; the body with k+1 fails the tests and at least one check."
    train = _per_family(TRAIN, 2)
    wrong = [(p, f'    return {_family(p).expr.format(k=_k(p) + 1)}\n')
             for p in _per_family(HELD, 1) if not isinstance(_k(p), str)]
    jobs = [(p, 'ref-tests', p.canonical, p.tests) for p in train]
    jobs += [(p, 'ref-check', p.canonical, c) for p in HELD + train for c in p.checks]
    jobs += [(p, 'wrong-tests', body, p.tests) for p, body in wrong]
    jobs += [(p, 'wrong-check', body, c) for p, body in wrong for c in p.checks]
    res = run_batch([{'program': p.solution(body), 'tests': t} for p, _, body, t in jobs], progress=False)
    for (p, kind, _, t), r in zip(jobs, res):
        if kind != 'wrong-check': assert r.passed == kind.startswith('ref'), (kind, p.task_id, t, r)
    assert len(wrong) == 31                                             # the 6 letter families aside
    for p, _ in wrong:                                                  # some fail: none or some pass, never all
        passed = [r.passed for (q, kind, _, _), r in zip(jobs, res) if q is p and kind == 'wrong-check']
        assert len(passed) == len(p.checks) and not all(passed)


def test_mbpp_rows_get_checks_from_test_list(tmp_path):
    row = {'task_id': 2, 'text': 'Write a function to find the shared elements from the given two lists.',
           'code': 'def similar_elements(a, b):\n    return tuple(set(a) & set(b))',
           'test_list': ['assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))',
                         'assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))'],
           'test_setup_code': '', 'challenge_test_list': []}
    plus = {'task_id': 'Mbpp/2', 'prompt': row['text'], 'code': row['code'], 'test_imports': ['import math'],
            'test_list': row['test_list'], 'test': 'assert math.isfinite(1.0)\n'}
    (tmp_path/'mbpp.jsonl').write_text(json.dumps(row) + '\n'); (tmp_path/'plus.jsonl').write_text(json.dumps(plus) + '\n')
    m, = load_task('mbpp', tmp_path/'mbpp.jsonl')
    mp, = load_task('mbpp-plus', tmp_path/'plus.jsonl')
    assert m.checks == row['test_list'] and mp.checks == ['import math\n' + t for t in row['test_list']]
    assert load_task('humaneval', limit=1)[0].checks == []
    bad = 'def similar_elements(a, b):\n    return (4, 5)\n'                 # right for the first test only
    res = run_batch([{'program': p.solution(c), 'tests': t} for p in (m, mp) for c in (p.canonical, bad) for t in p.checks],
                    progress=False)
    assert [r.passed for r in res] == [True, True, True, False] * 2      # reference: both; wrong: only the first
