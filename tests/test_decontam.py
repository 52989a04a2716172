"""No evaluated test data in training, by construction: every recipe's training problems come from training splits,
every training source is decontaminated against every evaluated task (at full scale), a recipe naming an evaluated
test split fails validation in one line, a missing decontamination file is an error; and the multi-pattern matcher
gives the plain scan's answers."""
import json, random

import pytest

from stablecode.benchmarks import EVALUATED_TASKS, TRAINING_TASKS, evaluated, load_humaneval, load_task
from stablecode.config import ConfigError, Presets
from stablecode.data import (FULL_DECONT, DecontConfig, MixtureConfig, Decontaminate, SubstringIndex, benchmark_problems, clean_problems,
                             decont_tasks, first_substring_scan)
from stablecode.dpo import DPO_PRESETS
from stablecode.rrtf import RRTF_PRESETS
from stablecode.self_align import SELF_ALIGN_PRESETS, Contamination
from stablecode.sft import SFT_PRESETS

RECIPES = {'sft': SFT_PRESETS, 'dpo': DPO_PRESETS, 'rrtf': RRTF_PRESETS, 'self_align': SELF_ALIGN_PRESETS}
FULL = [(k, n) for k, reg in RECIPES.items() for n in reg.names() if not n.startswith('tiny')]


def mbpp_row(i, text, code):
    "A row in `google-research-datasets/mbpp`'s schema (config `full`)."
    fn = code.split('(')[0][4:]
    return dict(task_id=i, text=text, code=code, test_list=[f'assert {fn}([3, 1, 2]) is not None'], test_setup_code='',
                challenge_test_list=[])


def write_jsonl(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows)); return path


def test_the_full_scale_recipes_exist():
    assert sorted(FULL) == [('dpo', 'stable-code-instruct-3b'), ('rrtf', 'pangu-coder2'), ('rrtf', 'stable-code-instruct-3b'),
                            ('self_align', 'starcoder2-15b-instruct'), ('sft', 'stable-code-instruct-3b')]


@pytest.mark.parametrize('kind,name', FULL + [('mixture', 'stable-code-3b'), ('mixture', 'stablecode-alpha')])
def test_every_full_scale_recipe_is_decontaminated_against_every_evaluated_task(kind, name):
    r = (RECIPES.get(kind) or Presets.registries[kind])(name)
    assert decont_tasks(r.decontamination) == set(EVALUATED_TASKS), name
    if hasattr(r, 'pairs'):                                           # execution-ranked problems: a training split
        assert r.pairs.task in TRAINING_TASKS and not evaluated(r.pairs.task)
        if getattr(r, 'problems', 'task') == 'evolved':               # RRTF ranks the evolved problems (a teacher's
            assert r.teachers                                         # tests), seeds decontaminated as above
        else: assert r.pairs.task == 'mbpp-train'


@pytest.mark.parametrize('kind', ['dpo', 'rrtf'])
def test_the_tiny_recipes_train_on_training_problems_and_check_what_is_offline(kind):
    r = RECIPES[kind]('tiny')
    assert r.pairs.task == 'exercises-train' and r.pairs.heldout_task == 'exercises'
    assert decont_tasks(r.decontamination) == {'humaneval', 'exercises'}


def test_training_and_test_splits_are_disjoint_on_real_rows(tmp_path):
    "MBPP's four splits in the hub's schema: `mbpp-train` reads none of the test split; the exercises' splits are apart."
    train = write_jsonl(tmp_path/'train.jsonl', [mbpp_row(i, f'Write a function to keep the {i} smallest distinct values of a list.',
                                                           f'def smallest_{i}(items):\n    out = sorted(set(items))\n    return out[:{i}]')
                                                  for i in (1, 2, 530, 601, 700)])
    test = write_jsonl(tmp_path/'test.jsonl', [mbpp_row(i, f'Write a function that returns the {i} largest values of a list.',
                                                         f'def largest_{i}(xs):\n    return heapq.nlargest({i}, xs)')
                                                for i in (11, 12, 510)])
    tr, te = load_task('mbpp-train', train), load_task('mbpp', test)
    assert not {p.task_id for p in tr} & {p.task_id for p in te} and {p.task for p in tr} == {'mbpp-train'}
    with pytest.raises(ValueError, match="test split") as e: load_task('mbpp-train', test)
    assert '\n' not in str(e.value)
    # decontamination against MBPP (test) keeps every training row ...
    kept, report = clean_problems(tr, DecontConfig(extra=[f'mbpp={test}']))
    assert [p.task_id for p in kept] == [p.task_id for p in tr] and report == []
    # ... and drops a training row that repeats a test problem (MBPP+ draws on MBPP's other splits too)
    dup = write_jsonl(tmp_path/'dup.jsonl', [mbpp_row(600, te[0].prompt.split('\n')[1], te[0].canonical)])
    kept, report = clean_problems(load_task('mbpp-train', dup), DecontConfig(extra=[f'mbpp={test}']))
    assert kept == [] and (report[0]['benchmark'], report[0]['task_id'], report[0]['problem']) == ('mbpp', '11', '600')
    held, ex_train = load_task('exercises'), load_task('exercises-train')
    assert not {p.task_id for p in held} & {p.task_id for p in ex_train}
    assert len(clean_problems(ex_train, DecontConfig())[0]) == len(ex_train)    # decontaminated, and all kept


