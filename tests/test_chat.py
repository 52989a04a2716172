"""Prompt formats (ChatML, StableCode alpha), their assistant masks, streamed chat and `stablecode chat`."""
import builtins, io, os, subprocess, sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from stablecode.config import preset
from stablecode.generate import chat_cli, chat_loop, chat_stream, stream_until, user_turns
from stablecode.model import StableCodeForCausalLM
from stablecode.tokenizer import (ALPHA_TEMPLATE, CHATML_TEMPLATE, EOT, IM_END, PROMPT_FORMATS, chat_text,
                                  get_prompt_format, resolve_prompt_format, save_tokenizer, set_chat_template,
                                  tokenizer_format, train_tokenizer)

ROOT = Path(__file__).resolve().parents[1]
CONV = [dict(role='system', content='You are a coding assistant.'),
        dict(role='user', content='Write add.'),
        dict(role='assistant', content='def add(x, y):\n    return x + y')]


@pytest.fixture(scope='module')
def tok():
    return train_tokenizer(['def add(x, y):\n    return x + y\n', 'Write add. You are a coding assistant.\n'] * 40,
                           vocab_size=320)


def parrot(tok, chain):
    "A tiny model whose greedy choice after token chain[k] is chain[k + 1]: zeroed layers pass the embedding through."
    m = StableCodeForCausalLM(preset('tiny', vocab_size=len(tok), tie_word_embeddings=False))
    with torch.no_grad():
        for p in m.parameters(): p.zero_()
        m.model.norm.weight.fill_(1.0)
        for k, (a, b) in enumerate(zip(chain, chain[1:])):
            m.model.embed_tokens.weight[a, k] = m.lm_head.weight[b, k] = 1.0
    return m.eval()


@pytest.fixture(scope='module')
def ckpt(tok, tmp_path_factory):
    "A saved checkpoint that answers `Hi!<|im_end|>X<|endoftext|>Z` to any prompt ending in a newline."
    last = tok.apply_chat_template([dict(role='user', content='hi')], add_generation_prompt=True)['input_ids'][-1]
    assert tok.convert_ids_to_tokens(last) == 'Ċ'
    m = parrot(tok, [last, *tok.convert_tokens_to_ids(['H', 'i', '!', IM_END, 'X', EOT, 'Z'])])
    d = tmp_path_factory.mktemp('chat') / 'parrot'
    m.save_pretrained(d); save_tokenizer(tok, d)
    return d, m


def test_chatml_text_is_the_reports_format():
    assert chat_text(CONV, add_generation_prompt=False) == (
        '<|im_start|>system\nYou are a coding assistant.<|im_end|>\n'
        '<|im_start|>user\nWrite add.<|im_end|>\n'
        '<|im_start|>assistant\ndef add(x, y):\n    return x + y<|im_end|>\n')
    assert chat_text(CONV[:2]).endswith('<|im_start|>user\nWrite add.<|im_end|>\n<|im_start|>assistant\n')


def test_alpha_text_system_and_turns():
    assert chat_text(CONV[1:2], prompt_format='alpha') == '###Instruction\nWrite add.\n\n###Response\n'
    assert chat_text(CONV[1:2], add_generation_prompt=False, prompt_format='alpha') == '###Instruction\nWrite add.\n\n'
    two = CONV + [dict(role='user', content='Now sub.')]
    assert chat_text(two, prompt_format='alpha') == (
        'You are a coding assistant.\n\n'
        '###Instruction\nWrite add.\n\n###Response\ndef add(x, y):\n    return x + y<|endoftext|>'
        '###Instruction\nNow sub.\n\n###Response\n')
    with pytest.raises(ValueError, match="alpha prompt format: unknown role 'tool'"):
        chat_text([dict(role='tool', content='{}')], prompt_format='alpha')


@pytest.mark.parametrize('fmt,end', [('chatml', IM_END), ('alpha', EOT)])
def test_assistant_mask_is_answer_and_end_marker(tok, fmt, end):
    conv = CONV + [dict(role='user', content='Again.'), dict(role='assistant', content='ok')]
    enc = tok.apply_chat_template(conv, chat_template=PROMPT_FORMATS[fmt].template, return_dict=True,
                                  return_assistant_tokens_mask=True)
    ids, mask = enc['input_ids'], enc['assistant_masks']
    assert len(ids) == len(mask) and 0 < sum(mask) < len(ids)
    spans, cur = [], []                                   # the masked-in runs of tokens, one per assistant turn
    for i, m in zip(ids, mask):
        if m: cur.append(i)
        elif cur: spans.append(cur); cur = []
    if cur: spans.append(cur)
    assert [tok.decode(s) for s in spans] == ['def add(x, y):\n    return x + y' + end, 'ok' + end]


def test_unknown_format_is_one_line_error(tok):
    for call in (lambda: get_prompt_format('vicuna'), lambda: chat_text(CONV, prompt_format='vicuna'),
                 lambda: set_chat_template(tok, 'vicuna')):
        with pytest.raises(ValueError) as e: call()
        assert str(e.value) == "unknown prompt format 'vicuna' (known: chatml, alpha, self_oss)"


