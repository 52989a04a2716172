"""A real OpenAI-compatible server: llama.cpp's (`python -m llama_cpp.server`, the `server` extra of llama-cpp-python)
serving a tiny GGUF made here, on loopback. Evaluation, Evol-Instruct, a teacher and self-alignment's generation run
through `OpenAIBackend` against it, and what the server does its own way is pinned down: it answers one choice whatever
`n` asks (the backend asks again), it samples with llama.cpp's defaults unless told otherwise (repeat penalty 1.1,
top-k 40, min-p 0.05), it ends at `<|im_end|>` by itself, and it refuses a prompt beyond its context in one line.
(The hand-written HTTP stubs of tests/test_eval.py and tests/test_self_align.py remain for what a real server cannot be
made to do on demand.)"""
import json, re, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

from stablecode import self_align as sa
from stablecode.benchmarks import PY_STOP, load_humaneval, load_task
from stablecode.dpo import PairsConfig
from stablecode.eval import evaluate
from stablecode.generate import HFBackend, OpenAIBackend
from stablecode.quantize import GGUFBackend, convert_gguf, random_checkpoint
from stablecode.rrtf import EVOL_DROPS, EvolConfig, evol_funnel, evolve, rrtf_rows, rrtf_samples, teacher_backends
from stablecode.tokenizer import IM_END, PROMPT_FORMATS

PLAIN = dict(top_k=0, min_p=0.0, repeat_penalty=1.0)   # llama.cpp's sampling reduced to temperature and top-p (vLLM's)


def _posts(srv) -> int:
    "Completion requests the server has answered so far (uvicorn's access log)."
    return srv['log'].read_text().count('"POST /v1/completions HTTP/1.1" 200')


