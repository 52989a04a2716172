"""RRTF through its real entry point (`python -m stablecode.rrtf`): ZeRO-1 over two CPU processes against one, the saved
chat checkpoint read by stock transformers, the Trainer's loss against a response-by-response computation, the ranking
loss by hand, the teacher-below-student drop, Evol-Instruct's prompts, seeds and benchmark-overlap rule, the teacher's
tests of evolved problems (kept only where its solution passes them in the sandbox, run untrusted), StarCoder's
architecture (`gpt_bigcode`, ChatML tokens added) through the same loss, the presets, and the tiny run's labelled oracle
teacher (`oracle:exercises`, a program) through the same evolution, tests and sandbox."""
import json, os, random, subprocess, sys, sysconfig
from pathlib import Path
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stablecode.benchmarks import EXERCISE_FAMILIES, Problem, exercise, exercise_heldout, exercises, load_humaneval
from stablecode.config import ConfigError, preset
from stablecode.data import DecontConfig
from stablecode.eval import chat_answer, chat_messages
from stablecode.model import StableCodeForCausalLM
from stablecode.dpo import PairsConfig
from stablecode.generate import Backend, load_backend
from stablecode.rrtf import (EVOL_OPS, BenchmarkOverlap, ExerciseOracle, RRTF_PRESETS, EvolConfig, RRTFCollator, RRTFRecipe,
                             TeacherTestsConfig, _io, backend_for, chain_function, chain_name, check_tests, drop_reason,
                             evol_messages, evolve, evolved_problem, load_policy, model_spec, parse_teacher, rank_loss,
                             response_logps, rrtf_loss, rrtf_rows, rrtf_samples, rrtf_scores, seed_instructions,
                             teacher_below_student, teacher_funnel, teacher_tests)
from stablecode.sft import load_chat_model
from stablecode.tokenizer import train_tokenizer

SQ = Problem('demo', 'demo/sq', 'def sq(x: int) -> int:\n', 'assert sq(2) == 4\n', checks=['assert sq(2) == 4'], canonical='    return x * x\n')

def _sample(answer, outcome, ref=False, n=0, checks=2):
    return dict(answer=answer, outcome=outcome, checks_passed=n, checks=checks, reference=ref, program='', status='', message='')

def _rows(k: int) -> list[dict]:
    "Ranked rows of `k` problems: the reference (a teacher, all pass), a half-right and a broken student answer."
    probs, ranked = [], []
    for i in range(k):
        p = Problem('demo', f'demo/add_{i}', f'def add_{i}(x: int) -> int:\n', '', canonical=f'    return x + {i}\n')
        probs.append(p)
        ranked.append([_sample(chat_answer(p, p.canonical), 'all_pass', True, 2), _sample(chat_answer(p, f'    return x + {i + 1}\n'), 'some_pass', n=1),
                       _sample(chat_answer(p, '    return x +\n'), 'compile_error')])
    rows, counts = rrtf_rows(probs, ranked)
    assert counts['kept'] == k and all(r['scores'] == [2.0, 1.0, 0.0] for r in rows)
    return rows

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A random tiny model with a 1,024-token BPE (the project's special tokens and ChatML template), and ranked rows."
    d = tmp_path_factory.mktemp('rrtf')
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:40]
    tok = train_tokenizer([f.read_text(errors='ignore') for f in files], vocab_size=1024)
    torch.manual_seed(0)
    StableCodeForCausalLM(preset('tiny', vocab_size=len(tok), num_hidden_layers=2)).save_pretrained(d / 'base')
    tok.save_pretrained(d / 'base')
    (d / 'train.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in _rows(16)))
    return d

def _recipe(base, out, **kw) -> RRTFRecipe:
    return RRTFRecipe.from_dict(dict(model=str(base / 'base'), out_dir=str(out), data=str(base / 'train.jsonl'), sources=[dict(name='exercises')],
                                     max_steps=3, global_batch=4, micro_batch=2, lr=1e-3, max_length=256, warmup=0.0, progress=False, problems='task',
                                     logging_steps=1) | kw)

def _launch(recipe, cfg_file, nproc=1):
    recipe.to_yaml(cfg_file)
    cmd = [sys.executable, '-m', 'stablecode.rrtf', '--config', str(cfg_file)]
    if nproc > 1: cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc), *cmd[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'DS_ACCELERATOR': 'cpu'})

