"""The model stage: DeepSeek-Coder's Llama-style decoder, its config and presets (torch only)."""

from repolm.model.config import PRESETS, ModelConfig, padded_vocab_size, preset_config
from repolm.model.llama import (
    IGNORE_INDEX,
    DocumentSpans,
    KVCache,
    Transformer,
    build_model,
    flops_per_token,
    linear_cross_entropy,
)

__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "DocumentSpans",
    "KVCache",
    "ModelConfig",
    "Transformer",
    "build_model",
    "flops_per_token",
    "linear_cross_entropy",
    "padded_vocab_size",
    "preset_config",
]