def test_saved_tokenizer_carries_its_template(tok, tmp_path):
    save_tokenizer(tok, tmp_path / 'chatml')
    assert (tmp_path / 'chatml' / 'chat_template.jinja').read_text() == CHATML_TEMPLATE
    assert tokenizer_format(AutoTokenizer.from_pretrained(tmp_path / 'chatml')) == 'chatml'
    alpha = set_chat_template(AutoTokenizer.from_pretrained(tmp_path / 'chatml'), 'alpha')
    alpha.save_pretrained(tmp_path / 'alpha')
    back = AutoTokenizer.from_pretrained(tmp_path / 'alpha')
    assert back.chat_template == ALPHA_TEMPLATE and resolve_prompt_format(back)[1].name == 'alpha'
    assert resolve_prompt_format(back, 'chatml') == (CHATML_TEMPLATE, PROMPT_FORMATS['chatml'])
    assert tok.chat_template == CHATML_TEMPLATE               # set_chat_template changed only the copy


def test_stream_until_holds_back_and_cuts():
    stops = PROMPT_FORMATS['alpha'].stops
    assert list(stream_until(['x = 1\n#', '##Ins', 'truction\nnext'], stops)) == ['x = 1\n']
    assert list(stream_until(['x = 1\n#', '## Ins'], stops)) == ['x = 1\n', '### Ins']
    assert list(stream_until(['a#', '#', ' b'], stops)) == ['a', '## b']
    assert list(stream_until(['<|endoftext|>', 'more'], stops)) == []
    assert list(stream_until(['no stop'], stops)) == ['no stop']


def test_chat_stream_stops_at_im_end(ckpt, tok):
    _, m = ckpt
    msgs = CONV[:2]
    pieces = list(chat_stream(m, tok, msgs, max_new_tokens=30))
    assert ''.join(pieces) == 'Hi!' and not any(IM_END in p or 'X' in p for p in pieces)
    # the alpha format does not stop at <|im_end|> (a special token, not printed) but at <|endoftext|>
    assert ''.join(chat_stream(m, tok, msgs, max_new_tokens=30, prompt_format='alpha')) == 'Hi!X'
    assert ''.join(chat_stream(m, tok, msgs, max_new_tokens=2)) == 'Hi'
    sampled = ''.join(chat_stream(m, tok, msgs, max_new_tokens=30, temperature=0.7, top_p=0.9))
    assert sampled == 'Hi!'                                # top_p keeps only the chain's token
    with pytest.raises(ValueError, match="unknown role 'tool'"):
        chat_stream(m, tok, [dict(role='tool', content='x')], prompt_format='alpha')


def test_chat_stream_reraises_a_generation_error(ckpt, tok, monkeypatch):
    _, m = ckpt
    def boom(**kw): raise RuntimeError('out of memory')
    monkeypatch.setattr(m, 'generate', boom)
    with pytest.raises(RuntimeError, match='out of memory'):      # raised to the reader, which does not hang
        list(chat_stream(m, tok, CONV[:2]))

def test_chat_loop_keeps_history():
    seen = []
    def ask(msgs):
        seen.append([(m['role'], m['content']) for m in msgs])
        yield 'ans'; yield f'wer {len(seen)}'
    out, conv = io.StringIO(), [dict(role='system', content='S')]
    assert chat_loop(ask, user_turns(None, io.StringIO('one\n\n  \ntwo\n')), conv, out) == 0
    assert out.getvalue() == 'answer 1\nanswer 2\n'
    assert seen[1] == [('system', 'S'), ('user', 'one'), ('assistant', 'answer 1'), ('user', 'two')]
    assert conv[-1] == dict(role='assistant', content='answer 2')


def test_interactive_turns_prompt_at_a_terminal(monkeypatch):
    class TTY(io.StringIO):
        def isatty(self): return True
    typed, prompts = iter(['hello']), []
    def fake_input(prompt=''):
        prompts.append(prompt)
        try: return next(typed)
        except StopIteration: raise EOFError
    monkeypatch.setattr(builtins, 'input', fake_input)
    out = io.StringIO()
    assert chat_loop(lambda msgs: iter(['hi']), user_turns(None, TTY()), [], out) == 0
    assert prompts == ['>>> ', '>>> '] and out.getvalue() == 'hi\n'


def run_chat(*args, stdin=None):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    return subprocess.run([sys.executable, '-m', 'stablecode.cli', 'chat', *map(str, args)], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_prompt_answers_once(ckpt):
    d, _ = ckpt
    r = run_chat(d, '--prompt', 'Write add.', '--system', 'Be brief.', '--max-new-tokens', '30')
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'Hi!\n'


def test_cli_piped_conversation(ckpt):
    d, _ = ckpt
    r = run_chat(d, '--prompt-format', 'alpha', stdin='Write add.\n\nNow sub.\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout == 'Hi!X\nHi!X\n'                      # two turns, the blank line skipped
    assert '>>>' not in r.stdout + r.stderr                 # no terminal prompt on a pipe


def test_cli_errors_are_one_line(ckpt, tmp_path, capsys):
    d, _ = ckpt
    r = run_chat(tmp_path / 'missing')
    assert r.returncode == 2 and r.stderr.strip() == f"stablecode chat: model path {tmp_path / 'missing'} does not exist"
    for argv, msg in [([tmp_path], f"{tmp_path} is not a checkpoint directory (no config.json)"),
                      ([d, '--prompt-format', 'vicuna'], "unknown prompt format 'vicuna' (known: chatml, alpha, self_oss)"),
                      ([d, '--max-new-tokens', '0'], '--max-new-tokens must be at least 1, got 0'),
                      ([d, '--prompt', ' '], '--prompt is empty')]:
        assert chat_cli([str(a) for a in argv]) == 2
        assert capsys.readouterr().err == f"stablecode chat: {msg}\n"
    (tmp_path / 'config.json').write_text('{}')
    assert chat_cli([str(tmp_path)]) == 2
    assert 'has no tokenizer' in capsys.readouterr().err