def test_two_process_zero1_equals_one_process_and_saves_a_stock_chat_checkpoint(base, tmp_path):
    losses = {}
    for n in (1, 2):
        p = _launch(_recipe(base, tmp_path / f'p{n}'), tmp_path / f'p{n}.yaml', nproc=n)
        assert p.returncode == 0, p.stderr[-3000:]
        s = json.loads((tmp_path / f'p{n}' / 'summary.json').read_text())
        assert s['world_size'] == n and s['steps'] == 3 and s['data'] == dict(rows=16, contaminated=0, responses=48, tasks={'demo': 16}), s
        losses[n] = [v for x in s['parts'] for v in (x['rank_loss'], x['ft_loss'])]
        assert [x['loss'] for x in s['records']] == pytest.approx([a + b for a, b in zip(losses[n][::2], losses[n][1::2])], rel=1e-4)
    assert len(losses[1]) == 6 and losses[1][-1] < losses[1][1], losses              # the best responses grow more likely
    assert losses[1] == pytest.approx(losses[2], rel=1e-4), losses                    # same problems per step, same gradients
    hf = tmp_path / 'p1' / 'hf'
    model, tok = AutoModelForCausalLM.from_pretrained(hf), AutoTokenizer.from_pretrained(hf)
    text = tok.apply_chat_template([dict(role='user', content='Add one.')], tokenize=False, add_generation_prompt=True)
    assert text == '<|im_start|>user\nAdd one.<|im_end|>\n<|im_start|>assistant\n'
    ids = tok(text, return_tensors='pt', add_special_tokens=False)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids['input_ids'].shape[1]

def test_missing_rows_and_bad_config_are_one_line_errors(base, tmp_path):
    p = _launch(_recipe(base, tmp_path / 'x', data=str(tmp_path / 'none.jsonl')), tmp_path / 'bad.yaml')
    assert p.returncode == 2 and 'not found' in p.stderr and 'Traceback' not in p.stderr, p.stderr[-2000:]
    with pytest.raises(ConfigError, match="must be one of"): _recipe(base, tmp_path, weighting='squared')
    with pytest.raises(ConfigError, match="'temperatures'"): _recipe(base, tmp_path, temperatures=[])

def test_trainer_loss_equals_response_by_response_computation(base):
    "The padded batch's p_i equal each response scored alone, so the loss is the hand formula on them."
    model, tok = load_chat_model(str(base / 'base'))
    rows = _rows(2)
    batch = RRTFCollator(tok, 256)(rows)
    assert batch['input_ids'].shape[0] == 6 and batch['group'].tolist() == [0, 0, 0, 1, 1, 1]
    with torch.no_grad():
        p = response_logps(model, batch)
        alone = []
        for row in rows:
            for ans in row['responses']:
                enc = tok.apply_chat_template(row['prompt'] + [dict(role='assistant', content=ans)], return_dict=True,
                                              return_assistant_tokens_mask=True)
                ids, m = torch.tensor([enc['input_ids']]), torch.tensor(enc['assistant_masks'])[1:].bool()
                lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
                alone.append(lp[m].mean())
    assert p.tolist() == pytest.approx(torch.stack(alone).tolist(), abs=1e-5)
    l_rank, l_ft = rrtf_loss(p, batch['scores'], batch['group'])
    hand = sum(max(0.0, p[g + i] - p[g + j]) for g in (0, 3) for i, j in [(1, 0), (2, 0), (2, 1)]) / 2   # (worse, better)
    assert l_rank.item() == pytest.approx(float(hand), abs=1e-6) and l_ft.item() == pytest.approx(-(p[0] + p[3]).item() / 2, abs=1e-6)

