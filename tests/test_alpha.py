"""StableCode alpha (GPT-NeoX) as configuration of our model: parity with transformers' GPTNeoXForCausalLM both ways."""
import json
import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM
from stablecode.config import ModelConfig, model_config_from_gpt_neox, model_config_to_gpt_neox, preset
from stablecode.model import (StableCodeForCausalLM, count_parameters, flops_per_token, fuse_qkv, gpt_neox_to_stablecode,
                              split_qkv, stablecode_to_gpt_neox)

# GPT-NeoX configs as transformers spells them (rotary_pct, rotary_emb_base, use_parallel_residual)
NEOX = dict(vocab_size=256, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=512, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
            hidden_act='gelu', bos_token_id=0, eos_token_id=0, tie_word_embeddings=False)
MATRIX = {
    'alpha': {},                                                          # parallel, 2 LayerNorms, rotary on 25%
    'full_rotary': dict(rotary_pct=1.0),
    'sequential': dict(use_parallel_residual=False),
    'heads_2_head_dim_80': dict(hidden_size=160, num_attention_heads=2),  # alpha's head_dim 80 (20 rotary dims)
    'heads_8_full_rotary': dict(hidden_size=128, num_attention_heads=8, rotary_pct=1.0),
    'tied': dict(tie_word_embeddings=True),
}

def neox_pair(overrides, seed=0):
    "transformers' GPTNeoXForCausalLM with perturbed weights, and ours loaded from it."
    torch.manual_seed(seed)
    ref = GPTNeoXForCausalLM(GPTNeoXConfig(**{**NEOX, **overrides})).eval()
    with torch.no_grad():
        for p in ref.parameters(): p.add_(0.05 * torch.randn_like(p))   # LayerNorms and biases non-trivial
    return ref, StableCodeForCausalLM.from_gpt_neox(ref)

def test_config_reads_as_the_gpt_neox_variant():
    ref, ours = neox_pair(MATRIX['alpha'])
    c = ours.cfg
    assert (c.mlp, c.linear_bias, c.use_qkv_bias, c.use_parallel_residual, c.parallel_block) == ('gelu', True, True, True, 'gptneox')
    assert (c.rotary_dims, c.rope_theta) == (4, 10000.0)
    assert ours.model.layers[0].mlp.up_proj.bias is not None and not hasattr(ours.model.layers[0].mlp, 'gate_proj')

@pytest.mark.parametrize('name', MATRIX)
def test_forward_parity_loading_gpt_neox(name):
    ref, ours = neox_pair(MATRIX[name])
    ids = torch.randint(0, 256, (3, 47))
    with torch.no_grad(): a, b = ours(ids).logits, ref(ids).logits
    assert a.abs().max() > 0.1
    assert (a - b).abs().max().item() < 1e-5
    if ours.cfg.tie_word_embeddings: assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()

@pytest.mark.parametrize('name', ['alpha', 'sequential', 'heads_8_full_rotary'])
def test_greedy_generation_parity_with_cache(name):
    ref, ours = neox_pair(MATRIX[name])
    prompt = torch.randint(1, 256, (2, 11))
    kw = dict(max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True,
              return_dict_in_generate=True)
    a, b = ours.generate(prompt, **kw), ref.generate(prompt, **kw)
    assert a.sequences.shape[1] == 31 and torch.equal(a.sequences, b.sequences)
    for la, lb in zip(a.logits, b.logits): assert (la - lb).abs().max().item() < 1e-5

@pytest.mark.parametrize('name', ['alpha', 'sequential', 'heads_2_head_dim_80'])
def test_saved_checkpoint_loads_in_stock_transformers(name, tmp_path):
    ref, _ = neox_pair(MATRIX[name])
    cfg = model_config_from_gpt_neox(ref.config)
    torch.manual_seed(1)
    ours = StableCodeForCausalLM(cfg).eval()                             # our own weights, not ref's
    with torch.no_grad():
        for p in ours.parameters(): p.add_(0.05 * torch.randn_like(p))
    ours.save_pretrained(tmp_path)                                       # dispatches to save_gpt_neox
    conf = json.loads((tmp_path / 'config.json').read_text())
    assert conf['model_type'] == 'gpt_neox' and conf['architectures'] == ['GPTNeoXForCausalLM']
    stock = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(stock) is GPTNeoXForCausalLM
    ids = torch.randint(0, 256, (2, 19))
    with torch.no_grad(): assert (stock(ids).logits - ours(ids).logits).abs().max().item() < 1e-5
    back = StableCodeForCausalLM.from_pretrained(tmp_path)               # dispatches to from_gpt_neox
    assert back.cfg == cfg
    with torch.no_grad(): assert torch.equal(back(ids).logits, ours(ids).logits)

