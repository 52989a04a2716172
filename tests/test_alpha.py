"""StableCode alpha (GPT-NeoX) as configuration of our model: parity with transformers' GPTNeoXForCausalLM both ways."""
import json, os, subprocess, sys
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


# --- StableCode alpha through the pretraining stage: `tiny-alpha` from scratch, then from GPT-NeoX checkpoints ---------
import gzip, sysconfig
from dataclasses import replace
from pathlib import Path
from stablecode.packing import Loader, PackConfig, PackedDataset, pack_streams, stream_dir
from stablecode.pretrain import TrainStage, pretrain_preset, run_local
from stablecode.tokenizer import padded_vocab_size, save_tokenizer, train_tokenizer

@pytest.fixture(scope='module')
def alpha_run(tmp_path_factory):
    """A small corpus and BPE, a stock GPT-NeoX checkpoint saved by transformers, and one launch of the entry point
    with three stages: `tiny-alpha`'s two (scratch, then its own gpt_neox checkpoint) and one started from the stock one."""
    d = tmp_path_factory.mktemp('alpha')
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:30]
    docs = [dict(text=f.read_text(encoding='utf-8', errors='replace'), id=f.name, metadata=dict(source='code')) for f in files]
    (d / 'data' / 'corpus').mkdir(parents=True)
    with gzip.open(d / 'data' / 'corpus' / '00000.jsonl.gz', 'wt', encoding='utf-8') as f:
        for x in docs: f.write(json.dumps(x) + '\n')
    tok = train_tokenizer((x['text'] for x in docs), vocab_size=1024)
    save_tokenizer(tok, d / 'data' / 'tokenizer')
    pack_streams(d / 'data', dict(code=PackConfig(seq_len=64), long_context=PackConfig(seq_len=128, fim_scope='file')), tok)
    torch.manual_seed(3)
    stock = GPTNeoXForCausalLM(model_config_to_gpt_neox(preset('tiny-alpha', vocab_size=padded_vocab_size(len(tok)))))
    stock.save_pretrained(d / 'stock')                                   # transformers' own gpt_neox checkpoint
    cfg = pretrain_preset('tiny-alpha', data_dir=str(d / 'data'), out_dir=str(d / 'out'), save_every=0, deterministic=True,
                          progress=False, tensorboard=False, peak_tflops=1.0)
    fast = dict(steps=2, global_batch_tokens=1024, micro_batch=8, warmup=1)              # two micro-steps of 8 x 64
    cfg.stages = [replace(cfg.stages[0], **fast), replace(cfg.stages[1], steps=2, global_batch_tokens=1024, micro_batch=4),
                  TrainStage(name='from_stock', data='code', init=str(d / 'stock'), **fast)]
    run_local(cfg, d / 'config.yaml')
    return d, cfg

def _first_loss(model, cfg, stage) -> float:
    "The loss of step 0 of `stage` computed with `model`: the mean over its micro-steps, before any update."
    ds = PackedDataset(stream_dir(cfg.data_dir, stage.stream))
    loader, gas = Loader(ds, stage.micro_batch, seed=cfg.seed), stage.grad_accum(1, ds.seq_len)
    keys = ('input_ids', 'labels', 'position_ids', 'document_ids')
    with torch.no_grad():
        return sum(model(**{k: v for k, v in loader.batch_at(m).items() if k in keys}).loss.item() for m in range(gas)) / gas

def test_tiny_alpha_trains_through_the_entry_point_into_gpt_neox_checkpoints(alpha_run):
    d, cfg = alpha_run
    s = {x['stage']: x for x in json.loads((d / 'out' / 'summary.json').read_text())['stages']}
    assert list(s) == ['code', 'long_context', 'from_stock']
    assert [s[n]['seq_len'] for n in s] == [64, 128, 64] and all(x['rope_theta'] == 10_000.0 for x in s.values())
    assert 6.0 < s['code']['first_loss'] < 7.5                           # ln(1024) = 6.93: a fresh model
    ids = torch.randint(0, 1024, (2, 21))
    for n in s:
        hf = d / 'out' / n / 'hf'
        assert json.loads((hf / 'config.json').read_text())['model_type'] == 'gpt_neox'
        stock = AutoModelForCausalLM.from_pretrained(hf).eval()
        ours = StableCodeForCausalLM.from_pretrained(hf).eval()
        assert type(stock) is GPTNeoXForCausalLM and ours.cfg.mlp == 'gelu' and ours.cfg.parallel_block == 'gptneox'
        with torch.no_grad(): assert (stock(ids).logits - ours(ids).logits).abs().max().item() < 1e-5