def test_rank_loss_by_hand_ties_single_and_gradient():
    p = torch.tensor([-1.0, -2.0, -0.5, -3.0], requires_grad=True)
    r = torch.tensor([0.0, 1.0, 1.0, 2.0])
    assert rank_loss(p, r).item() == pytest.approx(1 + 0 + 2 + 1 + 2.5)             # (0,1) (0,2) (0,3) (1,3) (2,3); 1~2 tie
    assert rank_loss(p, r, 'gap').item() == pytest.approx(1 + 0 + 2 * 2 + 1 + 2.5)
    assert rank_loss(torch.tensor([0.3]), torch.tensor([1.0])).item() == 0.0
    assert rank_loss(torch.tensor([-1.0, -0.1]), torch.tensor([2.0, 2.0])).item() == 0.0
    rank_loss(p, r).backward()
    assert p.grad[0] > 0 and p.grad[3] < 0                                           # descent: the worst down, the best up
    q = torch.tensor([-1.0, -2.0], requires_grad=True)                               # a better response less likely than a worse one
    opt = torch.optim.SGD([q], lr=0.1)
    for _ in range(20): opt.zero_grad(); rank_loss(q, torch.tensor([0.0, 1.0])).backward(); opt.step()
    assert q[1] >= q[0]                                                              # ... until the order is right

def test_teacher_ties_and_teacher_below_student_drop():
    s = [_sample('a', 'all_pass', False, 2), _sample('b', 'all_pass', True, 2), _sample('c', 'some_pass', False, 1), _sample('d', 'runtime_error')]
    assert rrtf_scores(s) == [2.0, 3.0, 1.0, 0.0]
    below = [_sample('t', 'runtime_error', True), _sample('s', 'some_pass', False, 1)]
    assert teacher_below_student(below)
    rows, counts = rrtf_rows([SQ, SQ, SQ], [below, s, [_sample('x', 'compile_error'), _sample('x', 'compile_error')]])
    assert counts == dict(problems=3, no_responses=0, teacher_below_student=1, kept=2, responses=5)
    assert rows[0]['responses'] == ['b', 'a', 'c', 'd'] and rows[1]['scores'] == [0.0]   # duplicates kept once

def test_evol_prompts_seeds_and_overlap(tmp_path):
    for op, method in EVOL_OPS.items():
        m = evol_messages('Reverse a string.', op)
        assert m[1]['content'].endswith('#Given Test#\nReverse a string.\n\n#Rewritten Test#\n') and method in m[1]['content']
    alpaca = tmp_path / 'code_alpaca.jsonl'                  # sahil2801/CodeAlpaca-20k's schema
    alpaca.write_text(''.join(json.dumps(r) + '\n' for r in [
        dict(instruction='Write a Python function that reverses a string.', input='', output='def r(s): return s[::-1]'),
        dict(instruction='Describe the weather.', input='', output='Sunny.'),
        dict(instruction='Fix this code.', input='def f(:\n    pass', output='def f():\n    pass')]))
    seeds, counts = seed_instructions([dict(name='code_alpaca', path=str(alpaca))])
    assert seeds == ['Write a Python function that reverses a string.', 'Fix this code.\n\ndef f(:\n    pass']
    assert counts == {'code_alpaca': dict(read=3, code=2)}
    mbpp = tmp_path / 'mbpp.jsonl'                          # MBPP's schema: a local file joins HumanEval in the check
    text = 'Write a function to find the shared elements from the given two lists of numbers in any order.'
    mbpp.write_text(json.dumps(dict(task_id=2, text=text, code='def similar_elements(a, b):\n    return tuple(set(a) & set(b))',
                                    test_list=['assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))'])) + '\n')
    dec = BenchmarkOverlap(DecontConfig(extra=[f'mbpp={mbpp}']))
    cfg, seed = EvolConfig(), 'Write a Python function that finds common items.'
    assert drop_reason(seed, f'{text} Use Python and return a sorted list; handle duplicates.', cfg, dec) == 'benchmark_overlap'
    assert dec.match(text + ' Return a sorted list.')['match'] == 'exact_substring'     # MBPP's statement, word for word
    he = load_humaneval()[1]
    assert drop_reason(seed, f'Complete this function so that it runs in O(n) time:\n```python\n{he.prompt}```', cfg, dec) == 'benchmark_overlap'
    assert dec.match(he.prompt)['benchmark'] == 'humaneval'
    assert drop_reason(seed, seed + ' Return them sorted, in O(n log n) time, without using set().', cfg, dec) is None

