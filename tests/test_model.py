"""Parity with transformers' StableLmForCausalLM, packed documents, generation, checkpoints, bad input."""
import json, math
import pytest
import torch
from transformers import AutoModelForCausalLM, StableLmForCausalLM, PreTrainedTokenizerFast
from stablecode.config import ModelConfig, preset
from stablecode.generate import complete
from stablecode.model import CACHE_FIELD, StableCodeForCausalLM, count_parameters, flops_per_token

BASE = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=512, rope_theta=10_000.0)
MATRIX = {
    'default': {},
    'qkv_bias': dict(use_qkv_bias=True),
    'qk_layernorm': dict(qk_layernorm=True),
    'parallel_residual': dict(use_parallel_residual=True),
    'gqa': dict(num_key_value_heads=2),
    'gqa_qk_layernorm': dict(num_key_value_heads=1, qk_layernorm=True),
    'tied': dict(tie_word_embeddings=True),
    'head_dim_40': dict(hidden_size=160, num_attention_heads=4, num_key_value_heads=4),   # 40 = not a power of two
    'head_dim_24_full_rotary': dict(hidden_size=96, num_attention_heads=4, partial_rotary_factor=1.0),
    'everything': dict(use_qkv_bias=True, qk_layernorm=True, use_parallel_residual=True, num_key_value_heads=2,
                       tie_word_embeddings=True, hidden_size=96, num_attention_heads=4),
}

def pair(overrides, seed=0):
    "transformers' model with perturbed weights, and ours with the same weights."
    cfg = ModelConfig.from_dict({**BASE, **overrides})
    torch.manual_seed(seed)
    ref = StableLmForCausalLM(cfg.to_hf()).eval()
    with torch.no_grad():
        for p in ref.parameters(): p.add_(0.05 * torch.randn_like(p))
    ours = StableCodeForCausalLM(cfg).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(k == 'lm_head.weight' for k in missing), (missing, unexpected)
    if cfg.tie_word_embeddings: assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()
    return cfg, ref, ours

@pytest.mark.parametrize('name', MATRIX)
def test_forward_parity(name):
    cfg, ref, ours = pair(MATRIX[name])
    ids = torch.randint(0, cfg.vocab_size, (3, 47))
    with torch.no_grad(): a, b = ours(ids).logits, ref(ids).logits
    assert a.abs().max() > 0.1                       # logits are not trivially small
    assert (a - b).abs().max().item() < 1e-5

@pytest.mark.parametrize('name', ['default', 'gqa_qk_layernorm', 'parallel_residual', 'everything'])
def test_greedy_generation_parity_with_cache(name):
    cfg, ref, ours = pair(MATRIX[name])
    prompt = torch.randint(1, cfg.vocab_size, (2, 11))
    kw = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True,
              return_dict_in_generate=True)
    a, b = ours.generate(prompt, **kw), ref.generate(prompt, **kw)
    assert a.sequences.shape[1] == 31 and torch.equal(a.sequences, b.sequences)
    for la, lb in zip(a.logits, b.logits): assert (la - lb).abs().max().item() < 1e-5

def test_left_padded_batch_generation_parity():
    cfg, ref, ours = pair(MATRIX['gqa'])
    ids = torch.randint(1, cfg.vocab_size, (2, 12)); am = torch.ones_like(ids)
    ids[1, :5] = 0; am[1, :5] = 0
    kw = dict(attention_mask=am, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours.generate(ids, **kw), ref.generate(ids, **kw))

def test_kv_cache_equals_recomputation_logits():
    cfg, _, ours = pair(MATRIX['everything'])
    ids = torch.randint(0, cfg.vocab_size, (2, 30))
    with torch.no_grad():
        full = ours(ids).logits
        out = ours(ids[:, :10], use_cache=True)
        steps = [out.logits]
        cache = getattr(out, CACHE_FIELD)
        for n, i in enumerate(range(10, 30, 5)):    # chunks of 5 after a prefill of 10
            # the cache keyword of transformers >= 5.24 (`cache`) and the one before it (`past_key_values`) alternate
            kw = {'cache' if n % 2 else 'past_key_values': cache}
            o = ours(ids[:, i:i + 5], use_cache=True, **kw); cache = getattr(o, CACHE_FIELD)
            steps.append(o.logits)
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-5

