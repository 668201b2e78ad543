"""Tensor names: repolm state dicts <-> Hugging Face `LlamaForCausalLM` state dicts.

HF tensor names are repolm names with a `model.` prefix (`lm_head.weight` is the same in both), except that
repolm's fused `qkv_proj` and `gate_up_proj` are stored as HF's `q_proj`/`k_proj`/`v_proj` and
`gate_proj`/`up_proj` (`split_fused`, `join_fused`); both use the rotate-half RoPE layout, so there is no
q/k permutation.
"""

from __future__ import annotations

import torch

from repolm.model import ModelConfig, Transformer

_HF_PREFIX = "model."

# repolm keeps q/k/v and gate/up as one matrix each; HF folders store the parts (rows in this order)
_FUSED_PARTS = {
    "self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}


def _part_rows(config: ModelConfig, fused_suffix: str) -> list[int]:
    if fused_suffix.startswith("self_attn."):
        q_rows = config.num_attention_heads * config.head_dim
        kv_rows = config.num_key_value_heads * config.head_dim
        return [q_rows, kv_rows, kv_rows]
    return [config.intermediate_size, config.intermediate_size]


def split_fused(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """repolm state dict -> the same with fused matrices split into HF's parts (views, no copies)."""
    result: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        fused = next((f for f in _FUSED_PARTS if name.endswith("." + f)), None)
        if fused is None:
            result[name] = tensor
            continue
        prefix = name[: -len(fused)]  # "layers.3."
        for part, rows in zip(_FUSED_PARTS[fused], tensor.split(_part_rows(config, fused), dim=0), strict=True):
            result[prefix + part] = rows
    return result


def join_fused(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `split_fused`: concatenate HF's parts into repolm's fused matrices (empties `state`)."""
    result: dict[str, torch.Tensor] = {}
    for name in list(state):
        if name not in state:  # already joined as a part of an earlier name
            continue
        fused = next((f for f, parts in _FUSED_PARTS.items() if any(name.endswith("." + p) for p in parts)), None)
        if fused is None:
            result[name] = state.pop(name)
            continue
        part = next(p for p in _FUSED_PARTS[fused] if name.endswith("." + p))
        prefix = name[: -len(part)]
        result[prefix + fused] = torch.cat([state.pop(prefix + p) for p in _FUSED_PARTS[fused]])
    return result


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's tensors under Hugging Face `LlamaForCausalLM` names (views of the model's tensors)."""
    return {_hf_name(name): t for name, t in split_fused(model.state_dict(), model.config).items()}


def _repolm_name(hf_name: str) -> str:
    return hf_name.removeprefix(_HF_PREFIX)


def _hf_name(name: str) -> str:
    return name if name.startswith("lm_head.") else _HF_PREFIX + name