@pytest.fixture(scope='module')
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp('llama_server')
    src = random_checkpoint(d / 'tiny', rope_theta=1_000_000.0)
    gguf = convert_gguf(src, d / 'tiny-f32.gguf', 'f32', progress=False)   # f32: llama.cpp computes what torch does
    log = d / 'server.log'
    with open(log, 'w') as fh:
        p = subprocess.Popen([sys.executable, '-m', 'llama_cpp.server', '--model', str(gguf), '--model_alias', 'tiny',
                              '--host', '127.0.0.1', '--port', '0', '--n_ctx', '2048', '--n_threads', '2', '--verbose', 'False'],
                             stdout=fh, stderr=subprocess.STDOUT)
    try:
        url, deadline = None, time.time() + 60                 # port 0: uvicorn picks a free port and logs it
        while url is None:
            if p.poll() is not None or time.time() > deadline:
                pytest.fail(f"llama.cpp's server did not start: ...{log.read_text()[-800:]}")
            if (m := re.search(r'Uvicorn running on (http://127\.0\.0\.1:\d+)', log.read_text())): url = m.group(1) + '/v1'
            else: time.sleep(0.2)
        urllib.request.urlopen(url + '/models', timeout=10).read()
        yield dict(url=url, src=src, gguf=gguf, log=log, backend=OpenAIBackend(url, 'tiny', timeout=120, retries=1))
    finally:
        p.terminate()
        try: p.wait(10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()


def test_n_is_one_choice_and_the_backend_asks_for_the_rest(srv):
    b = srv['backend']
    raw = b._post(dict(model='tiny', prompt='def add(x, y):\n', n=3, temperature=0.8, max_tokens=8))
    assert len(raw['choices']) == 1                            # llama.cpp's server ignores `n`
    before = _posts(srv)
    got = b.generate(['def add(x, y):\n', 'import os\n'], [[], []], n=3, temperature=0.8, max_new_tokens=8)
    assert [len(g) for g in got] == [3, 3] and _posts(srv) - before == 6    # one request per sample
    assert len(set(got[0])) > 1                                # each request draws a new seed: distinct samples
    assert len(OpenAIBackend(srv['url'], 'no-such-model').generate(['x'], [[]], max_new_tokens=4)[0]) == 1  # not checked


def test_greedy_is_the_in_process_runtimes_greedy(srv):
    prompts, stops = ['def add(x, y):\n', 'import os\n\nclass A:\n'], [[], []]
    served = OpenAIBackend(srv['url'], 'tiny', extra=PLAIN).generate(prompts, stops, 1, 0.0, 1.0, 32)
    with GGUFBackend(srv['gguf'], threads=2) as g: local = g.generate(prompts, stops, 1, 0.0, 1.0, 32)
    assert served == local                                     # the same file in llama.cpp, in this process
    hf = HFBackend(srv['src'], device='cpu').generate(prompts, stops, 1, 0.0, 1.0, 32)
    # transformers writes U+FFFD for a token's incomplete UTF-8 bytes; llama.cpp's server leaves them out
    assert served == [[t.replace('\ufffd', '') for t in h] for h in hf]
    default = srv['backend'].generate(prompts, stops, 1, 0.0, 1.0, 32)
    assert default != served                                   # llama.cpp's repeat penalty 1.1 changes even greedy text


def test_im_end_ends_the_answer_and_a_long_prompt_is_one_line(srv):
    with GGUFBackend(srv['gguf']) as g: [end] = g.tokenize(IM_END)
    chat = '<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n'
    b = OpenAIBackend(srv['url'], 'tiny', extra=dict(logit_bias={str(end): 100.0}))    # the model must say <|im_end|>
    assert b.generate([chat], [[]], max_new_tokens=8) == [['']]
    got = b._post(dict(b.extra, model='tiny', prompt=chat, max_tokens=8))['choices'][0]
    assert (got['text'], got['finish_reason']) == ('', 'stop')       # an end-of-generation token: it ends, as no text
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*maximum context length is 2048 tokens"):
        srv['backend'].generate(['x' * 5000], [[]], max_new_tokens=8)


def test_evaluation_through_the_server(srv, tmp_path):
    he = load_humaneval()[:2]
    b = srv['backend']
    for chat in (False, True):
        res = evaluate(he, b, tmp_path / str(chat), n=2, temperature=0.8, max_new_tokens=24, ks=(1,), chat=chat,
                       progress=False, workers=2)['humaneval']
        assert [p['n'] for p in res.per_problem] == [2, 2] and res.pass_at == {'pass@1': 0.0}   # an untrained model
        gens = [json.loads(l)['completions'] for l in (tmp_path / str(chat) / 'generations.jsonl').read_text().splitlines()]
        assert [len(g) for g in gens] == [2, 2]
        if not chat: assert not any(s in c for g in gens for c in g for s in PY_STOP)   # cut at the stops


def test_evol_instruct_through_the_server(srv):
    before = _posts(srv)
    rows = evolve(srv['backend'], ['Write a function that returns the sum of a list of numbers.'],
                  EvolConfig(ops=['constraints', 'complexity'], max_new_tokens=24), prompt_format='chatml')
    assert _posts(srv) - before == 2 and [r['op'] for r in rows] == ['constraints', 'complexity']
    assert all(r['drop'] is None or r['drop'] in EVOL_DROPS for r in rows) and evol_funnel(rows)['attempts'] == 2


def test_a_teacher_on_the_server(srv):
    problems = load_task('exercises-train', limit=2)
    [teacher] = teacher_backends([f"tiny@{srv['url']}"])
    assert isinstance(teacher, OpenAIBackend) and teacher.name == f"tiny@{srv['url']}"
    cfg = PairsConfig(samples=2, max_new_tokens=24, reference=False)
    ranked = rrtf_samples(srv['backend'], problems, cfg, teachers=[teacher], progress=False)
    assert [[s['teacher'] for s in r] for r in ranked] == [[None, None, teacher.name, teacher.name]] * 2
    rows, counts = rrtf_rows(problems, ranked)
    assert counts['problems'] == 2 and counts['kept'] + counts['no_responses'] + counts['teacher_below_student'] == 2


def test_self_align_generation_through_the_server(srv):
    b = sa.make_backend(base_url=srv['url'], served_model='tiny')
    seed = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n'
    assert len(sa.judge_docstrings(b, [seed])) == 1
    kept, why = sa.write_instructions(b, [dict(id=0, source=seed)], n_shots=1, max_new_tokens=32)
    assert len(kept) + sum(why.values()) == 1                 # concepts and instruction, or why not
    inst = [dict(instruction='Write a Python function `add(a, b)` that returns the sum of two numbers.')]
    before = _posts(srv)
    kept, why = sa.write_responses(b, inst, n=3, temperature=0.7, max_new_tokens=48, n_shots=1)
    assert len(kept) + sum(why.values()) == 3 and _posts(srv) - before == 3    # 3 samples although `n` is ignored
