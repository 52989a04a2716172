"""Self-OSS-Instruct (nbs/12_self_align): the seed verdicts on each kind of bad seed and on real standard-library
functions, the type check's failure as one line, the execution filter fed hanging, forking, crashing and
memory-eating responses (bounded time, nothing left running), resumable steps, the reference's SFT preset, and SFT on
fixed responses through the real trainer (`python -m stablecode.self_align`)."""
import json, subprocess, sys, sysconfig, time
from collections import Counter
from pathlib import Path
import pytest
import torch

from stablecode import self_align as sa
from stablecode.benchmarks import load_humaneval
from stablecode.config import preset
from stablecode.data import DecontConfig
from stablecode.generate import Backend
from stablecode.model import StableCodeForCausalLM
from stablecode.sft import masked_view
from stablecode.tokenizer import EOT, chat_text, train_tokenizer
from procs import procs

STDLIB = Path(sysconfig.get_paths()['stdlib'])

def stdlib_function(module_file: str, name: str) -> str:
    "A real standard-library function as a seed (its imports + its source)."
    return next(s['source'] for s in sa.function_seeds((STDLIB / module_file).read_text()) if s['name'] == name)

GOOD = [('string.py', 'capwords'), ('email/base64mime.py', 'header_length'), ('http/cookiejar.py', 'time2isoz'),
        ('tarfile.py', 'nts'), ('unittest/util.py', 'three_way_cmp')]
D = '    """Return the value computed from x."""\n'

BAD = {   # reason kind -> seeds that must be dropped for it
    'syntax error': ['def f(x:\n' + D + '    return x\n'],
    'not one function': ['def f(x):\n' + D + '    return x\n\ndef g(x):\n' + D + '    return x\n'],
    'no docstring': ['def f(x):\n    return x + 1\n'],
    'over 150 lines': ['def f(x):\n' + D + '    x += 1\n' * 150 + '    return x\n'],
    'marker': ['def f(x):\n' + D + '    # TODO: negative x\n    return x\n', 'def f(x):\n' + D + '    return x  # FIXME\n',
               'def f(x):\n    """Return x; has a bug for x < 0."""\n    return x\n'],
    'banned import': [f'import {m}\n\ndef f(x):\n' + D + f'    return {m}.__name__ + str(x)\n'
                      for m in ('os', 'sys', 'subprocess', 'argparse', 'matplotlib')],
    'no arguments': ['def f():\n' + D + '    return 42\n'],
    'no return value': ['def f(x):\n' + D + '    print(x)\n', 'def f(x):\n' + D + '    yield x\n',
                        'def f(x):\n' + D + '    return None\n'],
    'type error': ['def f(x):\n' + D + '    return undefined_helper(x)\n', 'def f(x: int) -> str:\n' + D + '    return x\n',
                   'import re\n\ndef f(x: int):\n' + D + '    return re.escape(x)\n'],
}

def test_seed_verdicts_reject_each_kind_of_bad_seed_and_keep_real_stdlib_functions():
    good = [stdlib_function(*g) for g in GOOD]
    he = load_humaneval()[3]
    contaminated = 'def f(operations):\n    """Return x."""\n' + he.canonical.rstrip() + '\n'
    bad = [(k, s) for k, ss in BAD.items() for s in ss] + [('contaminated', contaminated)]
    dup = good[0].replace('"""', '"""Same function again. ', 1)      # a near-duplicate of the first good seed, later
    t0 = time.time()
    why = sa.seed_verdicts(good + [s for _, s in bad] + [dup])
    print(f"verdicts on {len(why)} seeds in {time.time() - t0:.1f}s")
    assert why[:len(good)] == [None] * len(good), list(zip(GOOD, why))
    for (kind, src), w in zip(bad, why[len(good):]):
        assert w is not None and sa.reason_kind(w) == kind, (kind, w, src[:80])
    assert why[-1] == 'near-duplicate: of #0'                                   # the later of two near-duplicates goes
    assert sa.seed_verdicts([dup, good[0]])[1] == 'near-duplicate: of #0'        # order decides which one is kept
    assert why[len(good) + len(bad) - 1] == f"contaminated: {he.task_id}"

def test_mbpp_decontamination_through_the_eval_loader(tmp_path):
    row = dict(task_id=11, text='Write a python function to remove first and last occurrence of a given character from the string.',
               code='def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    return s ',
               test_list=['assert remove_Occ("hello","l") == "heo"'], test_setup_code='', challenge_test_list=[])
    (tmp_path / 'mbpp.jsonl').write_text(json.dumps(row) + '\n')
    dec = sa.Contamination(DecontConfig(humaneval=False, extra=[f"mbpp={tmp_path / 'mbpp.jsonl'}"]))
    seed = 'def strip_char(s, ch):\n    """' + row['text'] + '"""\n    return s.replace(ch, "")\n'
    assert dec.match(seed) == 'MBPP/11' and dec.match(stdlib_function('string.py', 'capwords')) is None
    assert sa.seed_verdicts([seed], contamination=dec) == ['contaminated: MBPP/11']

