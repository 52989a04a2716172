"""The strict config loader and the model presets."""
import pytest
from stablecode.config import ConfigError, ModelConfig, preset, preset_names

def test_presets_parse_and_roundtrip_yaml(tmp_path):
    for name in preset_names():
        c = preset(name)
        c.to_yaml(tmp_path / f'{name}.yaml')
        assert ModelConfig.from_yaml(tmp_path / f'{name}.yaml') == c
        assert ModelConfig.from_hf(c.to_hf()) == c

def test_released_configuration():
    c = preset('stable-code-3b')
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.max_position_embeddings) == (50304, 2560, 6912, 32, 32, 32, 16384)
    assert (c.partial_rotary_factor, c.rope_theta, c.layer_norm_eps) == (0.25, 1e6, 1e-5)
    assert not (c.use_qkv_bias or c.qk_layernorm or c.use_parallel_residual or c.tie_word_embeddings)
    assert (c.bos_token_id, c.eos_token_id, c.head_dim, c.rotary_dims) == (0, 0, 80, 20)

@pytest.mark.parametrize('text,match', [
    ('hidden_size: 64\nnum_layers: 2\n', r"unknown key 'num_layers'"),
    ('hidden_size: "64"\n', r"'hidden_size' must be an integer, got str"),
    ('hidden_size: 64.0\n', r"'hidden_size' must be an integer, got float"),
    ('use_qkv_bias: 1\n', r"'use_qkv_bias' must be bool"),
    ('rope_theta: true\n', r"'rope_theta' must be a number, got bool"),
    ('hidden_act: gelu\n', r"'hidden_act' = 'gelu' must be one of \['silu'\]"),
    ('hidden_size: 100\nnum_attention_heads: 3\n', r"not divisible"),
    ('num_key_value_heads: 5\n', r"not a multiple"),
    ('- 1\n- 2\n', r"expected a mapping"),
    ('hidden_size: [\n', r"not valid YAML"),
])
def test_bad_yaml_names_key_and_file(tmp_path, text, match):
    f = tmp_path / 'model.yaml'; f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e: ModelConfig.from_yaml(f)
    assert 'model.yaml' in str(e.value) or 'ModelConfig' in str(e.value)

def test_unknown_preset_and_override_errors():
    with pytest.raises(ConfigError, match="unknown model preset 'huge'.*tiny"): preset('huge')
    with pytest.raises(ConfigError, match="preset 'tiny'.*unknown key 'layers'"): preset('tiny', layers=3)
    assert preset('tiny', num_hidden_layers=2).num_hidden_layers == 2

def test_int_accepted_for_float(tmp_path):
    f = tmp_path / 'm.yaml'; f.write_text('rope_theta: 10000\n')
    c = ModelConfig.from_yaml(f)
    assert c.rope_theta == 10000.0 and isinstance(c.rope_theta, float)

# every module that registers presets; one parametrized test then builds every preset of every kind
import stablecode.data, stablecode.packing, stablecode.pretrain  # noqa: E402,F401
from stablecode.config import Presets  # noqa: E402

@pytest.mark.parametrize('kind,name', [(k, n) for k, r in sorted(Presets.registries.items()) for n in r.names()])
def test_every_preset_builds(kind, name):
    reg = Presets.registries[kind]
    cfg = reg(name)
    assert isinstance(cfg, reg.cls) and type(cfg).from_dict(cfg.to_dict()) == cfg    # strict round trip

def test_registries_cover_every_kind_and_unknown_names_fail_in_one_line():
    assert {'model', 'mixture', 'data', 'pretrain'} <= set(Presets.registries)
    for kind, reg in Presets.registries.items():
        with pytest.raises(ConfigError) as e: reg('no-such-preset')
        assert str(e.value) == f"unknown {kind} preset 'no-such-preset' (known: {', '.join(reg.names())})"

def test_yaml_that_is_not_utf8_or_missing_is_one_line(tmp_path):
    f = tmp_path / 'm.yaml'
    f.write_bytes(b'hidden_size: \xff\n')
    with pytest.raises(ConfigError, match=r'm\.yaml: not UTF-8 text \(byte 13'): ModelConfig.from_yaml(f)
    with pytest.raises(ConfigError, match=r'nope\.yaml: cannot read it'): ModelConfig.from_yaml(tmp_path / 'nope.yaml')

def test_alpha_preset_and_gpt_neox_config_round_trip():
    from stablecode.config import model_config_from_gpt_neox, model_config_to_gpt_neox
    a = preset('stablecode-alpha-3b')
    assert (a.vocab_size, a.hidden_size, a.intermediate_size, a.num_hidden_layers, a.num_attention_heads,
            a.max_position_embeddings, a.rope_theta, a.rotary_dims) == (49152, 2560, 10240, 32, 32, 16384, 10000.0, 20)
    assert (a.mlp, a.linear_bias, a.use_qkv_bias, a.use_parallel_residual, a.parallel_block) == ('gelu', True, True, True, 'gptneox')
    neox = model_config_to_gpt_neox(a)
    assert neox.model_type == 'gpt_neox' and neox.rope_parameters['partial_rotary_factor'] == 0.25
    assert model_config_from_gpt_neox(neox) == a == model_config_from_gpt_neox(neox.to_dict())
    assert ModelConfig.from_hf(a.to_hf()) == a                      # the variants travel as extra attributes
    with pytest.raises(ConfigError, match="'mlp' = 'swiglu' has no GPT-NeoX equivalent"):
        model_config_to_gpt_neox(preset('stable-code-3b'))
    with pytest.raises(ConfigError, match='attention_bias false'):
        model_config_from_gpt_neox(dict(neox.to_dict(), attention_bias=False))

def test_stablelm_configs_unchanged_by_the_variant_fields():
    for name in ('stable-code-3b', 'tiny', 'small'):
        c, hf = preset(name), preset(name).to_hf().to_dict()
        assert not {'mlp', 'linear_bias', 'parallel_block'} & (set(c.to_dict()) | set(hf))   # same YAML, hash and config.json
