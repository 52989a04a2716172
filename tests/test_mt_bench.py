"""MT-Bench coding: FastChat's question and reference-answer files read in their real schema (local rows, and the hub
path answered offline from a hub cache on disk), the `[[rating]]` parser, two-turn answers through any backend, grading
with a scripted judge (averaging and unparseable counting with real values), a full run with the tiny model as the
judge, and `stablecode eval --tasks mt-bench-coding --judge MODEL@URL` against an OpenAI-compatible server on 127.0.0.1."""
import http.server, json, os, subprocess, sys, threading
import pytest
from stablecode.benchmarks import MT_BENCH_HUB, MT_BENCH_SAMPLE, load_mt_bench, load_mt_bench_references, write_mt_bench_sample
from stablecode.eval import (JUDGE_PROMPTS, MTBenchConfig, chat_replies, cli, judge_backend, judge_messages, judge_prompts,
                             mt_bench_answers, mt_bench_eval, mt_bench_score, mt_bench_table, parse_rating, write_mt_bench)
from stablecode.generate import Backend, OpenAIBackend, cut
from stablecode.tokenizer import get_prompt_format

QUESTIONS = [   # FastChat's question.jsonl schema: two coding questions (texts shortened), one writing question
    {'question_id': 121, 'category': 'coding', 'turns': ['Develop a Python program that reads all the text files under a '
     'directory and returns top-5 words with the most number of occurrences.', 'Can you parallelize it?'],
     'reference': ['Can be simple solutions like using Counter', 'Check the parallelization logic.']},
    {'question_id': 122, 'category': 'coding', 'turns': ['Write a C++ program to find the nth Fibonacci number using '
     'recursion.', 'Now each number is the sum of the three preceding ones, starting 0, -1, -1.']},
    {'question_id': 125, 'category': 'coding', 'turns': ['Write a function to find the highest common ancestor (not LCA) '
     'of two nodes in a binary tree.', 'What if it is not a binary tree?']},
    {'question_id': 81, 'category': 'writing', 'turns': ['Compose a travel blog post about Hawaii.', 'Rewrite it.']},
]
REFS = [{'question_id': q, 'answer_id': f'ref{q}', 'model_id': 'gpt-4', 'tstamp': 1687221271.2,   # reference_answer/gpt-4.jsonl
         'choices': [{'index': 0, 'turns': [f'gpt-4 answer {q}.1', f'gpt-4 answer {q}.2']}]} for q in (121, 122, 125)]


def _write(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows)); return path


@pytest.fixture
def files(tmp_path):
    return _write(tmp_path / 'question.jsonl', QUESTIONS), _write(tmp_path / 'gpt-4.jsonl', REFS)


# --- the loader -------------------------------------------------------------------------------------------------------
def test_loader_reads_fastchat_schema(files, tmp_path):
    q, r = files
    qs = load_mt_bench(q, r)
    assert [x.question_id for x in qs] == [121, 122, 125] and {x.category for x in qs} == {'coding'}
    assert qs[1].turns == QUESTIONS[1]['turns']
    assert qs[0].reference == ['gpt-4 answer 121.1', 'gpt-4 answer 121.2'] and qs[0].reference_from == 'gpt-4'
    assert load_mt_bench_references(r)[125] == dict(model_id='gpt-4', turns=['gpt-4 answer 125.1', 'gpt-4 answer 125.2'])
    assert [x.question_id for x in load_mt_bench(q, r, category=None)] == [121, 122, 125, 81]
    # without the answer file: the question's own `reference` field, and a clear error for those without one
    only = _write(tmp_path / 'q121.jsonl', QUESTIONS[:1])
    x = load_mt_bench(only)[0]
    assert x.reference == QUESTIONS[0]['reference'] and x.reference_from == 'question'
    with pytest.raises(ValueError, match=r'no reference answer .*\[122, 125\]'): load_mt_bench(q)


@pytest.mark.parametrize('rows, refs, msg', [
    ([{'question_id': 1, 'category': 'coding'}], None, r"lacks field\(s\) \['turns'\]"),
    ([{'question_id': 1, 'category': 'coding', 'turns': ['only one']}], None, 'two non-empty strings'),
    ([{'question_id': 1, 'category': 'coding', 'turns': ['a', 'b'], 'reference': ['r']}], None, '1 reference turn'),
    ([{'question_id': 1, 'category': 'coding', 'turns': ['a', 'b']}], [{'question_id': 1, 'choices': []}], r'choices\[0\]\.turns'),
    ([{'question_id': 1, 'category': 'math', 'turns': ['a', 'b'], 'reference': ['r', 's']}], None, r"categories: \['math'\]"),
])
def test_loader_bad_rows_one_line(tmp_path, rows, refs, msg):
    q = _write(tmp_path / 'q.jsonl', rows)
    r = _write(tmp_path / 'r.jsonl', refs) if refs is not None else None
    with pytest.raises(ValueError, match=msg): load_mt_bench(q, r)


