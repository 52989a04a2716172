"""Quantization: GGUF through llama.cpp's converter and quantizer, CTranslate2 through our StableLM and GPT-NeoX loaders,
torchao;
the backends of every format, `stablecode quantize` and its errors."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from stablecode.config import preset
from stablecode.model import StableCodeForCausalLM
from stablecode.generate import backend_kind, load_backend
from stablecode.quantize import (CT2Backend, GGUFBackend, _Runner, check_source, cli, convert_gguf, export, export_ct2,
                                 export_torchao, gguf_metadata, gguf_tensor_types, gguf_type_counts, llama_cpp_dir,
                                 GPTQ_MISSING, calibration_set, calibration_texts, gptq_config, inference_table, is_gptq,
                                 measure_job, parse_formats, quant_table, quantize_gguf, random_checkpoint, releases_table)
from stablecode.tokenizer import CHATML_TEMPLATE, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, IM_END, IM_START, save_tokenizer

CODE = 'def add(x, y):\n    return x + y  # 12345 and 3.14\n\nclass Point:\n    pass\n'
FIM = f'{FIM_PREFIX}def add(x, y):\n    return {FIM_SUFFIX}\n\nprint(add(1, 2))\n{FIM_MIDDLE}'
CHAT = f'{IM_START}user\nWrite add.{IM_END}\n{IM_START}assistant\n'


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp('quantize')
    src = random_checkpoint(d / 'tiny', rope_theta=1_000_000.0)   # Stable Code 3B's rotary base (not llama.cpp's default)
    f16 = convert_gguf(src, d / 'model-f16.gguf', progress=False)
    return dict(d=d, src=src, f16=f16, tok=AutoTokenizer.from_pretrained(str(src)))


def fp32_greedy(src, prompt_ids, n):
    return _Runner('hf', str(src), 2).greedy(prompt_ids, n)


def test_format_parsing_and_source_errors(work, tmp_path):
    assert [str(f) for f in parse_formats('gguf:Q5_K_M,ct2:int8,torchao:int4wo')] == ['gguf:q5_k_m', 'ct2:int8', 'torchao:int4wo']
    with pytest.raises(ValueError, match=r"unknown format 'gguf:q3_k_s' \(known: hf:fp32, gguf:f32"): parse_formats('gguf:q3_k_s')
    with pytest.raises(ValueError, match='no format given'): parse_formats(' , ')
    with pytest.raises(ValueError, match='no config.json'): check_source(tmp_path)
    (tmp_path / 'llama').mkdir()
    (tmp_path / 'llama' / 'config.json').write_text(json.dumps(dict(model_type='llama', architectures=['LlamaForCausalLM'])))
    with pytest.raises(ValueError, match=r"model_type 'llama' \(LlamaForCausalLM\) is neither StableLM nor GPT-NeoX"):
        check_source(tmp_path / 'llama')
    alpha = StableCodeForCausalLM(preset('tiny-alpha', vocab_size=512, num_hidden_layers=1))
    alpha.save_pretrained(tmp_path / 'alpha')                  # a GPT-NeoX checkpoint (StableCode alpha), no tokenizer
    with pytest.raises(ValueError, match='has no tokenizer.json'): check_source(tmp_path / 'alpha')


def test_gguf_carries_tokenizer_fim_tokens_and_chat_template(work):
    meta = gguf_metadata(work['f16'], ('general.architecture', 'tokenizer.ggml.pre', 'tokenizer.chat_template',
                                       'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.eos_token_id',
                                       'stablelm.rope.freq_base'))
    assert meta['general.architecture'] == 'stablelm' and meta['tokenizer.ggml.pre'] == 'starcoder'
    assert meta['stablelm.rope.freq_base'] == 1_000_000.0
    assert meta['tokenizer.chat_template'] == CHATML_TEMPLATE.replace('{% generation %}', '').replace('{% endgeneration %}', '')
    toks, types = meta['tokenizer.ggml.tokens'], meta['tokenizer.ggml.token_type']
    for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, IM_START, IM_END, '<|endoftext|>'):
        assert types[toks.index(t)] == 3, t                      # CONTROL: a special token
    assert meta['tokenizer.ggml.eos_token_id'] == 0
    with GGUFBackend(work['f16']) as g:                           # llama.cpp splits text exactly as our tokenizer
        for text in (CODE, FIM, CHAT):
            assert g.tokenize(text) == work['tok'](text)['input_ids'], text
        assert g.tokenize(FIM)[0] == work['tok'].convert_tokens_to_ids(FIM_PREFIX)


def test_gguf_f16_and_q8_generate_fp32s_first_tokens(work):
    ids = work['tok'](CODE)['input_ids']
    ref = fp32_greedy(work['src'], ids, 16)
    q8 = quantize_gguf(work['f16'], work['d'] / 'model-q8_0.gguf', 'q8_0', progress=False)
    assert set(gguf_tensor_types(q8).values()) == {'Q8_0', 'F32'}
    r16, r8 = _Runner('gguf', str(work['f16']), 2), _Runner('gguf', str(q8), 2)
    try:
        assert r16.greedy(ids, 16) == ref
        assert r8.greedy(ids, 16)[:3] == ref[:3]
        lg = r16.logits(ids)
    finally: r16.close(); r8.close()
    with torch.no_grad(): want = _Runner('hf', str(work['src']), 2).logits(ids)
    assert np.abs(lg - want).max() < 2e-2                        # F16 weights: close, not equal


def test_gguf_backend_fim_and_chat(work):
    hf = load_backend(work['src'])                                # transformers, fp32
    with load_backend(f"gguf:{work['f16']}") as g:
        assert g.generate([FIM], [['\n']], max_new_tokens=6, temperature=0) == hf.generate([FIM], [['\n']], max_new_tokens=6, temperature=0)
        answer = ''.join(g.chat([dict(role='user', content='hi')], max_new_tokens=4))
        assert isinstance(answer, str) and g.name == 'gguf:model-f16.gguf'


def test_kquants_need_rows_of_256(work):
    kq = random_checkpoint(work['d'] / 'kq', shape='kquant')
    paths = export(kq, work['d'] / 'kq-out', 'gguf:q4_k_m,gguf:q5_k_m', progress=False)
    c4 = gguf_type_counts(paths['gguf:q4_k_m'])
    assert c4['attn_q'] == {'Q4_K': 2} and c4['attn_norm'] == {'F32': 2}
    assert 'Q6_K' in c4['attn_v'] and 'Q6_K' in c4['ffn_down']  # Q4_K_M keeps the sensitive half a step higher
    assert c4['output'] == {'Q6_K': 1}
    assert gguf_type_counts(paths['gguf:q5_k_m'])['ffn_up'] == {'Q5_K': 2}
    small = quantize_gguf(work['f16'], work['d'] / 'tiny-q4.gguf', 'q4_k_m', progress=False)
    assert set(gguf_tensor_types(small).values()) == {'Q5_0', 'Q8_0', 'F32'}  # rows of 128 / 352: llama.cpp falls back


@pytest.mark.parametrize('parallel', [False, True])
def test_ct2_loader_matches_fp32(work, tmp_path, parallel):
    src = work['src']
    if parallel:                                                  # StableLM's parallel residual, one shared LayerNorm
        m = StableCodeForCausalLM(preset('tiny', vocab_size=512, num_hidden_layers=2, use_parallel_residual=True))
        src = tmp_path / 'par'; m.save_pretrained(src); save_tokenizer(work['tok'], src)
    ids = work['tok'](CODE)['input_ids']
    want = _Runner('hf', str(src), 2).logits(ids)
    f32 = _Runner('ct2', str(export_ct2(src, tmp_path / 'f32', 'float32')), 2)
    assert np.abs(f32.logits(ids) - want).max() < 1e-4
    i8 = _Runner('ct2', str(export_ct2(src, tmp_path / 'i8', 'int8')), 2)
    assert np.abs(i8.logits(ids) - want).max() < 0.1 * np.abs(want).max()
    assert i8.greedy(ids, 4)[:2] == fp32_greedy(src, ids, 2)


def test_ct2_backend_generates_like_fp32(work, tmp_path):
    d = export_ct2(work['src'], tmp_path / 'ct2', 'float32')
    hf = load_backend(f"hf:{work['src']}")
    with load_backend(d) as c:
        assert isinstance(c, CT2Backend)
        assert c.generate([CODE, FIM], [['\n\n'], ['\n']], max_new_tokens=8, temperature=0) == \
            hf.generate([CODE, FIM], [['\n\n'], ['\n']], max_new_tokens=8, temperature=0)


@pytest.mark.parametrize('dtype', ['int8wo', 'int4wo'])
def test_torchao_export_loads_and_stays_close(work, tmp_path, dtype):
    d = export_torchao(work['src'], tmp_path / dtype, dtype)
    ids = work['tok'](CODE)['input_ids']
    want, got = _Runner('hf', str(work['src']), 2).logits(ids), _Runner('torchao', str(d), 2).logits(ids)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < rel < (0.05 if dtype == 'int8wo' else 0.5)
    assert (got.argmax(-1) == want.argmax(-1)).mean() > (0.9 if dtype == 'int8wo' else 0.5)
    b = load_backend(d)
    assert type(b).__name__ == 'TorchaoBackend' and len(b.generate([CODE], [[]], max_new_tokens=3, temperature=0)[0]) == 1


def test_load_backend_errors(work, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'onnx'"): load_backend(work['src'], 'onnx')
    with pytest.raises(FileNotFoundError, match='does not exist'): load_backend(f"gguf:{tmp_path / 'x.gguf'}")
    with pytest.raises(ValueError, match='is a hf model, not gguf'): load_backend(work['src'], 'gguf')


def test_stablecode_alpha_gpt_neox_through_gguf_and_ct2(work, tmp_path):
    """StableCode alpha's architecture (GPT-NeoX: GELU MLP, biases, two-LayerNorm parallel block, fused head-interleaved
    query_key_value) exported to GGUF and CTranslate2. Rotary base 500,000, not the runtimes' 10,000, so a base
    left out would show."""
    src = random_checkpoint(tmp_path / 'alpha', shape='alpha', rope_theta=500_000.0)
    assert json.loads((src / 'config.json').read_text())['model_type'] == 'gpt_neox'
    paths = export(src, tmp_path / 'out', 'gguf:f16,gguf:q8_0,ct2:float32,ct2:int8', progress=False)
    meta = gguf_metadata(paths['gguf:f16'], ('general.architecture', 'gptneox.rope.dimension_count',
                                             'gptneox.rope.freq_base', 'gptneox.use_parallel_residual'))
    assert meta == {'general.architecture': 'gptneox', 'gptneox.rope.dimension_count': 8,
                    'gptneox.rope.freq_base': 500_000.0, 'gptneox.use_parallel_residual': True}
    tok = AutoTokenizer.from_pretrained(str(src))
    ids = tok(CODE)['input_ids']
    fp32 = _Runner('hf', str(src), 2)
    want, ref = fp32.greedy(ids, 16), fp32.logits(ids)
    g16, g8 = _Runner('gguf', str(paths['gguf:f16']), 2), _Runner('gguf', str(paths['gguf:q8_0']), 2)
    try:
        assert g16.greedy(ids, 16) == want
        assert np.abs(g16.logits(ids) - ref).max() < 2e-2             # F16 weights and llama.cpp's GELU: close
        assert (g8.logits(ids).argmax(-1) == ref.argmax(-1)).mean() > 0.9   # Q8_0: the same next token nearly everywhere
        with GGUFBackend(paths['gguf:f16']) as g: assert g.tokenize(FIM) == tok(FIM)['input_ids']
    finally: g16.close(); g8.close()
    c32, c8 = _Runner('ct2', str(paths['ct2:float32']), 2), _Runner('ct2', str(paths['ct2:int8']), 2)
    assert np.abs(c32.logits(ids) - ref).max() < 1e-4 and c32.greedy(ids, 16) == want
    assert np.abs(c8.logits(ids) - ref).max() < 0.1 * np.abs(ref).max() and (c8.logits(ids).argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_quant_table_rows(work):
    job = measure_job(work['tok'], [CODE * 4, FIM * 3], [CODE], seq_len=64, greedy_tokens=8, decode_tokens=8, threads=1)
    rows = quant_table({'hf:fp32': work['src'], 'gguf:f16': work['f16']}, job, rounds=1, progress=False)
    ref, g = rows
    assert ref['format'] == 'hf:fp32' and ref['ppl_delta'] == 0 and ref['top1_agree'] == 1 and ref['decode_x'] == 1
    assert g['top1_agree'] > 0.95 and abs(g['ppl_delta']) < 0.05 * ref['ppl'] and g['greedy_prefix'] == 8
    assert g['size_mb'] < ref['size_mb'] and g['peak_rss_mb'] > 10 and g['decode_tps'] > 0


def test_quantize_cli(work, tmp_path, capsys):
    assert cli([str(work['src']), '--to', 'gguf:q3_k', '--out', str(tmp_path)]) == 2
    assert "unknown format 'gguf:q3_k'" in capsys.readouterr().err
    assert cli([str(tmp_path), '--to', 'gguf:q8_0', '--out', str(tmp_path / 'o')]) == 2
    assert 'no config.json' in capsys.readouterr().err
    assert cli([str(work['src']), '--to', 'gguf:q8_0,ct2:int8', '--out', str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert 'gguf:q8_0' in out and (tmp_path / 'out' / 'model-q8_0.gguf').is_file() and (tmp_path / 'out' / 'ct2-int8' / 'model.bin').is_file()


def test_chat_and_eval_cli_take_backend(work, tmp_path):
    r = subprocess.run([sys.executable, '-m', 'stablecode.cli', 'chat', str(work['f16']), '--backend', 'gguf',
                        '--prompt', 'hi', '--max-new-tokens', '4'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'eval'
    r = subprocess.run([sys.executable, '-m', 'stablecode.cli', 'eval', '--model', str(work['f16']), '--backend', 'gguf',
                        '--tasks', 'exercises', '--limit', '2', '--max-new-tokens', '8', '--temperature', '0',
                        '--out', str(out), '--allow-weak-sandbox'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    gens = [json.loads(l) for l in (out / 'generations.jsonl').read_text().splitlines()]
    assert len(gens) == 2 and all(len(g['completions']) == 1 for g in gens)
    assert 'exercises: pass@1' in r.stdout and '(gguf)' in (out / 'results.md').read_text()
    r = subprocess.run([sys.executable, '-m', 'stablecode.cli', 'eval', '--model', str(work['f16']), '--backend', 'ct2',
                        '--tasks', 'exercises', '--limit', '1'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'is a gguf model, not ct2' in r.stderr


def test_converter_comes_from_the_llama_cpp_python_sdist():
    d = llama_cpp_dir()
    assert (d / 'convert_hf_to_gguf.py').is_file() and (d / 'gguf-py' / 'gguf').is_dir()
    import llama_cpp
    assert "llama-cpp-python" in str(d) or 'STABLECODE_LLAMA_CPP' in __import__('os').environ
    assert llama_cpp.__version__ in (d.parents[1] / 'pyproject.toml').read_text() + (d.parents[1] / 'llama_cpp' / '__init__.py').read_text()


def have_gptqmodel() -> bool:
    try: import gptqmodel  # noqa: F401
    except ImportError: return False
    return True


def test_gptq_as_far_as_this_environment_goes(work, tmp_path, capsys):
    """GPTQ (GPTQModel) cannot be installed beside the lock (11_quantize says why): the formats, the config, the
    calibration set, the registry's recognition of a GPTQ checkpoint, and the one-line refusal are what is tested."""
    assert [str(f) for f in parse_formats('gptq:int4,gptq:int8')] == ['gptq:int4', 'gptq:int8']
    assert gptq_config('int4') == dict(bits=4, group_size=128, desc_act=False, sym=True) and gptq_config('int8')['bits'] == 8
    with pytest.raises(ValueError, match="unknown gptq type 'fp8'"): gptq_config('fp8')
    cal = calibration_set(work['tok'], calibration_texts(2), n=4, seq_len=32)
    assert len(cal) == 4 and all(len(c['input_ids']) == 32 == sum(c['attention_mask']) for c in cal)
    assert cal[0]['input_ids'] == work['tok'](calibration_texts(2)[0])['input_ids'][:32]
    with pytest.raises(ValueError, match='fewer than one window'): calibration_set(work['tok'], ['x = 1'], seq_len=64)
    d = tmp_path / 'gptq-int4'                      # a GPTQ checkpoint's config, as GPTQModel 7.7.0 writes it
    d.mkdir(); cfg = json.loads((work['src'] / 'config.json').read_text())
    cfg['quantization_config'] = dict(bits=4, group_size=128, desc_act=False, sym=True, quant_method='gptq', checkpoint_format='gptq')
    (d / 'config.json').write_text(json.dumps(cfg))
    assert is_gptq(d) and not is_gptq(work['src']) and backend_kind(d) == 'gptq' and backend_kind(work['src']) == 'hf'
    with pytest.raises(ValueError, match='is a gptq model, not hf'): load_backend(d, 'hf')
    if have_gptqmodel(): return
    with pytest.raises(RuntimeError) as e: load_backend(d)
    assert str(e.value) == GPTQ_MISSING and 'torch>=2.14.1' in GPTQ_MISSING and 'numpy==2.2.6' in GPTQ_MISSING
    assert cli([str(work['src']), '--to', 'gptq:int4,gptq:int8', '--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err                 # (above it, the export progress bar)
    assert err.strip().splitlines()[-1] == f"stablecode quantize: {GPTQ_MISSING}"


def test_inference_and_release_tables_name_their_models():
    rows = [dict(format='hf:fp32', size_mb=8.0, decode_tps=500.0, **{'pass@1 exercises': 0.25}),
            dict(format='ct2:int8', size_mb=2.0, decode_tps=1000.0, **{'pass@1 exercises': 0.5}),
            dict(format='gguf:q4_k_m', size_mb=1.5, decode_tps=800.0), dict(format='gguf:f16', size_mb=4.0, decode_tps=600.0)]
    t = inference_table(rows).splitlines()
    assert t[0].endswith('| exercises pass@1 |')
    assert t[2] == '| fp16 | 32.36 | 75 | 62.20 | hf:fp32 | 8.00 | 2.00 | 25.0% |'
    assert t[3] == '| CTranslate2 int8 | 16.29 | 33 | 64.63 | ct2:int8 | 2.00 | 1.00 | 50.0% |'
    assert t[5] == '| GPTQ int4 | 9.82 | 42 | 51.83 | gptq:int4 | not measured | | |'
    inst = releases_table(rows, instruct=True).splitlines()
    assert inst[2] == "| stable-code-instruct-3b | Q4_K_M | 1.71 | instruction model (tiny) | 1.50 |"
    assert '| stable-code-3b | F16 | 5.59 | a different model: not compared | |' in inst
    base = releases_table(rows, instruct=False).splitlines()
    assert base[2] == '| stable-code-3b | F16 | 5.59 | base model (tiny) | 4.00 |'
    assert '| stable-code-instruct-3b | Q4_K_M | 1.71 | a different model: not compared | |' in base
    assert '| stable-code-instruct-3b | Q5_K_M | size not stated | not exported | |' in base