def test_presets_parse_and_round_trip(tmp_path):
    for name in RRTF_PRESETS.names():
        r = RRTF_PRESETS(name)
        r.to_yaml(tmp_path / f'{name}.yaml')
        assert RRTFRecipe.from_yaml(tmp_path / f'{name}.yaml') == r
    full = RRTF_PRESETS('stable-code-instruct-3b')
    assert (full.global_batch, full.epochs, full.zero_stage, full.precision, full.weighting) == (512, 6, 1, 'bf16', 'none')
    assert [s.name for s in full.sources] == ['code_alpaca'] and full.evol.ops == list(EVOL_OPS) and full.evol.ops_per_seed is None
    assert full.pairs.reference and len(full.temperatures) > 1
    pangu = RRTF_PRESETS('pangu-coder2')                         # REFERENCE §5: StarCoder 15B, batch 512, 6 epochs
    assert (pangu.model, pangu.global_batch, pangu.epochs, pangu.problems) == ('bigcode/starcoder', 512, 6, 'evolved')
    assert all('@http' in t for t in pangu.teachers) and RRTF_PRESETS('tiny').problems == 'evolved+task'
    with pytest.raises(ConfigError, match="need a teacher"): RRTF_PRESETS('pangu-coder2', teachers=[])
    with pytest.raises(ConfigError, match="unknown key 'evol.opz'"): RRTF_PRESETS('tiny', evol=dict(opz=['x']))


class Scripted(Backend):
    "A teacher or student whose answers are written here: the first whose key the prompt holds."
    name = 'scripted'
    def __init__(self, answers): self.answers = answers
    def generate(self, prompts, stops, n=1, **kw): return [[next(a for k, a in self.answers.items() if k in p)] * n for p in prompts]

FENCE = "```python\n{}\n```"

def test_teacher_tests_are_kept_only_where_its_solution_passes_them_in_the_sandbox():
    clamp = 'def clamp(x, lo, hi):\n    return max(lo, min(x, hi))'
    answers = {
        'clamp': FENCE.format(clamp) + FENCE.format('assert clamp(5, 0, 3) == 3\nassert clamp(-1, 0, 3) == 0\nassert clamp(2, 0, 3) == 3'),
        'evens': FENCE.format('def evens(xs):\n    return [x for x in xs if x % 2]') + FENCE.format('assert evens([1, 2, 4]) == [2, 4]'),
        'crash': FENCE.format('def crash(n):\n    import os\n    os._exit(0)') + FENCE.format('assert crash(1) is None'),
        'median': FENCE.format('def median(xs):\n    return sorted(xs)[len(xs) // 2]') + FENCE.format('assert 1 == 1\nprint(median([1]))'),
        'story': 'Once upon a time there was a list.'}
    insts = ['Write clamp(x, lo, hi).', 'Write evens(xs), the even items.', 'Write crash(n).', 'Write median(xs).', 'Tell a story.']
    cfg = TeacherTestsConfig(min_checks=1)
    rows = check_tests(teacher_tests(Scripted(answers), insts, cfg), cfg)
    assert [r['why'] for r in rows] == [None, 'tests_fail', 'tests_fail', 'no_tests', 'no_solution']
    assert rows[0]['checks'] == ['assert clamp(5, 0, 3) == 3', 'assert clamp(-1, 0, 3) == 0'] and rows[0]['checks_written'] == 3
    assert teacher_funnel(rows) == dict(problems=5, valid=1, dropped=dict(no_solution=1, no_tests=1, tests_fail=2))
    assert check_tests(teacher_tests(Scripted(answers), insts[:1], cfg), TeacherTestsConfig(min_checks=3))[0]['why'] == 'tests_fail'
    p = evolved_problem(7, rows[0])
    assert (p.task, p.task_id, p.canonical.strip(), p.checks) == ('evol', 'evol/7', clamp, rows[0]['checks'])
    assert 'Write clamp(x, lo, hi).' in p.prompt and 'assert clamp(5, 0, 3) == 3' in p.prompt     # the first check shows the call
    student = Scripted({'clamp': FENCE.format('def clamp(x, lo, hi):\n    return min(x, hi)')})   # passes one check of two
    ranked = rrtf_samples(student, [p], PairsConfig(samples=2), trusted_tests=False, reference_name='teacher', progress=False)
    assert [(s['outcome'], s['checks_passed'], s['teacher']) for s in ranked[0]] == [('some_pass', 1, None)] * 2 + [('all_pass', 2, 'teacher')]
    rows_, counts = rrtf_rows([p], ranked)
    assert counts['kept'] == 1 and rows_[0]['task'] == 'evol' and rows_[0]['teacher'] == [True, False] and rows_[0]['scores'] == [1.0, 0.0]