def test_offline_sample_is_in_fastchat_schema(tmp_path):
    q, r = write_mt_bench_sample(tmp_path)
    assert r == tmp_path / 'reference_answer' / 'stablecode-sample.jsonl'
    rows = [json.loads(l) for l in q.read_text().splitlines()]
    assert all(set(x) == {'question_id', 'category', 'turns'} for x in rows)
    qs = load_mt_bench(q, r)
    assert [x.question_id for x in qs] == [i for i, _, _ in MT_BENCH_SAMPLE] and all(x.reference_from == 'stablecode-sample' for x in qs)


HUB_SCRIPT = """
import json
from stablecode.benchmarks import load_mt_bench
print(json.dumps([[q.question_id, q.reference] for q in load_mt_bench()]))
"""

def test_hub_path_offline_from_a_cache_on_disk(tmp_path):
    "No file given: the real hub code fetches FastChat's two files from the `lmsys/mt-bench` space (here from a cache)."
    rev = 'fedcba9876543210fedcba9876543210fedcba98'
    repo = tmp_path / 'hub' / ('spaces--' + MT_BENCH_HUB[0].replace('/', '--'))
    for f, rows in ((MT_BENCH_HUB[1], QUESTIONS), (MT_BENCH_HUB[2], REFS)):
        (repo / 'snapshots' / rev / f).parent.mkdir(parents=True, exist_ok=True)
        _write(repo / 'snapshots' / rev / f, rows)
    (repo / 'refs').mkdir(); (repo / 'refs' / 'main').write_text(rev)
    r = subprocess.run([sys.executable, '-c', HUB_SCRIPT], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'HF_HUB_CACHE': str(tmp_path / 'hub'), 'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == [[q, [f'gpt-4 answer {q}.1', f'gpt-4 answer {q}.2']] for q in (121, 122, 125)]


# --- the rating parser ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('text, rating', [
    ('The answer is right.\n\nRating: [[8]]', 8.0),
    ('Rating: [[6.5]]', 6.5),
    ('Rating: [[10]] - and [[2]] later', 10.0),          # the first [[x]]
    ('uses arr[3] ... Rating: [[4]]', 4.0),              # [[x]] wins over an earlier [x]
    ('Rating: [7]', 7.0),                                 # FastChat's backup pattern
    ('I would rate it 9 out of 10.', -1.0),               # missing
    ('Rating: [[seven]]', -1.0),
    ('', -1.0),
    ('Rating: [[0]]', -1.0), ('Rating: [[11]]', -1.0), ('Rating: [[10.5]]', -1.0),   # outside 1..10
    ('Rating: [[1]]', 1.0), ('Rating: [[10.0]]', 10.0),                               # the edges
])
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


# --- generation and grading -------------------------------------------------------------------------------------------
class Scripted(Backend):
    "A real Backend that answers each prompt by rule (`reply(prompt) -> text`) and keeps what it was asked."
    name = 'scripted-judge'
    def __init__(self, reply): self.reply, self.prompts, self.kw = reply, [], []
    def generate(self, prompts, stops, n=1, **kw):
        self.prompts += prompts; self.kw.append(kw)
        return [[cut(self.reply(p), st)] * n for p, st in zip(prompts, stops)]


def _model(prompt):      # answers "<question id> turn <k>" and runs on past its end marker (cut at the format's stops)
    q = next(q['question_id'] for q in QUESTIONS if q['turns'][0] in prompt)
    return f"  code for {q} turn {prompt.count('<|im_start|>user')}  <|im_end|>\n<|im_start|>user\nmore"

VERDICTS = {(121, 1): 'Correct. Rating: [[10]]', (121, 2): 'Close. Rating: [[7]]',
            (122, 1): 'Fine. Rating: [8]', (122, 2): 'I cannot decide on a number.',
            (125, 1): 'Wrong. Rating: [[0]]', (125, 2): 'Partly. Rating: [[5.5]]'}