@pytest.mark.parametrize('how', ['document_ids', 'position_ids'])
def test_packed_row_equals_documents_alone(how):
    cfg, _, ours = pair(MATRIX['everything'])
    docs = [torch.randint(1, cfg.vocab_size, (1, n)) for n in (7, 1, 12, 5)]
    row = torch.cat(docs, 1)
    doc_ids = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    pos = torch.cat([torch.arange(d.shape[1])[None] for d in docs], 1)
    kw = dict(document_ids=doc_ids) if how == 'document_ids' else dict(position_ids=pos)
    with torch.no_grad():
        packed = ours(row, **kw).logits
        alone = torch.cat([ours(d).logits for d in docs], 1)
        unmasked = ours(row).logits
    assert (packed - alone).abs().max().item() < 1e-5
    assert (unmasked - alone).abs().max().item() > 1e-3   # without the mask the documents do interact

def test_loss_matches_transformers_and_ignores_minus_100():
    cfg, ref, ours = pair(MATRIX['default'])
    ids = torch.randint(0, cfg.vocab_size, (2, 20)); labels = ids.clone(); labels[:, :5] = -100
    a, b = ours(ids, labels=labels).loss, ref(ids, labels=labels).loss
    assert abs(a.item() - b.item()) < 1e-5

def test_gradient_checkpointing_same_gradients():
    cfg, _, ours = pair(MATRIX['default'])
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    ours.train()
    ours(ids, labels=ids).loss.backward()
    g1 = [p.grad.clone() for p in ours.parameters()]
    ours.zero_grad(); ours.activation_checkpointing_enable()
    assert all(l.gradient_checkpointing for l in ours.model.layers)
    ours(ids, labels=ids).loss.backward()
    for a, p in zip(g1, ours.parameters()): assert torch.allclose(a, p.grad, atol=1e-6)

def test_parameter_count_3b_on_meta_device():
    assert count_parameters(preset('stable-code-3b')) == 2_795_443_200
    # the formula the report's MFU uses: 6N + 12 L h s, N = matmul parameters (no input embedding)
    c = preset('stable-code-3b')
    n = 2_795_443_200 - c.vocab_size * c.hidden_size - (2 * 2 * c.num_hidden_layers + 2) * c.hidden_size
    assert flops_per_token(c, 4096) == 6 * n + 12 * 32 * 2560 * 4096

def test_save_load_stock_transformers_and_sharded(tmp_path):
    cfg, ref, ours = pair(MATRIX['qkv_bias'])
    ours.save_pretrained(tmp_path / 'ours', max_shard_size='100KB')
    assert len(list((tmp_path / 'ours').glob('*.safetensors'))) > 1        # really sharded
    conf = json.loads((tmp_path / 'ours' / 'config.json').read_text())
    assert conf['model_type'] == 'stablelm' and conf['architectures'] == ['StableLmForCausalLM']
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / 'ours').eval()
    assert type(stock) is StableLmForCausalLM
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    with torch.no_grad(): assert (stock(ids).logits - ours(ids).logits).abs().max() < 1e-5
    ref.save_pretrained(tmp_path / 'ref')                                   # saved by transformers itself
    back = StableCodeForCausalLM.from_pretrained(tmp_path / 'ref').eval()
    with torch.no_grad(): assert (back(ids).logits - ref(ids).logits).abs().max() < 1e-5

def test_load_original_remote_code_config(tmp_path):
    cfg, ref, _ = pair(MATRIX['default'])
    ref.save_pretrained(tmp_path)
    d = json.loads((tmp_path / 'config.json').read_text())
    rp = d.pop('rope_parameters')
    epoch = {k: v for k, v in d.items() if k not in ('num_attention_heads', 'layer_norm_eps', 'architectures')}
    epoch.update(model_type='stablelm_epoch', architectures=['StableLMEpochForCausalLM'], rope_pct=rp['partial_rotary_factor'],
                 rope_theta=rp['rope_theta'], norm_eps=1e-5, num_heads=cfg.num_attention_heads)
    (tmp_path / 'config.json').write_text(json.dumps(epoch))
    m = StableCodeForCausalLM.from_pretrained(tmp_path).eval()
    assert m.cfg == cfg
    ids = torch.randint(0, cfg.vocab_size, (1, 9))
    with torch.no_grad(): assert (m(ids).logits - ref(ids).logits).abs().max() < 1e-5

