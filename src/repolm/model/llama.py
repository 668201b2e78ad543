"""The DeepSeek-Coder decoder: a Llama-style transformer, in plain PyTorch.

Notable features (DeepSeek-Coder paper, section 3.3):
- pre-norm RMSNorm (eps 1e-6), no biases anywhere, untied input and output embeddings;
- rotary position embeddings with a base `rope_theta` and linear position interpolation
  (`rope_scaling_factor`, 4.0 for the 16K models), rotate-half layout as in Hugging Face Llama,
  so released checkpoints load without permuting q/k weights;
- grouped-query attention (`num_key_value_heads` < `num_attention_heads`) through
  `torch.nn.functional.scaled_dot_product_attention`, which runs fused flash-attention kernels on CUDA
  (FlashAttention-2, or cuDNN's on Hopper, whichever SDPA picks); packed documents kept apart by a dense boolean
  mask (SDPA), by `DocumentSpans` (SDPA document by document: no T x T tensor, any device) or by a flex_attention
  `BlockMask` (the compiled fused kernel; its backward needs a GPU);
- SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
Training passes `targets` to `forward`, which then returns the summed loss computed chunk by chunk
(`linear_cross_entropy`) instead of the logits.

Parameter names follow Hugging Face `LlamaForCausalLM` minus the `model.` prefix, except that the q/k/v
projections are one matrix (`qkv_proj`) and so are gate/up (`gate_up_proj`): fewer, larger matmuls, which
matters most when decoding one token at a time. `repolm.hf_folder` splits and joins them.
The model is built on any device, including `meta`; `init_weights()` then fills it (normal init with
`initializer_range`, ones for norms) and `init_rotary_embeddings()` recomputes the RoPE frequencies.

For generation the model reads and writes a `KVCache`: a preallocated buffer per layer that all rows of a
batch share, so rows are left-padded and carry their own positions and attention mask. This module imports
only torch and its own config.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from repolm.model.config import ModelConfig


@dataclass(frozen=True)
class DocumentSpans:
    """Packed documents kept apart without a mask: row b's documents start at `starts[b]` (0 first, increasing), and
    attention runs document by document with the kernel's own causal mask, so no T x T tensor exists and backward
    works on every device (the per-document form of SDPA's variable-length path). Python ints: no device sync."""

    starts: tuple[tuple[int, ...], ...]


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 as the reference implementation does."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one call instead of six; the same arithmetic
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        normalized = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normalized.to(x.dtype)  # the weight multiplies after the cast back, as in HF


def rotary_inverse_frequencies(config: ModelConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,) of RoPE, divided by the linear scaling factor."""
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    return 1.0 / (config.rope_theta**exponents) / config.rope_scaling_factor


def rotary_cos_sin(
    positions: torch.Tensor, inverse_frequencies: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables (B, 1, T, head_dim) for integer positions (B, T), computed in float32.

    The first half of the sin table is negated, so that rotating is x * cos + roll(x, D/2) * sin:
    roll(x, D/2) = (x2, x1), and (-x2, x1) * (sin, sin) = (x2, x1) * (-sin, sin) (rotate-half layout).
    """
    angles = positions[:, None, :, None].float() * inverse_frequencies  # (B, 1, T, D/2)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((-sin, sin), dim=-1).to(dtype)  # (B, 1, T, D) each


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of x (B, H, T, D) by the angles of `rotary_cos_sin` (B, 1, T, D)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class KVCache:
    """Preallocated keys and values of every layer for a batch of sequences being generated.

    All rows share one write position (`length`): prompts are left-padded to a common length, and padding
    is excluded through the attention mask. Tensors are (B, num_key_value_heads, max_length, head_dim).

    Three ways to write. By default a forward writes at `length` and attends to the first `length + T` slots,
    and `advance` moves `length` on. With `slot` set (a (T,) tensor of slot indices, moved on by the caller)
    a forward writes there and attends to all `max_length` slots, the caller's mask hiding the unwritten
    ones: every shape stays fixed from step to step, which is what `torch.compile` needs to compile a decode
    step once. With `row_slots` set (a (B,) tensor) a forward of one token per row writes row b's token at slot
    `row_slots[b]` and attends to all slots under the caller's mask: rows at different lengths decode together
    (continuous batching, `repolm.infer.batching`).

    `KVCache.over(keys, values)` makes a cache over existing tensors, e.g. views of some rows and slots of a
    larger cache: what a forward writes lands in the larger cache.
    """

    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        max_length: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (batch_size, config.num_key_value_heads, max_length, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.max_length = max_length
        self.length = 0  # number of positions written so far (shared by all rows)
        self.slot: torch.Tensor | None = None  # fixed-shape mode: where the next forward writes
        self.row_slots: torch.Tensor | None = None  # per-row mode: where each row's one new token goes

    @classmethod
    def over(cls, keys: list[torch.Tensor], values: list[torch.Tensor]) -> KVCache:
        """A cache whose tensors (B, Hkv, S, D) per layer are the given ones (views included), empty (`length` 0)."""
        cache = cls.__new__(cls)
        cache.keys, cache.values = list(keys), list(values)
        cache.max_length = keys[0].shape[2]
        cache.length, cache.slot, cache.row_slots = 0, None, None
        return cache

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values (B, Hkv, T, D) at the current position; return all keys/values so far."""
        if self.row_slots is not None:  # keys (B, Hkv, 1, D): row b's token goes to slot row_slots[b]
            rows = torch.arange(keys.shape[0], device=keys.device)
            self.keys[layer][rows, :, self.row_slots] = keys[:, :, 0]  # indexed (B, Hkv, D)
            self.values[layer][rows, :, self.row_slots] = values[:, :, 0]
            return self.keys[layer], self.values[layer]
        if self.slot is not None:
            self.keys[layer].index_copy_(2, self.slot, keys)
            self.values[layer].index_copy_(2, self.slot, values)
            return self.keys[layer], self.values[layer]
        start, end = self.length, self.length + keys.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache overflow: {end} positions > max_length {self.max_length}")
        self.keys[layer][:, :, start:end] = keys
        self.values[layer][:, :, start:end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, num_positions: int) -> None:
        """Mark `num_positions` more positions as written (called once per forward, after all layers)."""
        if self.slot is None and self.row_slots is None:  # else the caller keeps count (no ints in a compiled step)
            self.length += num_positions

    def reorder(self, row_indices: torch.Tensor) -> None:
        """Keep only the given rows (e.g. drop finished sequences from the batch)."""
        self.keys = [k.index_select(0, row_indices) for k in self.keys]
        self.values = [v.index_select(0, row_indices) for v in self.values]


class Attention(nn.Module):
    """Multi-head attention with grouped key/value heads and rotary embeddings."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        # q, k and v projections in one matrix (rows: q heads, then k heads, then v heads): one matmul, not three
        self.qkv_proj = nn.Linear(
            config.hidden_size, (self.num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=False
        )
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None,
        kv_cache: KVCache | None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        q, k, v = qkv.transpose(1, 2).split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=1)
        # q (B, H, T, D); k, v (B, Hkv, T, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.write(self.layer_index, k, v)  # (B, Hkv, S, D): S = cached + T (or all slots)
        past = k.shape[2] - T
        # causal masking: a fresh sequence uses the kernel's own causal mask; a single new token sees all
        # cached positions; otherwise the caller (or _causal_mask below) supplies an explicit mask
        is_causal = attention_mask is None and past == 0 and T > 1
        if attention_mask is None and past > 0 and T > 1:
            attention_mask = _causal_mask(T, past, x.device)
        gqa = self.num_kv_heads != self.num_heads
        if isinstance(attention_mask, BlockMask):  # document masking by tiles (training: no cache), no T x T mask
            y = _compiled_flex_attention()(q, k, v, block_mask=attention_mask, enable_gqa=gqa)  # (B, H, T, D)
        elif isinstance(attention_mask, DocumentSpans):  # document by document, causal inside each (no cache)
            rows = []
            for b, starts in enumerate(attention_mask.starts):
                ends = (*starts[1:], T)
                pieces = [
                    F.scaled_dot_product_attention(
                        q[b : b + 1, :, start:end], k[b : b + 1, :, start:end], v[b : b + 1, :, start:end],
                        is_causal=True, enable_gqa=gqa,
                    )  # (1, H, length, D)
                    for start, end in zip(starts, ends, strict=True)
                ]  # fmt: skip
                rows.append(torch.cat(pieces, dim=2))
            y = torch.cat(rows, dim=0)  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attention_mask, is_causal=is_causal, enable_gqa=gqa
            )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # re-assemble the heads side by side
        return self.o_proj(y)


@functools.cache
def _compiled_flex_attention():
    """flex_attention compiled once per process: the fused kernel (Triton on GPUs, C++ on CPUs) that skips empty
    tiles and never holds the T x T scores. (Run eagerly it computes every score densely, for reference only.)"""
    return torch.compile(flex_attention, dynamic=False)


def _causal_mask(new_positions: int, past_positions: int, device: torch.device) -> torch.Tensor:
    """Boolean (T, past + T) mask where new token i sees every cached position and new tokens <= i."""
    total = past_positions + new_positions
    rows = torch.arange(new_positions, device=device)[:, None] + past_positions
    return torch.arange(total, device=device)[None, :] <= rows


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), with gate and up in one matrix (rows: gate, then up)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = FeedForward(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None,
        kv_cache: KVCache | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attention_mask, kv_cache)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