def test_parse_teacher_reads_asserts_and_doctests_that_call_the_solution():
    t = parse_teacher(FENCE.format('def sq(x):\n    """Square.\n    >>> sq(3)\n    9\n    """\n    assert x is not None\n    return x * x') +
                      FENCE.format('assert sq(2) == 4\nassert sq(2) == 4\nassert len([1]) == 1\nassert sq(2 ==') )
    assert t['checks'] == ['assert sq(2) == 4', 'assert sq(3) == 9'] and 'return x * x' in t['solution']   # duplicates,
    assert parse_teacher('def f(:\n  pass')['why'] == 'no_solution'                       # non-calls and bad syntax dropped
    assert parse_teacher(FENCE.format('def f(x):\n    return x') + FENCE.format('assert g(1) == 1'))['why'] == 'no_tests'

def test_starcoder_architecture_loads_with_chatml_added_and_trains_with_the_rrtf_loss(tmp_path):
    "StarCoder's `gpt_bigcode` (a tiny random one) with a vocabulary without ChatML: tokens added, embeddings resized."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast
    bpe = Tokenizer(models.BPE()); bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); bpe.decoder = decoders.ByteLevel()
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:10]
    bpe.train_from_iterator([f.read_text(errors='ignore') for f in files], trainers.BpeTrainer(vocab_size=600, special_tokens=['<|endoftext|>'],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token='<|endoftext|>', bos_token='<|endoftext|>')
    torch.manual_seed(0)
    GPTBigCodeForCausalLM(GPTBigCodeConfig(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=512)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, tok2 = load_policy(str(tmp_path))
    assert type(model).__name__ == 'GPTBigCodeForCausalLM' and len(tok2) == len(tok) + 2
    assert model.get_input_embeddings().num_embeddings == len(tok2) and tok2.pad_token == '<|endoftext|>'
    batch = RRTFCollator(tok2, 256)(_rows(2))
    assert batch['loss_mask'].sum() > 0 and batch['input_ids'].max() < len(tok2)
    l_rank, l_ft = rrtf_loss(response_logps(model, batch), batch['scores'], batch['group'])
    (l_rank + l_ft).backward()
    assert model.get_input_embeddings().weight.grad[len(tok):].abs().sum() > 0    # the new ChatML tokens learn


def _differs_from_every_heldout_exercise(chain) -> bool:
    "The chain's function differs from each held-out exercise of its input type on inputs drawn here (not the oracle's probes)."
    rng, t = random.Random(0), _io(chain[0][0])[1]
    word = lambda: ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randrange(40)))
    xs = {'int': list(range(-300, 300)), 'str': [word() for _ in range(2000)],
          'list[int]': [[rng.randrange(-30, 130) for _ in range(rng.randrange(12))] for _ in range(2000)]}[t]
    fn = chain_function(chain)
    return all(any(fn(x) != f.reference(k)(x) for x in xs) for f in EXERCISE_FAMILIES if _io(f)[1] == t for k in exercise_heldout(f))