@pytest.mark.parametrize('stage,start', [('long_context', 'out/code/hf'), ('from_stock', 'stock')])
def test_a_stage_starts_from_the_gpt_neox_checkpoint_it_names(alpha_run, stage, start):
    "The stage's logged first loss is the starting checkpoint's loss on the same batches: it began from those weights."
    d, cfg = alpha_run
    st = next(x for x in cfg.stages if x.name == stage)
    logged = json.loads((d / 'out' / stage / 'metrics.jsonl').read_text().splitlines()[0])['loss']
    begin = StableCodeForCausalLM.from_pretrained(d / start).eval()
    assert abs(_first_loss(begin, cfg, st) - logged) < 1e-4
    fresh = StableCodeForCausalLM(begin.cfg).eval()                      # same shape, other weights: another loss
    assert abs(_first_loss(fresh, cfg, st) - logged) > 0.01
    after = StableCodeForCausalLM.from_pretrained(d / 'out' / stage / 'hf')
    assert not torch.equal(after.model.layers[0].mlp.up_proj.weight, begin.model.layers[0].mlp.up_proj.weight)   # it trained


HUB_SCRIPT = """
import json, sys, torch
from dataclasses import replace
from stablecode.pretrain import init_model, pretrain_preset
cfg = pretrain_preset('tiny-alpha')
stage = replace(cfg.stages[0], init='stabilityai/stablecode-completion-alpha-3b')   # a hub id: the released alpha's
m = init_model(cfg, stage, vocab_size=int(sys.argv[1]), seq_len=4096).eval()
with torch.no_grad(): print(json.dumps(dict(logits=m(torch.tensor([[1, 2, 3, 4, 5]])).logits[0, -1, :8].tolist(),
                                            max_pos=m.cfg.max_position_embeddings, mlp=m.cfg.mlp)))
"""

@pytest.mark.parametrize('weights', ['safetensors', 'bin'])
def test_a_stage_starts_from_a_gpt_neox_hub_id(tmp_path, weights):
    """`init: <hub id>` of a gpt_neox checkpoint goes through the real hub code (`snapshot_download`, safetensors
    preferred, else the 2023 release's pytorch_model*.bin), here answered offline from a hub cache laid out on disk."""
    torch.manual_seed(5)
    stock = GPTNeoXForCausalLM(model_config_to_gpt_neox(preset('tiny-alpha', vocab_size=512))).eval()
    rev = '0123456789abcdef0123456789abcdef01234567'
    repo = tmp_path / 'hub' / 'models--stabilityai--stablecode-completion-alpha-3b'
    snap = repo / 'snapshots' / rev
    if weights == 'safetensors': stock.save_pretrained(snap)
    else:                                                                     # the 2023 layout (transformers 5 writes
        stock.config.save_pretrained(snap); torch.save(stock.state_dict(), snap / 'pytorch_model.bin')   # no .bin)
    (repo / 'refs').mkdir(); (repo / 'refs' / 'main').write_text(rev)
    assert any(snap.glob('*.bin' if weights == 'bin' else '*.safetensors'))
    r = subprocess.run([sys.executable, '-c', HUB_SCRIPT, '512'], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'HF_HUB_CACHE': str(tmp_path / 'hub'), 'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    with torch.no_grad(): want = stock(torch.tensor([[1, 2, 3, 4, 5]])).logits[0, -1, :8]
    assert got['mlp'] == 'gelu' and got['max_pos'] == 4096                   # the stage's length applied
    assert (torch.tensor(got['logits']) - want).abs().max().item() < 1e-5