# -----------------------------------------------------------------------------
# Output projection + cross-entropy, chunk by chunk, without the (tokens, vocab) logits
#
# `F.cross_entropy(lm_head(x))` materializes the logits of every token (8192 tokens x 32256 ids is 1 GiB in fp32), then
# a log-softmax of the same size, then in the backward pass their gradients. `linear_cross_entropy` instead walks the
# tokens in chunks: for each chunk it computes the logits, the loss, and right away the gradients with respect to the
# hidden states and the output weight (softmax minus one-hot, times the chunk's inputs), and drops the logits. The
# backward pass only scales the stored gradients. The arithmetic is that of `F.cross_entropy` over logits in fp32
# (logits are upcast per chunk when the matmul runs in bf16 under autocast); peak memory falls from the full logits to
# one chunk, and each chunk's softmax runs while its logits are still in cache.
#
# Targets equal to `IGNORE_INDEX` contribute nothing. The result is the sum of token losses (an fp32 scalar).

IGNORE_INDEX = -100
"""Target id that contributes no loss (padding, or masked prompt tokens in SFT)."""

CHUNK_VALUES = {"cpu": 1 << 22, "cuda": 1 << 26}
"""Logit values per chunk by device type; a chunk holds CHUNK_VALUES // vocab_size tokens. On CPUs 4M (16 MiB in
fp32) keeps a chunk's softmax in cache; GPUs want few, large matmuls: 64M (256 MiB, 2080 tokens of a 32256-id
vocabulary), still a fraction of the full logits."""