def test_the_oracle_evolves_exercises_whose_tests_its_solution_passes_in_the_sandbox():
    "The labelled oracle (a program, not a model) through the real pipeline: evolve, drop rules, teacher tests, sandbox."
    oracle = load_backend('oracle:exercises')                     # registered by importing stablecode.rrtf
    assert isinstance(oracle, ExerciseOracle) and isinstance(backend_for('oracle:exercises', '/no/such/run'), ExerciseOracle)
    assert model_spec('oracle:exercises', '/run') == 'oracle:exercises' and model_spec('dpo/hf', '/run') == '/run/dpo/hf'
    seeds, _ = seed_instructions(RRTF_PRESETS('tiny').sources, max_seeds=4)
    evo = evolve(oracle, seeds, EvolConfig(), BenchmarkOverlap(DecontConfig()))
    assert len(evo) == 4 * len(EVOL_OPS) and all(r['drop'] is None for r in evo), [r['drop'] for r in evo]   # no overlap drop
    kept = list(dict.fromkeys(r['instruction'] for r in evo))
    chains = [oracle.find(i) for i in kept]
    assert all(c is not None and len(c) == 2 for c in chains) and len(kept) >= 12
    assert all(_differs_from_every_heldout_exercise(c) for c in chains)      # no evolved problem is a held-out exercise
    cfg = TeacherTestsConfig()
    rows = check_tests(teacher_tests(oracle, kept, cfg), cfg)        # the teacher's asserts, run untrusted, check by check
    assert [(r['why'], len(r['checks'])) for r in rows] == [(None, 4)] * len(kept)
    assert all(f"def {chain_name(c)}(" in r['solution'] for c, r in zip(chains, rows))
    wrong = [dict(r, solution=r['solution'].rsplit('\n    return ', 1)[0] + '\n    return None\n') for r in rows]
    assert {r['why'] for r in check_tests(wrong, cfg)} == {'tests_fail'}           # a wrong solution fails them
    ints = [dict(r, solution=r['solution'].replace('    return ', '    return 1 + ')) for r in rows if ') -> int:' in r['solution']]
    assert ints and {r['why'] for r in check_tests(ints, cfg)} == {'tests_fail'}   # so does one off by one
    probs = [evolved_problem(i, r) for i, r in enumerate(rows[:3])]     # the oracle also answers the student's question
    ranked = rrtf_samples(Scripted({'': FENCE.format('def f(x):\n    return x')}), probs, PairsConfig(samples=2), teachers=[oracle],
                          trusted_tests=False, progress=False)
    assert [[(s['outcome'], s['teacher']) for s in ss if s['reference']] for ss in ranked] == \
           [[('all_pass', 'reference solution')] + [('all_pass', 'oracle:exercises')] * 2] * 3

def test_the_oracle_answers_nothing_to_prompts_it_does_not_know():
    oracle = load_backend('oracle:exercises')
    held = chat_messages(exercises('heldout')[0])[1]['content']
    add = next(f for f in EXERCISE_FAMILIES if f.name == 'add_const')
    k = next(k for k in add.ks if k not in exercise_heldout(add))               # a training parameter of x + k
    seed = chat_messages(exercise(add, k, 'exercises-train'))[1]['content']
    unknown = ['Write a haiku about sorting.', held, seed.replace('Return x plus', 'Return x minus'),
               'Write a Python function `add_1_then_add_2(x: int) -> int`. Let y be x plus 2. Return y plus 2.']
    assert [a for (a,) in oracle.generate(unknown, [[]] * len(unknown))] == [''] * len(unknown)
    assert oracle.generate([seed], [[]], n=3)[0][0].startswith(f'```python\ndef add_{k}(x: int) -> int:\n    return x + {k}\n```')
    assert teacher_funnel(teacher_tests(oracle, unknown, TeacherTestsConfig()))['dropped'] == {'no_solution': len(unknown)}
    assert [r['drop'] for r in evolve(oracle, unknown[:2], EvolConfig(ops=['constraints']))] == ['empty', 'empty']
    with pytest.raises(ValueError) as e: load_backend('oracle:humaneval')
    assert str(e.value) == "unknown oracle 'humaneval' (known: exercises)"          # one line
