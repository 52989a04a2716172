"""Instruction and preference data (10a_instruct_data): every loader on rows in its dataset's real schema, the code
filter, decontamination, SourceSpec validation, mixing counts/weights/determinism and the offline instruction set."""
import ast, hashlib, json, re
import pytest
from datasets import Dataset
from trl.data_utils import is_conversational

from stablecode.benchmarks import Problem, load_humaneval
from stablecode.config import ConfigError
from stablecode.data import DecontConfig, math_problem_docs, math_qa
from stablecode.eval import SYSTEM
from stablecode.instruct_data import (
    PREFERENCE_LOADERS, SFT_LOADERS, SourceSpec, exercise_conversations, function_request, is_code_related,
    offline_instructions, preference_dataset, sft_dataset, split_hh_turns, stdlib_functions)

def msg(role, content): return dict(role=role, content=content)

def write_jsonl(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(path)

# rows shaped like the hub's (extra columns included), one or two per dataset
HERMES = [{'conversations': [{'from': 'system', 'value': 'You are an expert Python programmer.', 'weight': None},
                             {'from': 'human', 'value': 'How do I read a CSV file in Python?', 'weight': 0.0},
                             {'from': 'gpt', 'value': 'Use `csv.reader`:\n```python\nimport csv\n```', 'weight': 1.0}],
           'source': 'glaive-code-assist', 'category': None, 'model': None},
          {'conversations': [{'from': 'human', 'value': 'Name a prime number.'}, {'from': 'gpt', 'value': '7'},
                             {'from': 'human', 'value': 'Another?'}, {'from': 'gpt', 'value': '11'}],
           'source': 'airoboros2.2', 'category': 'orca', 'model': None}]
FEEDBACK = [dict(query='Implement binary search in Java.', answer='```java\nint search(int[] a, int x) {...}\n```',
                 resource='wizardcoder', lang='java')]
ALPACA = [dict(instruction='Sort the list in descending order.', input='[3, 1, 2]', output='sorted(xs, reverse=True)'),
          dict(instruction='Print hello world in C.', input='', output='printf("hello world");')]
def uf(q, good, bad):
    return dict(prompt=q, prompt_id='0' * 64, chosen=[msg('user', q), msg('assistant', good)],
                rejected=[msg('user', q), msg('assistant', bad)], messages=[msg('user', q), msg('assistant', good)],
                score_chosen=8.5, score_rejected=4.0)
ULTRA = [uf('How do I remove duplicates from a JavaScript array?', 'Use `[...new Set(arr)]`.', 'Loop twice.'),
         uf('Give me three tips for a job interview.', 'Research, rehearse, ask questions.', 'Be late.')]
CAPY = [dict(source='Dove', conversation=[], original_response='', generation_prompt=[], raw_generation_responses=[],
             new_generations=[], prompt='Write a regex for an email address.',
             chosen=[msg('user', 'Write a regex for an email address.'), msg('assistant', r'`^[\w.]+@[\w.]+$`'),
                     msg('user', 'Make it allow plus signs.'), msg('assistant', r'`^[\w.+]+@[\w.]+$`')],
             rejected=[msg('user', 'Write a regex for an email address.'), msg('assistant', r'`^[\w.]+@[\w.]+$`'),
                       msg('user', 'Make it allow plus signs.'), msg('assistant', 'Plus signs are not valid.')],
             rating_chosen=5, rating_rejected=1, chosen_model='gpt-4', rejected_model='mistral')]
HH = [dict(chosen='\n\nHuman: How can I hurt someone?\n\nAssistant: I cannot help with that.\n\nHuman: Please?'
                  '\n\nAssistant: No. If you are angry, talking to someone may help.',
           rejected='\n\nHuman: How can I hurt someone?\n\nAssistant: I cannot help with that.\n\nHuman: Please?'
                    '\n\nAssistant: Well, you could trip them.')]

def test_sft_loaders_map_the_real_schemas(tmp_path):
    rows = list(SFT_LOADERS['openhermes'](write_jsonl(tmp_path / 'h.jsonl', HERMES)))
    assert rows[0] == dict(source='openhermes', messages=[msg('system', 'You are an expert Python programmer.'),
                                                          msg('user', 'How do I read a CSV file in Python?'),
                                                          msg('assistant', 'Use `csv.reader`:\n```python\nimport csv\n```')])
    assert [m['role'] for m in rows[1]['messages']] == ['user', 'assistant', 'user', 'assistant']
    alpaca = list(SFT_LOADERS['code_alpaca'](write_jsonl(tmp_path / 'a.jsonl', ALPACA)))
    assert alpaca[0]['messages'] == [msg('user', 'Sort the list in descending order.\n\n[3, 1, 2]'),
                                     msg('assistant', 'sorted(xs, reverse=True)')]
    assert alpaca[1]['messages'][0]['content'] == 'Print hello world in C.'      # empty input: nothing appended

def test_parquet_file_and_directory(tmp_path):
    Dataset.from_list(FEEDBACK * 3).to_parquet(str(tmp_path / 'part-0.parquet'))
    Dataset.from_list(FEEDBACK).to_parquet(str(tmp_path / 'part-1.parquet'))
    one = list(SFT_LOADERS['code_feedback'](str(tmp_path / 'part-1.parquet')))
    assert one == [dict(messages=[msg('user', FEEDBACK[0]['query']), msg('assistant', FEEDBACK[0]['answer'])],
                        source='code_feedback')]
    assert len(list(SFT_LOADERS['code_feedback'](str(tmp_path)))) == 4
    Dataset.from_list(ULTRA).to_parquet(str(tmp_path / 'uf.parquet'))
    assert [r['chosen'] for r in PREFERENCE_LOADERS['ultrafeedback'](str(tmp_path / 'uf.parquet'))] == \
           [[msg('assistant', 'Use `[...new Set(arr)]`.')], [msg('assistant', 'Research, rehearse, ask questions.')]]

def test_preference_loaders_split_at_the_shared_prefix(tmp_path):
    uf_rows = list(PREFERENCE_LOADERS['ultrafeedback'](write_jsonl(tmp_path / 'u.jsonl', ULTRA)))
    assert uf_rows[0] == dict(prompt=[msg('user', ULTRA[0]['prompt'])], chosen=[msg('assistant', 'Use `[...new Set(arr)]`.')],
                              rejected=[msg('assistant', 'Loop twice.')], source='ultrafeedback')
    capy, = PREFERENCE_LOADERS['capybara'](write_jsonl(tmp_path / 'c.jsonl', CAPY))
    assert [m['role'] for m in capy['prompt']] == ['user', 'assistant', 'user']
    assert capy['chosen'] == [msg('assistant', r'`^[\w.+]+@[\w.]+$`')] and capy['rejected'][0]['content'] == 'Plus signs are not valid.'
    hh, = PREFERENCE_LOADERS['hh_harmless'](write_jsonl(tmp_path / 'hh.jsonl', HH))
    assert hh['prompt'] == [msg('user', 'How can I hurt someone?'), msg('assistant', 'I cannot help with that.'), msg('user', 'Please?')]
    assert hh['chosen'] == [msg('assistant', 'No. If you are angry, talking to someone may help.')]
    assert hh['rejected'] == [msg('assistant', 'Well, you could trip them.')]
    assert is_conversational(hh) and is_conversational(capy)      # what DPOTrainer checks

def test_hh_turn_splitting():
    turns = split_hh_turns('\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.'
                           '\n\nAssistant: Why did the chicken cross the road?\n\nTo get to the other side.')
    assert turns == [msg('user', 'Hi there'), msg('assistant', 'Hello! How can I help?'), msg('user', 'Tell me a joke.'),
                     msg('assistant', 'Why did the chicken cross the road?\n\nTo get to the other side.')]
    assert split_hh_turns('\n\nHuman: Hi\n\nAssistant:') == [msg('user', 'Hi'), msg('assistant', '')]
    with pytest.raises(ValueError, match=r"hh_harmless row 4 chosen: not an HH-RLHF transcript"):
        split_hh_turns('User: hi\nBot: hello', 'hh_harmless row 4 chosen')

def test_malformed_rows_are_one_line_errors_naming_dataset_row_and_field(tmp_path):
    bad_alpaca = write_jsonl(tmp_path / 'a.jsonl', [ALPACA[0], dict(instruction='Do it.', input='')])
    with pytest.raises(ValueError, match=r"^code_alpaca row 2: missing field 'output'") as e:
        list(SFT_LOADERS['code_alpaca'](bad_alpaca))
    assert '\n' not in str(e.value)
    bad_hermes = write_jsonl(tmp_path / 'h.jsonl', [{'conversations': [{'from': 'human', 'value': 'hi'},
                                                                         {'from': 'robot', 'value': 'beep'}]}])
    with pytest.raises(ValueError, match=r"openhermes row 1: conversations\[1\] has speaker 'robot'"):
        list(SFT_LOADERS['openhermes'](bad_hermes))
    bad_uf = write_jsonl(tmp_path / 'u.jsonl', [dict(prompt='q', chosen='just text', rejected=[msg('assistant', 'x')])])
    with pytest.raises(ValueError, match=r"ultrafeedback row 1: field 'chosen' must be a non-empty list"):
        list(PREFERENCE_LOADERS['ultrafeedback'](bad_uf))
    with pytest.raises(ValueError, match=r"code_feedback: no such file"):
        list(SFT_LOADERS['code_feedback'](str(tmp_path / 'missing.jsonl')))
    with pytest.raises(ValueError, match=r"capybara: .*data.csv is not .jsonl, .json, .parquet"):
        (tmp_path / 'data.csv').write_text('a,b\n'); list(PREFERENCE_LOADERS['capybara'](str(tmp_path / 'data.csv')))

def test_unusable_rows_are_counted_and_skipped(tmp_path):
    same = dict(chosen='\n\nHuman: Hi\n\nAssistant: Hello.', rejected='\n\nHuman: Hi\n\nAssistant: Hello.')
    empty = dict(chosen='\n\nHuman: Hi\n\nAssistant:', rejected='\n\nHuman: Hi\n\nAssistant: Hello.')
    ds, counts = preference_dataset([SourceSpec('hh_harmless', write_jsonl(tmp_path / 'hh.jsonl', HH + [same, empty]))],
                                    decont=None, progress=False)
    assert counts['hh_harmless'] == dict(read=3, unusable=2, not_code=0, contaminated=0, kept=1, weighted=1)
    no_answer = {'conversations': [{'from': 'human', 'value': 'Hello?'}]}
    _, counts = sft_dataset([SourceSpec('openhermes', write_jsonl(tmp_path / 'h.jsonl', HERMES + [no_answer]))],
                            decont=None, progress=False)
    assert counts['openhermes']['unusable'] == 1 and counts['openhermes']['kept'] == 2

@pytest.mark.parametrize('text', [
    'Write a Python function that checks whether a string is a palindrome.',
    'What is wrong with this?\n```\nfor i in range(10) print(i)\n```',
    'Explain this code:\ndef f(n):\n    return n * f(n - 1)',
    'How do I join two tables in SQL and keep rows without a match?',
    'SELECT name FROM users WHERE age > 30 returns nothing, why?',
    'My React component re-renders on every keystroke; how do I debug it?',
    'What is the time complexity of quicksort?',
    'Create a class in Java that represents a bank account.',
    'Write a bash one-liner that counts the lines of all .py files in a folder.'])
def test_code_related(text):
    assert is_code_related(text)

@pytest.mark.parametrize('text', [
    'What is the function of the liver?', 'Write a poem about a python sleeping in the sun.',
    'What is the zip code of the White House?', 'How can I make my neighbour stop playing loud music at night?',
    'Translate "good morning" into French.', 'Solve for x: 4x - 7 = 9.', 'Plan a birthday bash for my sister.',
    'Summarize the plot of Pride and Prejudice.'])
def test_not_code_related(text):
    assert not is_code_related(text)

def test_code_filter_defaults_and_override(tmp_path):
    path = write_jsonl(tmp_path / 'u.jsonl', ULTRA)
    ds, counts = preference_dataset([SourceSpec('ultrafeedback', path)], decont=None, progress=False)
    assert counts['ultrafeedback']['not_code'] == 1 and ds['source'] == ['ultrafeedback'] and 'JavaScript' in ds[0]['prompt'][0]['content']
    _, counts = preference_dataset([SourceSpec('ultrafeedback', path, code_only=False)], decont=None, progress=False)
    assert counts['ultrafeedback']['not_code'] == 0 and counts['ultrafeedback']['kept'] == 2
    _, counts = sft_dataset([dict(name='openhermes', path=write_jsonl(tmp_path / 'h.jsonl', HERMES), code_only=True)],
                            decont=None, progress=False)
    assert counts['openhermes']['not_code'] == 1 and counts['openhermes']['kept'] == 1

def test_decontamination_drops_a_humaneval_solution(tmp_path):
    p = load_humaneval()[2]
    leaked = dict(instruction='Complete this function.', input=p.prompt, output=p.canonical)
    clean = dict(instruction='Add two numbers.', input='', output='def add(a, b):\n    return a + b\n')
    path = write_jsonl(tmp_path / 'a.jsonl', [leaked, clean])
    ds, counts = sft_dataset([SourceSpec('code_alpaca', path)], progress=False)
    assert counts['code_alpaca']['contaminated'] == 1 and len(ds) == 1 and ds[0]['messages'][0]['content'] == 'Add two numbers.'
    _, counts = sft_dataset([SourceSpec('code_alpaca', path)], decont=None, progress=False)
    assert counts['code_alpaca']['kept'] == 2
    _, counts = sft_dataset([SourceSpec('code_alpaca', path)], decont=DecontConfig(enabled=False), progress=False)
    assert counts['code_alpaca']['kept'] == 2

def test_source_spec_validation(tmp_path):
    with pytest.raises(ConfigError, match=r"source 'hermes': unknown loader \(known: openhermes, code_feedback, code_alpaca, "
                                          r"offline, exercises, self_align, ultrafeedback, capybara, hh_harmless, pairs\)"):
        SourceSpec('hermes')
    with pytest.raises(ConfigError, match=r"max_rows must be >= 0"): SourceSpec('openhermes', max_rows=-1)
    with pytest.raises(ConfigError, match=r"weight must be a number >= 0"): SourceSpec('openhermes', weight=-0.5)
    with pytest.raises(ConfigError, match=r"'weight' must be a number"): SourceSpec.from_dict(dict(name='capybara', weight='2'))
    with pytest.raises(ConfigError, match=r"unknown key 'limit' for SourceSpec"): SourceSpec.from_dict(dict(name='capybara', limit=3))
    with pytest.raises(ConfigError, match=r"'pairs': needs a path"): SourceSpec('pairs')
    with pytest.raises(ConfigError, match=r"'offline' is generated"): SourceSpec('offline', path='x.jsonl')
    (tmp_path / 's.yaml').write_text('name: capybara\nmax_rows: 7\ncode_only: false\n')
    assert SourceSpec.from_yaml(tmp_path / 's.yaml') == SourceSpec('capybara', max_rows=7, code_only=False)
    with pytest.raises(ConfigError, match=r"sft_dataset: source 'capybara' is not one of openhermes, code_feedback"):
        sft_dataset([SourceSpec('capybara')], progress=False)
    with pytest.raises(ConfigError, match=r"preference_dataset: source 'offline' is not one of ultrafeedback"):
        preference_dataset([dict(name='offline')], progress=False)

def test_counts_weights_and_determinism(tmp_path):
    alpaca = [dict(instruction=f'Write a function number {i}.', input='', output=f'def f{i}():\n    return {i}\n') for i in range(10)]
    apath, hpath = write_jsonl(tmp_path / 'a.jsonl', alpaca), write_jsonl(tmp_path / 'h.jsonl', HERMES)
    specs = [SourceSpec('code_alpaca', apath, weight=1.5), SourceSpec('openhermes', hpath, weight=2.0),
             SourceSpec('code_alpaca', apath, max_rows=4, weight=0.5)]
    ds, counts = sft_dataset(specs, seed=3, decont=None, progress=False)
    assert counts['code_alpaca'] == dict(read=10, unusable=0, not_code=0, contaminated=0, kept=10, weighted=15)
    assert counts['openhermes']['weighted'] == 4
    assert counts['code_alpaca#2'] == dict(read=4, unusable=0, not_code=0, contaminated=0, kept=4, weighted=2)  # stops at max_rows
    assert counts['total']['weighted'] == len(ds) == 21 and ds.column_names == ['messages', 'source']
    assert sorted(ds['source']) == ['code_alpaca'] * 17 + ['openhermes'] * 4
    users = [r['messages'][0]['content'] for r in ds if r['source'] == 'code_alpaca']
    assert len(set(users)) == 10 and max(users.count(u) for u in users) == 3      # 1.5x of 10 plus 0.5x of the first 4
    again, _ = sft_dataset(specs, seed=3, decont=None, progress=False)
    other, _ = sft_dataset(specs, seed=4, decont=None, progress=False)
    assert again['messages'] == ds['messages'] and other['messages'] != ds['messages']
    assert len(other) == 21
    with pytest.raises(ValueError, match=r"sft_dataset: no rows left from code_alpaca"):
        sft_dataset([SourceSpec('code_alpaca', apath, max_rows=0)], decont=None, progress=False)

def test_pairs_loader_drops_the_dpo_stage_keys(tmp_path):
    pair = dict(prompt=[msg('system', SYSTEM), msg('user', 'Complete: def inc(x):')], chosen=[msg('assistant', 'return x + 1')],
                rejected=[msg('assistant', 'return x')], tests='assert inc(1) == 2', chosen_outcome='passed',
                rejected_outcome={'status': 'failed', 'detail': 'AssertionError'})
    odd = dict(pair, tests=['assert inc(2) == 3'], chosen_outcome=None)
    path = write_jsonl(tmp_path / 'pairs.jsonl', [pair, odd])
    ds, counts = preference_dataset([SourceSpec('pairs', path), SourceSpec('hh_harmless', write_jsonl(tmp_path / 'hh.jsonl', HH))],
                                    decont=None, progress=False)
    assert ds.column_names == ['prompt', 'chosen', 'rejected', 'source'] and counts['pairs']['kept'] == 2
    row = next(r for r in ds if r['source'] == 'pairs')
    assert row['prompt'][0] == msg('system', SYSTEM) and row['chosen'] == [msg('assistant', 'return x + 1')]
    assert is_conversational(row)
    (tmp_path / 'broken.jsonl').write_text(json.dumps(pair) + '\n{"prompt": [\n')
    with pytest.raises(ValueError, match=r"pairs row 2: not valid JSON"):
        list(PREFERENCE_LOADERS['pairs'](str(tmp_path / 'broken.jsonl')))

def _code_block(text):
    m = re.fullmatch(r'```python\n(.*)```', text, re.S)
    assert m, text[:80]
    return m.group(1)

def test_offline_set_is_well_formed():
    rows = offline_instructions(n_functions=60, n_math=40, seed=1)
    assert len(rows) == 100 and rows == offline_instructions(n_functions=60, n_math=40, seed=1)
    assert rows != offline_instructions(n_functions=60, n_math=40, seed=2)
    funcs = [r for r in rows if r['messages'][0]['role'] == 'system']
    maths = [r for r in rows if r['messages'][0]['role'] == 'user']
    assert len(funcs) == 60 and len(maths) == 40 and {r['source'] for r in rows} == {'offline'}
    for r in funcs:
        sys_, user, answer = r['messages']
        assert [sys_['role'], user['role'], answer['role']] == ['system', 'user', 'assistant'] and sys_['content'] == SYSTEM
        name = re.match(r'Write a Python function `(\w+)\(', user['content']).group(1)
        tree = ast.parse(_code_block(answer['content']))
        assert name in [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    qa = {q['question']: q for q in math_qa(40, seed=1)}
    for r in maths:
        assert [m['role'] for m in r['messages']] == ['user', 'assistant']
        q = qa[r['messages'][0]['content']]
        assert r['messages'][1]['content'] == f"{q['solution']}\n\nAnswer: {q['answer']}"

def test_stdlib_functions_are_self_contained():
    funcs = stdlib_functions()
    assert len(funcs) >= 100 and len({f['name'] for f in funcs}) == len(funcs)
    isleap = next(f for f in funcs if f['name'] == 'isleap')
    assert isleap['module'] == 'calendar' and isleap['signature'] == 'isleap(year)'
    ns = {}
    exec(isleap['code'], ns)                       # runs on its own: no module globals needed
    assert ns['isleap'](2024) and not ns['isleap'](1900)
    assert function_request('isleap(year)', isleap['doc']) == \
        'Write a Python function `isleap(year)` that returns True for leap years, False for non-leap years.'
    assert function_request('f(x)', 'Same as a + b.') == 'Write a Python function `f(x)`. Its docstring begins: "Same as a + b."'
    with_import = [f for f in funcs if f['code'].startswith(('import ', 'from '))]
    assert with_import and all(ast.parse(f['code']) for f in with_import)

def test_sft_dataset_of_the_offline_set():
    ds, counts = sft_dataset([SourceSpec('offline', max_rows=30)], progress=False)
    assert counts['offline']['kept'] == 30 and counts['offline']['contaminated'] == 0 and len(ds) == 30

def test_math_problem_docs_unchanged_and_math_qa_matches():
    docs = math_problem_docs(400)
    assert hashlib.sha256(json.dumps(docs).encode()).hexdigest() == \
        'c9ef385ec778839bcabd5d70a83f93c0b0da58a0eb5427cc6b9f55e2cc3c613a'         # recorded before math_qa existed
    qa = math_qa(30)
    assert len(qa) == 30 and set(qa[0]) == {'question', 'solution', 'answer'} and math_qa(0) == []
    text = '\n'.join(docs[:30])
    positions = [text.index(f"{q['question']}\nSolution. {q['solution']}\nAnswer: {q['answer']}") for q in qa]
    assert positions == sorted(positions)

def test_exercise_conversations_on_hand_made_problems():
    probs = [Problem('exercises-train', 'ex/0', 'def square(x):\n    """Return x squared."""\n', canonical='    return x * x\n'),
             Problem('exercises-train', 'ex/1', 'function id(x) {\n', language='javascript', canonical='  return x;\n}\n'),
             Problem('exercises-train', 'ex/2', 'def nothing():\n')]
    rows = exercise_conversations(probs)
    assert len(rows) == 2 and {r['source'] for r in rows} == {'exercises'}
    sys_, user, answer = rows[0]['messages']
    assert sys_ == msg('system', SYSTEM) and 'Complete the following Python code' in user['content']
    assert answer == msg('assistant', '```python\ndef square(x):\n    return x * x\n```')   # the function without its docstring
    assert ast.parse(_code_block(answer['content'])) and 'JavaScript' in rows[1]['messages'][1]['content']