def test_an_unavailable_type_checker_is_one_clear_line(monkeypatch):
    seeds = [stdlib_function('string.py', 'capwords')]
    monkeypatch.setattr(sa.shutil, 'which', lambda *a, **k: None)
    with pytest.raises(sa.TypeCheckUnavailable) as e: sa.seed_verdicts(seeds)
    assert 'pyright' in str(e.value) and '\n' not in str(e.value)
    monkeypatch.setattr(sa, 'pyright_command', lambda: ['false'])
    with pytest.raises(sa.TypeCheckUnavailable) as e: sa.seed_verdicts(seeds)
    assert str(e.value).startswith('type check unavailable: pyright exited 1') and '\n' not in str(e.value)
    assert sa.seed_verdicts(seeds, type_check=False) == [None]                   # only when asked

ABUSE = {   # implementation -> the status the execution filter must give it (its tests: assert f(2) == 4)
    'def f(x):\n    return 2 * x\n': 'passed',
    'def f(x):\n    return x + 1\n': 'failed',
    'def f(x):\n    while True: pass\n': 'timeout',
    'import time\ndef f(x):\n    time.sleep(1000)\n': 'timeout',
    'import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\ndef f(x):\n    return 2 * x\n': 'timeout',
    'import subprocess\nsubprocess.Popen(["sleep", "987"], start_new_session=True)\ndef f(x):\n    return 2 * x\n': 'passed',
    'import ctypes\nctypes.string_at(0)\ndef f(x):\n    return 2 * x\n': 'crashed',    # a real segmentation fault
    'x = bytearray(8 << 30)\ndef f(x):\n    return 2 * x\n': 'oom',
    'import os\ndef f(x):\n    os._exit(0)\n': 'failed',
    'import threading\nl = threading.Lock(); l.acquire(); l.acquire()\ndef f(x):\n    return 2 * x\n': 'timeout',
    'def f(x:\n': 'compile_error',
}

def _left():
    return procs('sleep 987', '_sc_runner', 'prog.py', 'bwrap')

def test_execution_filter_never_hangs_and_leaves_nothing_running(tmp_path):
    before = {p for p, _ in _left()}
    samples = [dict(inst_id=i, implementation=impl, tests='assert f(2) == 4\n') for i, impl in enumerate(ABUSE)] * 2
    t0 = time.time()
    res = sa.execution_filter(samples, timeout=3, memory_mb=512, workers=2, jsonl=tmp_path / 'r.jsonl')
    took = time.time() - t0
    assert [r.status for r in res] == list(ABUSE.values()) * 2, [(r.status, r.message[:60]) for r in res]
    assert took < 60, took                                  # 11 distinct programs, 2 workers, 3 s limits
    deadline = time.time() + 10
    while (left := [x for x in _left() if x[0] not in before]) and time.time() < deadline: time.sleep(0.2)
    assert not left, left
    picked = sa.pick_passing(samples, res)
    assert {p['inst_id'] for p in picked} == {0, 5} and len(picked) == 2
    t0 = time.time()                                          # resumed from the results file: nothing runs again
    assert [r.status for r in sa.execution_filter(samples, timeout=3, memory_mb=512, jsonl=tmp_path / 'r.jsonl')] == [r.status for r in res]
    assert time.time() - t0 < 2

class Fixed(Backend):
    name = 'fixed'
    def __init__(self, fn): self.fn, self.calls = fn, 0
    def generate(self, prompts, stops, n=1, temperature=0.2, top_p=0.95, max_new_tokens=256):
        self.calls += 1
        return [[self.fn(p, k) for k in range(n)] for p in prompts]

INSTR = 'counting, dict\n\n### Instruction\nWrite a Python function `histogram(xs)` that counts how often each value occurs.'
RESP = ('Count with a dict.\n\n[Implementation]\n```python\ndef histogram(xs):\n    out = {}\n    for x in xs:\n'
        '        out[x] = out.get(x, 0) + 1\n    return out\n```\n\n[Explanation]\nOne pass.\n\n[Tests]\n```python\n'
        'assert histogram([1, 1, 2]) == {1: 2, 2: 1}\nassert histogram([]) == {}\n```')

def _answer(p, k):
    if p.endswith('Good docstring:'): return ' yes'
    if p.endswith('### Concepts\n'): return INSTR
    return [RESP, RESP.replace('0) + 1', '0) + 2'), 'No tests.\n[Implementation]\n```python\ndef histogram(xs):\n    return {}\n```'][k % 3]

