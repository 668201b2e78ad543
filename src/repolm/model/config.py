"""Model configuration and named presets.

`ModelConfig` describes a DeepSeek-Coder (Llama-style) decoder. Field names follow the Hugging Face
`LlamaConfig` where one exists, so a `config.json` maps onto it field by field. The three paper sizes come
from the DeepSeek-Coder paper, Table 2, and the released HF configs (vocab 32256 = 32000 BPE + 22 added
tokens, padded; RoPE theta 1e5 with linear scaling x4 for 16K context). `tiny` and `small` are CPU presets
for tests and demos.

This module imports nothing but the standard library, so configs can be built and validated without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Shape and numerics of a Llama-style decoder (RMSNorm, SwiGLU, RoPE, grouped-query attention)."""

    vocab_size: int = 32256
    """Rows of the embedding and of the output projection (may exceed the tokenizer's ids; padding)."""
    hidden_size: int = 2048
    """Width of the residual stream."""
    intermediate_size: int = 5504
    """Hidden width of the SwiGLU feed-forward block."""
    num_hidden_layers: int = 24
    """Number of transformer blocks."""
    num_attention_heads: int = 16
    """Query heads per attention layer."""
    num_key_value_heads: int | None = None
    """Key/value heads (grouped-query attention); None means as many as query heads (MHA)."""
    head_dim: int | None = None
    """Width of one attention head; None means hidden_size // num_attention_heads."""
    max_position_embeddings: int = 16384
    """Longest sequence the model is meant to see (after RoPE scaling)."""
    rope_theta: float = 100000.0
    """RoPE base frequency (1e4 in stage-1 pretraining, 1e5 after the long-context stage)."""
    rope_scaling_factor: float = 1.0
    """Linear RoPE position-interpolation factor: positions are divided by it (4.0 for the 16K models)."""
    rms_norm_eps: float = 1e-6
    """Epsilon inside RMSNorm."""
    tie_word_embeddings: bool = False
    """Share the embedding matrix with the output projection (DeepSeek-Coder: untied)."""
    initializer_range: float = 0.006
    """Std of the normal init of linear and embedding weights (DeepSeek LLM uses 0.006)."""
    bos_token_id: int | None = 32013
    """Id of `<｜begin▁of▁sentence｜>`; recorded in exported configs."""
    eos_token_id: int | None = 32014
    """Id of `<｜end▁of▁sentence｜>` (base models); instruct models stop on `<|EOT|>` (32021)."""
    pad_token_id: int | None = None
    """Padding id recorded in exported configs, if any."""

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.num_attention_heads <= 0 or self.hidden_size % self.num_attention_heads != 0:
                raise ValueError(
                    f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                    f"{self.num_attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        positive = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rope_theta <= 0 or self.rope_scaling_factor <= 0:
            raise ValueError("rope_theta and rope_scaling_factor must be positive")

    @property
    def num_parameters(self) -> int:
        """Parameter count, computed from the shapes alone."""
        d, q, kv = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        attention = d * q + 2 * d * kv + q * d
        feed_forward = 3 * d * self.intermediate_size
        block = attention + feed_forward + 2 * d
        embeddings = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * block + embeddings + d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a dict; unknown keys are an error (names the key)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**values)


# The paper's Table 2 sizes with the released checkpoints' numerics (HF config.json of deepseek-coder-*-base).
_DEEPSEEK_CODER = dict(
    vocab_size=32256,
    max_position_embeddings=16384,
    rope_theta=100000.0,
    rope_scaling_factor=4.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    bos_token_id=32013,
    eos_token_id=32014,
)

PRESETS: dict[str, dict] = {
    "deepseek-coder-1.3b": dict(
        _DEEPSEEK_CODER, hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16
    ),
    "deepseek-coder-6.7b": dict(
        _DEEPSEEK_CODER, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32
    ),
    "deepseek-coder-33b": dict(
        _DEEPSEEK_CODER,
        hidden_size=7168,
        intermediate_size=19200,
        num_hidden_layers=62,
        num_attention_heads=56,
        num_key_value_heads=8,  # GQA, 7 query heads per key/value head
    ),
    # CPU presets. vocab 2048 fits a small trained tokenizer (ids up to vocab + 22 specials, padded to 64).
    "tiny": dict(  # ~1.6M parameters: tests and the demo
        vocab_size=2112,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        bos_token_id=2061,
        eos_token_id=2062,
    ),
    "small": dict(  # ~7M parameters: CPU training runs and speed benchmarks
        vocab_size=8256,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        bos_token_id=8205,
        eos_token_id=8206,
    ),
}


def padded_vocab_size(num_token_ids: int, multiple: int = 64) -> int:
    """Embedding rows for a tokenizer with `num_token_ids` ids: rounded up to `multiple`, as 32022 -> 32256."""
    return -(-num_token_ids // multiple) * multiple


def preset_config(name: str, **overrides) -> ModelConfig:
    """The named preset, with optional field overrides. Raises KeyError naming the known presets."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})
