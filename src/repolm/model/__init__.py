"""The model stage: DeepSeek-Coder's Llama-style decoder, its config and presets (torch only)."""

from repolm.model.config import PRESETS, ModelConfig, padded_vocab_size, preset_config
from repolm.model.llama import KVCache, Transformer, build_model, flops_per_token

__all__ = [
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "Transformer",
    "build_model",
    "flops_per_token",
    "padded_vocab_size",
    "preset_config",
]