@pytest.mark.parametrize('task', ['mbpp', 'mbpp-plus', 'humaneval', 'humaneval-plus', 'exercises', 'multiple-js', 'fim-py'])
@pytest.mark.parametrize('kind', ['dpo', 'rrtf'])
def test_a_recipe_naming_an_evaluated_test_split_fails_in_one_line(kind, task):
    for name in RECIPES[kind].names():
        with pytest.raises(ConfigError) as e: RECIPES[kind](name, pairs=dict(task=task))
        assert f"'task: {task}' is an evaluated test split" in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('dataset,split', [('evalplus/mbppplus', 'test'), ('google-research-datasets/mbpp', 'test'),
                                           ('openai/openai_humaneval', 'test'), ('nuprl/MultiPL-E', 'test')])
def test_a_mixture_reading_an_evaluated_test_split_fails_in_one_line(dataset, split):
    src = dict(name='bench', kind='hub', dataset=dataset, split=split, text='prompt')
    with pytest.raises(ConfigError) as e: MixtureConfig.from_dict(dict(sources=[src]))
    assert 'evaluated task' in str(e.value) and '\n' not in str(e.value)
    ok = dict(src, dataset='google-research-datasets/mbpp', split='train')             # MBPP's training split is allowed
    assert MixtureConfig.from_dict(dict(sources=[ok])).sources[0].split == 'train'


def test_a_missing_decontamination_file_is_an_error(tmp_path):
    cfg = DecontConfig(extra=[f"mbpp={tmp_path/'absent.jsonl'}"])
    for f in (lambda: benchmark_problems(cfg), lambda: Decontaminate(cfg).match('x = 1'), lambda: Contamination(cfg),
              lambda: SFT_PRESETS('tiny', decontamination=dict(extra=cfg.extra))):
        with pytest.raises(ConfigError, match='no such file') as e: f()
        assert '\n' not in str(e.value)
    with pytest.raises(ConfigError, match='not an evaluated task'): benchmark_problems(DecontConfig(extra=['mbpp-train']))


def test_every_training_source_reports_its_contamination(tmp_path):
    "SFT rows are decontaminated per source by default: HumanEval and the held-out exercises."
    from stablecode.instruct_data import sft_dataset
    he, ex = load_humaneval()[5], load_task('exercises')[0]
    alpaca = write_jsonl(tmp_path/'alpaca.jsonl', [
        dict(instruction='Complete the function.', input=he.prompt, output=he.canonical),
        dict(instruction='Complete the function.', input=ex.prompt, output=ex.canonical),
        dict(instruction='Write a Python function that reverses a string.', input='', output='def r(s):\n    return s[::-1]\n')])
    _, counts = sft_dataset([dict(name='code_alpaca', path=str(alpaca))], progress=False)
    assert counts['code_alpaca']['contaminated'] == 2 and counts['code_alpaca']['kept'] == 1


def _random_text(rng, alphabet, n): return ''.join(rng.choice(alphabet) for _ in range(n))

def test_the_multi_pattern_matcher_gives_the_plain_scans_answers():
    "Random patterns over a small alphabet (many overlaps, repeats, prefixes of each other) and real benchmark texts."
    rng = random.Random(0)
    for trial in range(30):
        pats = [_random_text(rng, 'abc ', rng.randint(1, 6)) for _ in range(rng.randint(1, 40))]
        pats += rng.sample(pats, min(3, len(pats)))                     # repeated patterns: the first index wins
        if trial % 5 == 0: pats.insert(rng.randint(0, len(pats)), '')  # the empty pattern is in every text
        ix = SubstringIndex(pats)
        for _ in range(50):
            t = _random_text(rng, 'abcd ', rng.randint(0, 30))
            assert ix.first(t) == first_substring_scan(pats, t), (pats, t)
    texts = [' '.join(p.prompt.split()) for p in load_humaneval()]
    pats = [' '.join((p.canonical or '').split()) for p in load_humaneval()] + [t[40:120] for t in texts[::7]]
    ix = SubstringIndex(pats)
    assert [ix.first(t) for t in texts] == [first_substring_scan(pats, t) for t in texts]
    assert sum(ix.first(t) is not None for t in texts) >= len(texts[::7])