def _judge(prompt):      # fixed judgments per (question, turn): failure injection for missing and out-of-range ratings
    q = next(q['question_id'] for q in QUESTIONS if q['turns'][0] in prompt)
    return VERDICTS[q, 2 if '[Conversation with the Assistant]' in prompt else 1]


def test_two_turn_answers_carry_the_conversation(files):
    qs = load_mt_bench(*files)
    m = Scripted(_model)
    ans = mt_bench_answers(qs, m, MTBenchConfig(system='Be brief.', max_new_tokens=77))
    assert ans == [[f'code for {q} turn 1', f'code for {q} turn 2'] for q in (121, 122, 125)]   # cut at <|im_end|>, stripped
    assert len(m.prompts) == 6 and all(k['max_new_tokens'] == 77 and k['temperature'] == 0.0 for k in m.kw)
    assert m.prompts[3] == (f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{qs[0].turns[0]}<|im_end|>\n"
                            f"<|im_start|>assistant\ncode for 121 turn 1<|im_end|>\n<|im_start|>user\n{qs[0].turns[1]}"
                            "<|im_end|>\n<|im_start|>assistant\n")


def test_a_backend_with_its_own_chat_gets_the_messages():
    class Local(Backend):                # like 11_quantize's local runtimes: `chat(messages, ...)` yields text pieces
        name = 'local'
        def __init__(self): self.seen = []
        def chat(self, messages, max_new_tokens=256, temperature=0.0, top_p=0.95, prompt_format=None):
            self.seen.append((messages, max_new_tokens, prompt_format)); yield 'Rating: '; yield '[[3]]'
    b = Local()
    conv = [dict(role='user', content='hi')]
    assert chat_replies(b, [conv, conv], 'chatml', max_new_tokens=9) == ['Rating: [[3]]'] * 2
    assert b.seen[0] == (conv, 9, 'chatml')


def test_grading_averages_both_turns_and_counts_unparseable(files, tmp_path):
    qs = load_mt_bench(*files)
    judge = Scripted(_judge)
    r = mt_bench_eval(qs, Scripted(_model), judge, tmp_path / 'out', MTBenchConfig(judge_max_new_tokens=99), model='m')
    assert [p['ratings'] for p in r.per_question] == [[10.0, 7.0], [8.0, -1.0], [-1.0, 5.5]]
    assert r.unparseable == 2 and r.judgments == 6 and r.questions == 3
    assert r.turn_scores == [9.0, 6.25] and r.score == pytest.approx((10 + 7 + 8 + 5.5) / 4)
    assert all(k['max_new_tokens'] == 99 and k['temperature'] == 0.0 for k in judge.kw)
    # the judge saw the references and the answers: turn 1 alone, turn 2 the conversation with both references
    t1, t2 = judge.prompts[0], judge.prompts[1]
    assert 'gpt-4 answer 121.1' in t1 and 'code for 121 turn 1' in t1 and 'turn 2' not in t1
    assert all(s in t2 for s in ('gpt-4 answer 121.1', 'gpt-4 answer 121.2', 'code for 121 turn 1', 'code for 121 turn 2'))
    assert t1.startswith('<|im_start|>system\n' + JUDGE_PROMPTS[0]['system_prompt'])
    # FastChat's files: model answers and single-answer judgments
    ans = [json.loads(l) for l in (tmp_path / 'out' / 'model_answer.jsonl').read_text().splitlines()]
    assert [a['choices'][0]['turns'] for a in ans] == [[f'code for {q} turn 1', f'code for {q} turn 2'] for q in (121, 122, 125)]
    assert {'question_id', 'answer_id', 'model_id', 'choices', 'tstamp'} <= set(ans[0]) and ans[0]['model_id'] == 'm'
    js = [json.loads(l) for l in (tmp_path / 'out' / 'judgment.jsonl').read_text().splitlines()]
    assert [(j['question_id'], j['turn'], j['score']) for j in js] == [
        (121, 1, 10.0), (121, 2, 7.0), (122, 1, 8.0), (122, 2, -1.0), (125, 1, -1.0), (125, 2, 5.5)]
    assert js[3]['judgment'] == 'I cannot decide on a number.'
    assert js[0]['judge'] == ['scripted-judge', 'stablecode-ref-v1'] and js[1]['judge'][1] == 'stablecode-ref-v1-multi-turn'
    # the table beside the card
    md = write_mt_bench(r, tmp_path / 'out')['md'].read_text()
    assert '| m | scripted-judge | 3 | 9.00 | 6.25 | 7.62 | 2/6 |' in md
    assert '| Stable Code Instruct 3B (DPO) (card) | not stated | | | | 5.80 | |' in md and '5.50' in md
    assert json.loads((tmp_path / 'out' / 'mt_bench.json').read_text())['unparseable'] == 2


