"""TRL's SFTTrainer trains our model as it would any transformers causal LM (the SFT chapter relies on this)."""
import math
import pytest
import torch
from datasets import Dataset
from stablecode.config import ModelConfig
from stablecode.model import StableCodeForCausalLM
from test_model import char_tokenizer

def test_sft_trainer_trains_our_model(tmp_path):
    from trl import SFTConfig, SFTTrainer
    tok = char_tokenizer()
    cfg = ModelConfig.from_dict(dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256))
    torch.manual_seed(0)
    model = StableCodeForCausalLM(cfg)
    ds = Dataset.from_dict({'text': [f'def add_{i}(a, b):\n    return a + b\n' for i in range(64)]})
    args = SFTConfig(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=8, learning_rate=3e-3,
                     logging_steps=5, save_strategy='no', report_to=[], use_cpu=True, max_length=64,
                     dataset_num_proc=None, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    assert losses[0] > 3.0 and losses[-1] < 0.5 * losses[0], losses
    trainer.save_model(tmp_path / 'final')
    back = StableCodeForCausalLM.from_pretrained(tmp_path / 'final')
    assert back.cfg == cfg