def test_transformers_own_save_loads_and_old_names_and_buffers(tmp_path):
    ref, _ = neox_pair(MATRIX['alpha'])
    ref.save_pretrained(tmp_path)                                        # saved by transformers itself
    ours = StableCodeForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 256, (2, 13))
    with torch.no_grad(): assert (ours(ids).logits - ref(ids).logits).abs().max().item() < 1e-5
    sd = {('embed_out.weight' if k == 'lm_head.weight' else k): v for k, v in ref.state_dict().items()}  # 2023 names
    sd['gpt_neox.layers.0.attention.bias'] = torch.ones(1, 1, 8, 8, dtype=torch.bool)   # old buffers, not weights
    sd['gpt_neox.layers.0.attention.rotary_emb.inv_freq'] = torch.ones(2)
    mine = gpt_neox_to_stablecode(sd, ours.cfg)
    assert mine.keys() == ours.state_dict().keys()
    assert all(torch.equal(mine[k], v) for k, v in ours.state_dict().items())

def test_fused_qkv_layout_and_exact_round_trip():
    n, d, h = 3, 5, 7
    w = torch.arange(3 * n * d, dtype=torch.float64)[:, None] * 100 + torch.arange(h)   # row r holds 100 r + column
    q, k, v = split_qkv(w, n)
    for head in range(n):                                                # rows [q_h, k_h, v_h] per head h
        for j, z in enumerate((q, k, v)):
            assert torch.equal(z[head * d:(head + 1) * d], w[(3 * head + j) * d:(3 * head + j + 1) * d])
    assert torch.equal(fuse_qkv(q, k, v, n), w)
    b = torch.randn(3 * n * d)
    assert torch.equal(fuse_qkv(*split_qkv(b, n), n), b)                  # biases too
    ref, ours = neox_pair(MATRIX['heads_2_head_dim_80'])
    back = stablecode_to_gpt_neox(ours.state_dict(), ours.cfg)
    want = {('embed_out.weight' if k == 'lm_head.weight' else k): v for k, v in ref.state_dict().items()}
    assert back.keys() == want.keys() and all(torch.equal(back[k], want[k]) for k in want)

def test_alpha_parameter_count_from_the_released_shapes():
    a = preset('stablecode-alpha-3b')
    h, i, L, V = 2560, 10240, 32, 49152                                  # the released config.json
    layer = (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h   # fused qkv, dense, MLP, 2 LNs
    expected = V * h + L * layer + 2 * h + V * h                         # embed_in, layers, final LN, embed_out
    assert count_parameters(a) == expected
    with torch.device('meta'): stock = GPTNeoXForCausalLM(model_config_to_gpt_neox(a))
    assert sum(p.numel() for p in stock.parameters()) == expected      # transformers' own class agrees
    n_matmul = L * (4 * h * h + 2 * h * i) + h * V
    assert flops_per_token(a, 4096) == 6 * n_matmul + 12 * L * h * 4096

def test_tiny_alpha_preset_round_trips_and_stablelm_refused_by_gpt_neox(tmp_path):
    c = preset('tiny-alpha')
    assert model_config_from_gpt_neox(model_config_to_gpt_neox(c)) == c
    m = StableCodeForCausalLM(c)
    assert ModelConfig.from_hf(m.config) == c
    with pytest.raises(ValueError, match='no GPT-NeoX equivalent'): StableCodeForCausalLM(preset('tiny')).save_gpt_neox(tmp_path / 'x')
    assert not (tmp_path / 'x').exists()                                 # refused before writing
