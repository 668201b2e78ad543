"""Choosing the next token from logits: greedy, temperature, top-k, top-p and repetition penalty.

The order and the rules follow Hugging Face `generate` (repetition penalty, then temperature, then top-k, then
top-p), so that the same settings mean the same thing in both. Everything works on a batch of rows at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    """How to decode. temperature 0 means greedy (argmax), which is what the paper's benchmarks use."""

    max_new_tokens: int = 256
    """Generate at most this many tokens per sequence (the stop token included)."""
    temperature: float = 0.0
    """Softmax temperature; 0 = greedy."""
    top_k: int = 0
    """Keep only the k most likely tokens before sampling; 0 = off."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p; 1.0 = off."""
    repetition_penalty: float = 1.0
    """CTRL-style penalty on tokens already in the prompt or the output (> 1 discourages repeats); 1.0 = off."""
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    """A sequence ends when it generates one of these ids (kept as its last token)."""
    seed: int | None = None
    """Seed of the sampling generator; None draws from torch's global generator."""

    def __post_init__(self) -> None:
        self.stop_token_ids = tuple(int(i) for i in self.stop_token_ids)
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive logits (multiply negative ones) of tokens marked in `seen` (B, V) by `penalty`."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set all but the k largest logits of each row (B, V) to -inf."""
    k = min(k, logits.shape[-1])
    threshold = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < threshold, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose total probability is >= p (at least one)."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # drop a token when the tokens before it already reach p; the first token always stays
    drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= p
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(-1, sorted_indices, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: torch.Tensor,
    params: SamplingParams,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V).

    `generator`: one generator for the batch (None: torch's global one), or one per row (row i then draws from
    `generator[i]` alone, so its token does not depend on the other rows). Each row draws one uniform number u (from
    its own generator, or the batch's in row order) and takes the first token whose cumulative probability exceeds u
    times the total (inverse transform sampling, the distribution `torch.multinomial` samples); the search runs for
    all rows at once, so a batch costs one small draw per row, and one row sampled with a generator seeded s draws
    the same token whichever of the two ways the generator is given."""
    logits = logits.float()
    if params.repetition_penalty != 1.0 and seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    # shifted by the row's maximum first (softmax does not change): a tiny temperature then sends the other logits to
    # -inf instead of overflowing the largest to inf (inf - inf is NaN), and one below float32's range is not 0 (0 / 0
    # is NaN): it tends to greedy, as it should
    temperature = max(params.temperature, torch.finfo(torch.float32).tiny)
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if params.top_k > 0:
        logits = filter_top_k(logits, params.top_k)
    if params.top_p < 1.0:
        logits = filter_top_p(logits, params.top_p)
    probabilities = logits.softmax(dim=-1)
    rows, device = probabilities.shape[0], probabilities.device
    if isinstance(generator, list | tuple):
        if len(generator) != rows:
            raise ValueError(f"{len(generator)} generators for {rows} rows; give one per row")
        uniforms = torch.cat([torch.rand(1, generator=g, device=device, dtype=torch.float64) for g in generator])
    else:
        uniforms = torch.rand(rows, generator=generator, device=device, dtype=torch.float64)
    cumulative = probabilities.double().cumsum(dim=-1)  # (B, V); float64: no drift over a 32K vocabulary
    targets = uniforms * cumulative[:, -1]  # (B,) in [0, total): a token of probability 0 is never reached
    tokens = torch.searchsorted(cumulative, targets[:, None], right=True).squeeze(-1)  # (B,)
    return tokens.clamp(max=probabilities.shape[-1] - 1)