def test_a_failing_judge_leaves_the_answers(files, tmp_path):
    class Down(Backend):
        name = 'down'
        def generate(self, *a, **kw): raise RuntimeError('judge server down')
    with pytest.raises(RuntimeError, match='judge server down'):
        mt_bench_eval(load_mt_bench(*files), Scripted(_model), Down(), tmp_path)
    assert len((tmp_path / 'model_answer.jsonl').read_text().splitlines()) == 3 and not (tmp_path / 'judgment.jsonl').exists()


def test_no_valid_rating_gives_no_score():
    from stablecode.benchmarks import MTQuestion
    q = MTQuestion(121, 'coding', ['a', 'b'], ['r1', 'r2'])
    r = mt_bench_score([q], [[-1.0, -1.0]])
    assert r.score is None and r.turn_scores == [None, None] and r.unparseable == 2
    assert '| this model | judge | 1 | – | – | – | 2/2 |' in mt_bench_table(r)


def test_fastchat_judge_prompt_file(files, tmp_path):
    "FastChat's judge_prompts.jsonl rows (its real single-math-v1 pair, abridged wording) are used as given."
    rows = [dict(name='pair-v2', type='pairwise', system_prompt='x', prompt_template='{question}', output_format='[[A]]'),
            dict(name='single-math-v1', type='single', category='math', output_format='[[rating]]', description='',
                 system_prompt='You are a helpful assistant.',
                 prompt_template="[Instruction]\nRate 1-10 as \"[[rating]]\".\n\n[Question]\n{question}\n\n[The Start of "
                                 "Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of "
                                 "Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"),
            dict(name='single-math-v1-multi-turn', type='single', category='math', output_format='[[rating]]',
                 description='', system_prompt='Focus on the second answer. Rate as "[[rating]]".\n\n',
                 prompt_template="<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n"
                                 "{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n"
                                 "<|The End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with "
                                 "User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n"
                                 "{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's "
                                 "Conversation with User|>")]
    path = _write(tmp_path / 'judge_prompts.jsonl', rows)
    cfg = MTBenchConfig(judge_prompts=str(path))
    p1, p2 = judge_prompts(cfg)
    q = load_mt_bench(*files)[0]
    m = judge_messages(q, ['A1', 'A2'], (p1, p2))
    assert m[0][0]['content'] == 'You are a helpful assistant.'
    assert m[0][1]['content'].endswith("[The Start of Assistant's Answer]\nA1\n[The End of Assistant's Answer]")
    assert '### Reference answer:\ngpt-4 answer 121.2' in m[1][1]['content'] and '### Assistant A:\nA2' in m[1][1]['content']
    with pytest.raises(ValueError, match="not a single-answer"):
        judge_prompts(MTBenchConfig(judge_prompts=str(path), judge_prompt_turn1='pair-v2'))
    bad = _write(tmp_path / 'bad.jsonl', [dict(rows[1], prompt_template='{question} {nonsense}'), rows[2]])
    with pytest.raises(ValueError, match='unknown placeholder'):
        judge_messages(q, ['A1', 'A2'], judge_prompts(MTBenchConfig(judge_prompts=str(bad))))


def test_tiny_model_as_the_judge(files, tmp_path):
    "A full run where the model and the judge are the tiny transformers model: real judgments, all counted."
    import torch
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from stablecode.config import preset
    from stablecode.generate import HFBackend
    from stablecode.model import StableCodeForCausalLM
    from stablecode.tokenizer import SPECIAL_TOKENS
    torch.manual_seed(0)
    t = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}, merges=[]))
    t.pre_tokenizer, t.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    t.add_special_tokens(SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token='<|endoftext|>')
    tiny = HFBackend(StableCodeForCausalLM(preset('tiny', vocab_size=len(tok), num_hidden_layers=2, bos_token_id=tok.eos_token_id,
                                                  eos_token_id=tok.eos_token_id)), tok, device='cpu')
    qs = load_mt_bench(*files)[:2]
    r = mt_bench_eval(qs, tiny, tiny, tmp_path, MTBenchConfig(max_new_tokens=6, judge_max_new_tokens=6), model='tiny')
    js = [json.loads(l) for l in (tmp_path / 'judgment.jsonl').read_text().splitlines()]
    assert len(js) == r.judgments == 4 and r.judge == tiny.name
    assert [j['score'] for j in js] == [parse_rating(j['judgment']) for j in js]        # every judgment parsed as stored
    assert r.unparseable == sum(j['score'] == -1 for j in js)
    valid = [j['score'] for j in js if j['score'] != -1]
    assert r.score == (sum(valid) / len(valid) if valid else None)