def test_pipeline_counts_every_step_and_resumes(tmp_path):
    cands = [dict(name=n, path=f, source=stdlib_function(f, n)) for f, n in GOOD[:3]] + [dict(name='bad', path='', source=BAD['no docstring'][0])]
    b = Fixed(_answer)
    pairs = sa.self_oss_instruct(b, cands, tmp_path, n_samples=3, timeout=5)
    f = {c['step']: c for c in sa.funnel(tmp_path, sa.STEPS)}
    assert [f[s]['n_out'] for s in sa.STEPS] == [3, 3, 3, 6, 3, 3, 1], f        # the 3 identical pairs dedup to 1
    assert f['seeds']['dropped'] == {'no docstring': 1} and f['responses']['dropped'] == {'no tests': 3}
    assert f['execution']['dropped'] == {'failed': 3} and f['final']['dropped'] == {'near-duplicate': 2}
    assert len(pairs) == 1 and 'def histogram' in pairs[0]['implementation']
    calls = b.calls
    assert sa.self_oss_instruct(b, cands, tmp_path, n_samples=3, timeout=5) == pairs and b.calls == calls   # resumed

def test_reference_preset_and_prompt_format():
    r = sa.self_align_preset('starcoder2-15b-instruct')
    assert (r.lr, r.epochs, r.global_batch, r.schedule, r.warmup, r.max_length) == (1e-5, 4, 64, 'linear', 0.05, 1280)
    assert r.prompt_format == 'self_oss' and r.assistant_only_loss and r.sources[0].name == 'self_align'
    msgs = [dict(role='user', content='Do X.'), dict(role='assistant', content='Done.')]
    assert chat_text(msgs, add_generation_prompt=False, prompt_format='self_oss') == f'### Instruction\nDo X.\n\n### Response\nDone.{EOT}'
    assert chat_text(msgs[:1], prompt_format='self_oss') == '### Instruction\nDo X.\n\n### Response\n'
    t = sa.self_align_preset('tiny')
    assert t.prompt_format == 'self_oss' and t.schedule == 'linear'

def test_sft_on_fixed_responses_trains_through_the_real_trainer(tmp_path):
    files = sorted(STDLIB.glob('*.py'))[:12]
    tok = train_tokenizer([f.read_text(errors='ignore') for f in files], vocab_size=1024)
    torch.manual_seed(0)
    StableCodeForCausalLM(preset('tiny', vocab_size=len(tok), num_hidden_layers=2)).save_pretrained(tmp_path / 'base')
    tok.save_pretrained(tmp_path / 'base')
    parsed, _ = sa.parse_response(RESP)
    pairs = [dict(parsed, instruction=f'Write `histogram` number {i}.', inst_id=i) for i in range(8)]
    (tmp_path / 'final.jsonl').write_text(''.join(json.dumps(p) + '\n' for p in pairs))
    view = masked_view(tok, sa.self_align_rows(pairs[:1])[0]['messages'], 'self_oss')
    assert view.startswith('### Instruction\nWrite `histogram` number 0.\n\n### Response\n[') and view.endswith(']'), view[:120]
    r = sa.self_align_preset('tiny', model=str(tmp_path / 'base'), out_dir=str(tmp_path / 'out'), progress=False, max_steps=3,
                             global_batch=4, micro_batch=2, max_length=256, lr=1e-3,
                             sources=[dict(name='self_align', path=str(tmp_path / 'final.jsonl'))])
    r.to_yaml(tmp_path / 'c.yaml')
    p = subprocess.run([sys.executable, '-m', 'stablecode.self_align', '--config', str(tmp_path / 'c.yaml')],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert s['steps'] == 3 and s['data']['self_align']['kept'] == 8 and len(s['records']) == 3, s
    assert s['records'][-1]['loss'] < s['records'][0]['loss'], s['records']
    assert (tmp_path / 'out' / 'hf' / 'model.safetensors').exists()

def test_the_pipeline_runs_against_an_openai_compatible_server(tmp_path):
    "The cluster setting: generation through `/v1/completions` (vLLM, llama.cpp's server), here a stub answering in process."
    import http.server, threading
    seen = []
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            seen.append((body['n'], body['temperature'], body['stop']))
            out = json.dumps(dict(choices=[dict(index=k, text=_answer(body['prompt'], k)) for k in range(body['n'])])).encode()
            self.send_response(200); self.send_header('Content-Type', 'application/json'); self.end_headers(); self.wfile.write(out)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = sa.make_backend(base_url=f'http://127.0.0.1:{srv.server_address[1]}/v1', served_model='base')
        cands = [dict(name='capwords', path='string.py', source=stdlib_function('string.py', 'capwords'))]
        pairs = sa.self_oss_instruct(b, cands, tmp_path, n_samples=3, temperature=0.7, timeout=5)
    finally: srv.shutdown()
    assert len(pairs) == 1 and 'def histogram' in pairs[0]['implementation']
    assert (3, 0.7, sa.RESPONSE_STOPS) in seen and (1, 0.0, ['\n']) in seen      # responses: n=3 at 0.7; the judge: greedy