def test_mismatched_checkpoint_names_the_tensor(tmp_path):
    cfg, _, ours = pair(MATRIX['default'])
    ours.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"model\.embed_tokens\.weight.*\(256, 64\).*\(300, 64\)"):
        StableCodeForCausalLM.from_pretrained(tmp_path, config=ModelConfig.from_dict({**BASE, 'vocab_size': 300}))
    with pytest.raises(ValueError, match='q_proj.bias'):
        StableCodeForCausalLM.from_pretrained(tmp_path, config=ModelConfig.from_dict({**BASE, 'use_qkv_bias': True}))

def test_bad_input_errors_name_the_field():
    cfg, _, ours = pair(MATRIX['default'])
    with pytest.raises(ValueError, match=r'token id 256.*vocab_size'): ours(torch.tensor([[1, 256]]))
    with pytest.raises(ValueError, match=r'token id -1'): ours(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match='max_position_embeddings = 512'): ours(torch.ones(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match='shape'): ours(torch.ones(5, dtype=torch.long))

def char_tokenizer(vocab_size=256):
    "A character-level fast tokenizer (id 0 = <|endoftext|>), enough to exercise text generation."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    chars = [chr(c) for c in range(32, 127)] + ['\n']
    vocab = {'<|endoftext|>': 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<|endoftext|>'))
    tok.pre_tokenizer = pre_tokenizers.Split('', 'isolated')
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|endoftext|>', pad_token='<|endoftext|>')

def test_complete_stop_strings_sampling_and_batching():
    cfg, _, ours = pair(dict(vocab_size=97))                             # exactly the tokenizer's vocabulary
    tok = char_tokenizer()
    assert len(tok) == cfg.vocab_size
    assert tok.decode(tok('ab\nc')['input_ids']) == 'ab\nc'
    prompts = ['def f(x):', 'x']
    greedy = complete(ours, tok, prompts, max_new_tokens=24)
    alone = [complete(ours, tok, [p], max_new_tokens=24)[0] for p in prompts]
    assert greedy == alone and all(len(c) == 1 for c in greedy)          # left padding changes nothing
    assert len(greedy[0][0]) > 8, greedy
    stop = greedy[0][0][3:5]                                             # a string the greedy completion contains
    cut = complete(ours, tok, prompts[:1], max_new_tokens=24, stop=[stop])[0][0]
    assert stop not in cut and greedy[0][0].startswith(cut) and len(cut) <= 3
    torch.manual_seed(0)
    samples = complete(ours, tok, prompts[:1], max_new_tokens=12, temperature=1.0, top_p=0.95, n=6)[0]
    assert len(samples) == 6 and len(set(samples)) > 1                   # sampling gives different completions

@pytest.mark.skipif(not torch.cuda.is_available(), reason='flash-attn 2 needs a CUDA GPU (none on this machine)')
def test_flash_attention_varlen_matches_sdpa_on_packed_rows():
    pytest.importorskip('flash_attn', reason='flash-attn 2 (the optional `flash` extra) is not installed')
    cfg, _, ours = pair(MATRIX['gqa'])
    ours = ours.to('cuda', torch.bfloat16)
    docs = torch.tensor([[0] * 9 + [1] * 20 + [2] * 3], device='cuda')
    ids = torch.randint(0, cfg.vocab_size, docs.shape, device='cuda')
    with torch.no_grad():
        flash = ours(ids, document_ids=docs).logits.float()              # takes the varlen kernel
        sdpa = ours(ids, document_ids=docs, attention_mask=torch.ones_like(ids)).logits.float()  # masked SDPA
    assert (flash - sdpa).abs().max().item() < 5e-2                      # bf16 tolerance