# --- the command line, with the judge behind an OpenAI-compatible server ----------------------------------------------
def test_cli_mt_bench_with_a_judge_server(files, tmp_path, capsys):
    seen = []
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            seen.append(body)
            p = body['prompt']
            text = (_judge(p) if body['model'] == 'judge-70b' else _model(p)) + '<|im_end|>ignored'
            data = json.dumps({'choices': [{'index': 0, 'text': text}]}).encode()
            self.send_response(200); self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data))); self.end_headers(); self.wfile.write(data)
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{srv.server_port}/v1'
    q, r = files
    MTBenchConfig(max_new_tokens=50, judge_max_new_tokens=60).to_yaml(tmp_path / 'mt.yaml')
    try:
        rc = cli(['--tasks', 'mt-bench-coding', '--endpoint', url, '--model', 'student', '--judge', f'judge-70b@{url}',
                  '--judge-format', 'alpha',
                  '--data', f'mt-bench-coding={q}', '--reference-answers', str(r), '--mt-bench-config', str(tmp_path / 'mt.yaml'),
                  '--out', str(tmp_path / 'out')])
    finally: srv.shutdown(); srv.server_close()
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'mt-bench-coding: score 7.62 over 3 questions x 2 turns' in out and '2/6 judgments unparseable' in out
    md = (tmp_path / 'out' / 'mt_bench' / 'mt_bench.md').read_text()
    assert f'| student | judge-70b@{url} | 3 | 9.00 | 6.25 | 7.62 | 2/6 |' in md
    students, judges = [b for b in seen if b['model'] == 'student'], [b for b in seen if b['model'] == 'judge-70b']
    assert len(students) == 6 and len(judges) == 6
    assert all(b['max_tokens'] == 50 and b['temperature'] == 0.0 for b in students)
    assert all(b['max_tokens'] == 50 and b['temperature'] == 0.0 and '<|im_start|>user' in b['prompt'] for b in students)
    alpha = get_prompt_format('alpha')          # the judge is prompted in --judge-format, the student in ChatML
    assert all(b['max_tokens'] == 60 and b['temperature'] == 0.0 and b['stop'] == list(alpha.stops)
               and '<|im_start|>' not in b['prompt'] for b in judges)


@pytest.mark.parametrize('args, msg', [
    (['--tasks', 'mt-bench-coding', '--endpoint', 'http://127.0.0.1:9/v1', '--model', 'x'], 'needs --judge MODEL@URL'),
    (['--tasks', 'mt-bench-coding', '--canonical', '--judge', 'j@http://127.0.0.1:9/v1'], 'needs --judge'),
    (['--tasks', 'mt-bench-coding', '--endpoint', 'http://127.0.0.1:9/v1', '--model', 'x', '--judge', 'gpt-4'],
     'neither MODEL@URL'),
])
def test_cli_mt_bench_errors_one_line(files, tmp_path, capsys, args, msg):
    q, r = files
    rc = cli(args + ['--data', f'mt-bench-coding={q}', '--reference-answers', str(r), '--out', str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1


def test_cli_judge_server_down_one_line(files, tmp_path, capsys):
    q, r = files
    MTBenchConfig(max_new_tokens=4).to_yaml(tmp_path / 'mt.yaml')
    rc = cli(['--tasks', 'mt-bench-coding', '--endpoint', 'http://127.0.0.1:9/v1', '--model', 'x', '--judge',
              'j@http://127.0.0.1:9/v1', '--data', f'mt-bench-coding={q}', '--reference-answers', str(r),
              '--mt-bench-config', str(tmp_path / 'mt.yaml'), '--out', str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and '127.0.0.1:9' in err and 'Traceback' not in err


def test_judge_backend_names():
    b = judge_backend('judge-70b@http://localhost:8000/v1')
    assert isinstance(b, OpenAIBackend) and b.model == 'judge-70b' and b.url == 'http://localhost:8000/v1/completions'