def _chunked_cross_entropy(
    hidden: torch.Tensor,  # (N, C)
    weight: torch.Tensor,  # (V, C)
    targets: torch.Tensor,  # (N,)
    chunk_tokens: int,
    need_hidden: bool,
    need_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(summed loss, d loss / d hidden or None, d loss / d weight in fp32 or None), chunk by chunk."""
    autocast = torch.is_autocast_enabled(hidden.device.type)
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if need_hidden else None
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
    for start in range(0, hidden.shape[0], chunk_tokens):
        inputs = hidden[start : start + chunk_tokens]  # (n, C)
        chunk_targets = targets[start : start + chunk_tokens]  # (n,)
        logits = (inputs @ weight.t()).float()  # (n, V); bf16 matmul under autocast, fp32 softmax
        valid = chunk_targets != IGNORE_INDEX  # (n,)
        safe_targets = torch.where(valid, chunk_targets, 0)[:, None]  # (n, 1)
        log_probabilities = torch.log_softmax(logits, dim=-1)  # (n, V); one fused pass
        del logits
        target_log_probabilities = log_probabilities.gather(1, safe_targets)  # (n, 1)
        loss -= (target_log_probabilities.squeeze(1) * valid).sum()
        if not (need_hidden or need_weight):
            continue
        # d(loss)/d(logits) = softmax - one_hot(target), zero for ignored targets; computed in place
        gradient = log_probabilities.exp_()
        gradient.scatter_add_(1, safe_targets, torch.full_like(target_log_probabilities, -1.0))
        gradient.mul_(valid[:, None])  # (n, V)
        if need_hidden:
            grad_hidden[start : start + chunk_tokens] = gradient.to(weight.dtype) @ weight  # (n, C)
        if need_weight:
            if autocast or inputs.dtype != torch.float32:
                grad_weight += (gradient.t().to(inputs.dtype) @ inputs).float()  # (V, C)
            else:
                grad_weight.addmm_(gradient.t(), inputs)
    return loss, grad_hidden, grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`; gradients computed in the forward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens: int) -> torch.Tensor:
        loss, grad_hidden, grad_weight = _chunked_cross_entropy(
            hidden, weight, targets, chunk_tokens, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int | None = None
) -> torch.Tensor:
    """Sum over tokens of cross_entropy(hidden @ weight.T, targets), IGNORE_INDEX skipped; an fp32 scalar.

    hidden (..., C), weight (V, C), targets (...); `chunk_tokens` defaults to CHUNK_VALUES[device type] // V.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if hidden.shape[0] != targets.shape[0]:
        raise ValueError(f"{hidden.shape[0]} hidden states but {targets.shape[0]} targets")
    values = CHUNK_VALUES.get(hidden.device.type, CHUNK_VALUES["cuda"])
    chunk_tokens = chunk_tokens or max(1, values // weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens)
    return _chunked_cross_entropy(hidden, weight, targets, chunk_tokens, False, False)[0]  # evaluation: loss only


class Transformer(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        inverse_frequencies = rotary_inverse_frequencies(config, device=self.embed_tokens.weight.device)
        self.register_buffer("rotary_inverse_frequencies", inverse_frequencies, persistent=False)

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Normal(0, initializer_range) for linear and embedding weights, ones for norms; fresh RoPE buffers."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.init_rotary_embeddings()

    def init_rotary_embeddings(self) -> None:
        """Recompute the RoPE frequencies from the config (after `to_empty`, loading, or a RoPE change)."""
        device = self.embed_tokens.weight.device
        self.rotary_inverse_frequencies = rotary_inverse_frequencies(self.config, device=device)

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        last_position_only: bool = False,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `input_ids` (B, T); or, given `targets`, the summed cross-entropy loss.

        Args:
            input_ids: token ids (B, T).
            positions: RoPE positions (B, T); default 0..T-1 after whatever the cache holds.
            attention_mask: boolean (B, 1, T, S) where True means "may attend", S = cached + T positions (or an
                additive float mask of 0 and -inf, as `scaled_dot_product_attention` takes it), or a flex_attention
                `BlockMask` over (T, T) or `DocumentSpans`, both without a cache (`repolm.train.data`);
                None means plain causal attention over the cache and the new tokens.
            kv_cache: keys/values of earlier positions, updated in place.
            last_position_only: return logits of the last position only (B, 1, V), as generation needs.
            targets: next-token ids (B, T) (IGNORE_INDEX where no loss): return the sum of the token losses (an
                fp32 scalar) computed chunk by chunk without materializing the logits (`linear_cross_entropy` above).
        """
        B, T = input_ids.shape
        if positions is None:
            past = kv_cache.length if kv_cache is not None else 0
            positions = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
        x = self.embed_tokens(input_ids)  # (B, T, C)
        cos, sin = rotary_cos_sin(positions, self.rotary_inverse_frequencies, x.dtype)  # (B, 1, T, D) each
        for layer in self.layers:
            x = layer(x, cos, sin, attention_mask, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_position_only:
            x = x[:, -1:, :]
        x = self.norm(x)
        if targets is not None:
            return linear_cross_entropy(x, self.lm_head.weight, targets)  # () summed over B*T tokens
        return self.lm_head(x)  # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(
    config: ModelConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int | None = 0,
    initialize: bool = True,
) -> Transformer:
    """Construct on the meta device (no memory touched), then materialize on `device` and initialize.

    With `initialize=False` the weights are left uninitialized (for loading a checkpoint over them).
    """
    with torch.device("meta"):
        model = Transformer(config)
    model = model.to(dtype).to_empty(device=device)  # the dtype is set on meta, so no fp32 copy is ever made
    if config.tie_word_embeddings:  # to_empty makes a new tensor per parameter; tie them again
        model.lm_head.weight = model.embed_tokens.weight
    if initialize:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
        model.init_weights(generator)
    model.init_rotary_embeddings()  # RoPE frequencies stay float32 whatever the weights' dtype
    return model


def flops_per_token(config: ModelConfig, sequence_length: int) -> float:
    """Forward+backward FLOPs per token of a training step: 6 per matmul weight + attention (PaLM appendix B).

    The matmul weights are the blocks' projections (q, k, v, o, gate, up, down) and the output head; the input
    embedding is a lookup (no FLOPs), and a tied head is counted once, as the matmul it is. Norm weights are
    elementwise and left out. Attention adds 2 matmuls (Q K^T, P V) of 2 * T * head_dim FLOPs per head and query
    token forward, x3 with the backward: 12 * layers * heads * head_dim * T (the full T x T, as PaLM counts it,
    although a causal kernel skips about half).
    """
    norm_weights = (2 * config.num_hidden_layers + 1) * config.hidden_size
    input_embedding = 0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size
    matmul_weights = config.num_parameters - norm_weights - input_embedding  # projections + the output head
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * sequence_length
    return 6 * matmul_weights + attention


__all__ = [
    "IGNORE_INDEX",
    "DocumentSpans",
    "KVCache",
    "Transformer",
    "build_model",
    "flops_per_token",
    "linear_cross_entropy",
]
