"""Batched autoregressive generation on token ids, with a KV cache.

The engine knows nothing about text: prompts are lists of ids, outputs are lists of ids. Text, stop strings
and prompt formats live in `repolm.infer.text` and `repolm.infer.prompts`.

How a batch runs:
1. Prompts of different lengths are left-padded to a common length. Each row gets its own RoPE positions
   (0 at its first real token) and a boolean key mask, so padding is never attended to and a row's
   logits equal those of the same prompt run alone.
2. One prefill forward fills a preallocated `KVCache` and gives the first token of every row.
3. Decode steps feed one token per row. A row finishes at a stop id or at `max_new_tokens`; finished rows
   are dropped from the batch (the cache rows with them), so the batch only does live work.
`stream` yields each step's new tokens as they come; `generate` collects them.

With `Engine(model, compile=True)` decode steps run through `torch.compile` instead: every step has the same
shapes (the cache is written at a slot index and attended over its full, bucketed length under a mask, and
finished rows stay in the batch), so a graph is compiled once per batch size and length bucket and then
replayed without Python overhead. The first request of a shape pays the compile time. On CUDA the compiled step
is also captured as a CUDA graph (`mode="reduce-overhead"`: one launch per step instead of one per kernel); the
KV cache then stays allocated between requests of the same shape, so the graph's addresses stay valid.
On CPUs the compiled step freezes the weights (`freeze_weights`, default on CPU): inductor treats them as constants,
packs each weight matrix once into the blocked layout of its own C++ GEMM kernels (the `CPP` backend of
`max_autotune`), and those kernels multiply a decode step's few rows 2-4x faster than the BLAS call on the unpacked
weights. The cache length is a dynamic dimension there, so one graph serves every length and a graph is compiled per
batch size. The cost: each compiled batch size holds its own packed copy of the weights (memory grows by the model's
weight size per batch size), compiling takes ~20 s per batch size, and later in-place changes to the model's weights
are not seen by the compiled steps (build a new Engine after changing them).

On CPUs the engine stores the model's linear weights input-major (`input_major_linear_weights`): the same shapes
and values, but a decode step's few-row products then stream the weights row by row, which the CPU BLAS does
1.3-1.8x faster than the usual output-major layout when the weights come from memory rather than cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from repolm.infer.sampling import SamplingParams, sample_next_token
from repolm.model.llama import KVCache, Transformer

logger = logging.getLogger(__name__)

FIXED_SHAPE_BUCKET = 64
"""With `compile=True`, cache lengths are rounded up to a multiple of this, so requests share compiled graphs."""

RECOMPILE_LIMIT = 64
"""With `compile=True`, at least this many compiled shapes per model before torch falls back to eager."""

StopCondition = Callable[[int, list[int]], bool]
"""Called as stop(row, generated_ids) after each new token; True ends that row (e.g. a stop string)."""


@dataclass
class StepOutput:
    """The tokens that one decoding step produced: `tokens[row]` for each row still running."""

    tokens: dict[int, int]
    """Row index in the original prompt list -> the new token id."""
    finished: list[int]
    """Rows that ended at this step."""


def check_prompt_ids(prompt: Sequence[int], vocab_size: int, name: str = "the prompt") -> None:
    """ValueError naming `name` for an empty prompt or a token id outside [0, vocab_size)."""
    if len(prompt) == 0:
        raise ValueError(f"{name} is empty; a prompt needs at least one token (e.g. BOS)")
    bad = [token for token in prompt if not 0 <= token < vocab_size]
    if bad:
        raise ValueError(f"{name} has token id {bad[0]} outside the vocabulary [0, {vocab_size})")


def input_major_linear_weights(model: torch.nn.Module) -> None:
    """Re-stores every `nn.Linear` weight (out, in) in place with its transpose contiguous: shapes, values, names and
    saved files stay the same; `F.linear` then hands the BLAS an (in, out) row-major matrix."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
                module.weight.data = module.weight.data.t().contiguous().t()


def frozen_weight_options(dtype: torch.dtype) -> dict:
    """Inductor options for decode steps with frozen weights on CPUs: matrix products through inductor's C++ GEMM
    template (weights packed at compile time). In float32 that template covers every product of the model, so it is
    the only backend (no timing of alternatives: compiles are shorter and the choice does not depend on a noisy
    measurement); other dtypes may fall back to ATen's. The autotuner's timings are not printed."""
    return {
        "max_autotune": True,
        "max_autotune_gemm_backends": "CPP" if dtype == torch.float32 else "CPP,ATEN",
        "autotune_num_choices_displayed": 0,
        "max_autotune_report_choices_stats": False,
    }


class Engine:
    """Generates continuations of token-id prompts with a `Transformer`."""

    def __init__(
        self,
        model: Transformer,
        compile: bool = False,
        cuda_graphs: bool | None = None,
        freeze_weights: bool | None = None,
    ) -> None:
        """`compile=True` runs decode steps through `torch.compile` with fixed shapes (see the module doc);
        `cuda_graphs` (default: on CUDA devices) also replays each compiled step as a CUDA graph; `freeze_weights`
        (default: on CPUs, not with CUDA graphs) compiles with the weights as constants and inductor's C++ GEMM
        kernels, one graph per batch size (module doc: faster, but a packed copy of the weights per batch size)."""
        self.model = model.eval()
        self.config = model.config
        self.device = model.embed_tokens.weight.device
        if self.device.type == "cpu":
            input_major_linear_weights(model)  # faster few-row products on CPUs (module doc)
        self.compile = compile
        self.cuda_graphs = compile and (self.device.type == "cuda" if cuda_graphs is None else cuda_graphs)
        if freeze_weights is None:
            freeze_weights = self.device.type == "cpu" and not self.cuda_graphs
        if freeze_weights and self.device.type != "cpu":
            raise ValueError(f"freeze_weights is for models on CPUs (inductor's C++ kernels), not {self.device}")
        if freeze_weights and self.cuda_graphs:
            raise ValueError("freeze_weights and cuda_graphs cannot be combined; choose one")
        self.freeze_weights = compile and freeze_weights
        # one compiled graph per (batch size, cache length bucket), or per batch size with frozen weights; the
        # prefill stays eager
        self._compiled_model = None
        if compile:
            # every (batch size, length bucket) is its own graph: an evaluation run meets more than the default 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            if self.cuda_graphs:
                self._compiled_model = torch.compile(model, dynamic=False, mode="reduce-overhead")
            elif self.freeze_weights:
                options = frozen_weight_options(model.embed_tokens.weight.dtype)
                self._compiled_model = torch.compile(model, dynamic=False, options=options)
            else:
                self._compiled_model = torch.compile(model, dynamic=False)
        self._static_cache: KVCache | None = None  # CUDA graphs: the last request's cache, reused by the same shape
        self._static_cache_busy = False  # a stream is using `_static_cache`

    @torch.inference_mode()
    def stream(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        stop: StopCondition | None = None,
        seeds: Sequence[int] | None = None,
    ) -> Iterator[StepOutput]:
        """Yield the new token of every live row, step by step, until all rows finish.

        `seeds` (one per prompt) gives each row its own sampling generator, so that a row's sample depends only on
        its prompt and seed, not on the batch it runs in; without it the batch draws from one generator seeded with
        `params.seed` (or torch's global one)."""
        if len(prompts) == 0 or params.max_new_tokens == 0:
            return
        for index, prompt in enumerate(prompts):
            check_prompt_ids(prompt, self.config.vocab_size, f"prompt {index}")
        device = self.device
        batch_size = len(prompts)
        prompt_length = max(len(p) for p in prompts)
        total_length = prompt_length + params.max_new_tokens
        if self.compile:  # round up so that similar requests share one compiled graph
            total_length = -(-total_length // FIXED_SHAPE_BUCKET) * FIXED_SHAPE_BUCKET
        generator = row_generators = None
        if seeds is not None:
            if len(seeds) != batch_size:
                raise ValueError(f"{len(seeds)} seeds for {batch_size} prompts; give one seed per prompt")
            row_generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
        elif params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)

        # left-pad; `key_valid` (B, total_length) marks the cache slots that hold real tokens
        input_ids = torch.zeros(batch_size, prompt_length, dtype=torch.long, device=device)
        key_valid = torch.zeros(batch_size, total_length, dtype=torch.bool, device=device)
        for row, prompt in enumerate(prompts):
            input_ids[row, prompt_length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            key_valid[row, prompt_length - len(prompt) : prompt_length] = True
        key_valid[:, prompt_length:] = True
        padded = any(len(p) != prompt_length for p in prompts)
        positions = (key_valid[:, :prompt_length].long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        attention_mask = None
        if padded:
            causal = torch.ones(prompt_length, prompt_length, dtype=torch.bool, device=device).tril()
            attention_mask = causal[None] & key_valid[:, None, :prompt_length]  # (B, T, T)
            # a padding query row would see nothing (NaN in softmax); let it see itself, its output is unused
            attention_mask |= torch.eye(prompt_length, dtype=torch.bool, device=device)[None]
            attention_mask = attention_mask[:, None]  # (B, 1, T, T)

        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros(batch_size, self.config.vocab_size, dtype=torch.bool, device=device)
            seen.scatter_(1, input_ids, key_valid[:, :prompt_length])

        cache = self._new_cache(batch_size, total_length)
        try:
            logits = self.model(input_ids, positions, attention_mask, cache, last_position_only=True)[:, -1]  # (B, V)
            next_positions = positions[:, -1] + 1  # (B,)

            rows = list(range(batch_size))  # original index of each row in the batch
            riding = set()  # fixed-shape mode: finished rows that stay in the batch, their tokens unused
            if self.compile:
                # fixed shapes: step t writes slot `cache.length` and attends over all slots under `step_mask`,
                # which holds the prompt's real tokens and gains each written slot (the same tensor every step)
                slot_index = torch.arange(total_length, device=device)
                step_mask = (key_valid & (slot_index < prompt_length))[:, None, None, :]  # (B, 1, 1, S_max)
                if self.freeze_weights:  # one graph for every cache length (module doc)
                    torch._dynamo.maybe_mark_dynamic(step_mask, 3)
                    for tensor in cache.keys + cache.values:
                        torch._dynamo.maybe_mark_dynamic(tensor, 2)
            generated: list[list[int]] = [[] for _ in range(batch_size)]
            stop_ids = torch.tensor(params.stop_token_ids, dtype=torch.long, device=device)
            for step in range(params.max_new_tokens):
                if row_generators is not None:  # the live rows' own generators, in batch order
                    generator = [row_generators[row] for row in rows]
                tokens = sample_next_token(logits, params, seen, generator)  # (B,)
                token_list = tokens.tolist()
                is_stop = torch.isin(tokens, stop_ids).tolist() if len(params.stop_token_ids) else [False] * len(rows)
                new_tokens, finished_local = {}, []
                for local, (row, token) in enumerate(zip(rows, token_list, strict=True)):
                    if row in riding:
                        continue
                    generated[row].append(token)
                    new_tokens[row] = token
                    if is_stop[local] or (stop is not None and stop(row, generated[row])):
                        finished_local.append(local)
                last_step = step == params.max_new_tokens - 1
                finished = list(new_tokens) if last_step else [rows[i] for i in finished_local]
                yield StepOutput(tokens=new_tokens, finished=finished)
                if last_step:
                    return
                if finished_local and self.compile:
                    riding.update(finished)
                    if len(riding) == len(rows):
                        return
                elif finished_local:
                    keep = [i for i in range(len(rows)) if i not in set(finished_local)]
                    if not keep:
                        return
                    keep_index = torch.tensor(keep, dtype=torch.long, device=device)
                    cache.reorder(keep_index)
                    key_valid = key_valid.index_select(0, keep_index)
                    next_positions = next_positions.index_select(0, keep_index)
                    tokens = tokens.index_select(0, keep_index)
                    if seen is not None:
                        seen = seen.index_select(0, keep_index)
                    rows = [rows[i] for i in keep]
                    padded = padded and not bool(key_valid[:, :prompt_length].all())
                if seen is not None:
                    seen.scatter_(1, tokens[:, None], True)
                # one decode step: each row feeds its new token at its own position
                if self.compile:
                    cache.slot = slot_index[cache.length : cache.length + 1]
                    step_mask[..., cache.length] = True
                    if self.cuda_graphs:  # the previous step's logits (graph output) are consumed: replay over them
                        torch.compiler.cudagraph_mark_step_begin()
                    logits = self.compiled_step(tokens[:, None], next_positions[:, None], step_mask, cache)[:, -1]
                    cache.length += 1
                else:
                    step_mask = None
                    if padded:
                        step_mask = key_valid[:, None, None, : cache.length + 1]  # (B, 1, 1, S)
                    logits = self.model(tokens[:, None], next_positions[:, None], step_mask, cache)[:, -1]  # (B, V)
                next_positions = next_positions + 1
        finally:
            self._release_cache(cache)

    def compiled_step(
        self, tokens: torch.Tensor, positions: torch.Tensor, step_mask: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """One fixed-shape decode step through the compiled model: logits (B, 1, V)."""
        if not self.freeze_weights:
            return self._compiled_model(tokens, positions, step_mask, cache)
        # dynamo reads `freezing` while it traces (a new batch size); set directly, config.patch costs ~40 us a step
        inductor_config = torch._inductor.config
        previous, inductor_config.freezing = inductor_config.freezing, True
        try:
            return self._compiled_model(tokens, positions, step_mask, cache)
        finally:
            inductor_config.freezing = previous

    def _new_cache(self, batch_size: int, total_length: int) -> KVCache:
        """A KV cache for a request; with CUDA graphs, the kept one when the shape is the same and no other stream
        is using it (its slots are overwritten by the prefill or hidden by the mask), its tensors marked as static
        graph inputs. A stream that starts while another holds the kept cache gets its own (the graph re-records)."""
        dtype = self.model.embed_tokens.weight.dtype
        if not self.cuda_graphs:
            return KVCache(self.config, batch_size, total_length, self.device, dtype)
        cache = self._static_cache
        same_shape = cache is not None and cache.keys[0].shape[0] == batch_size and cache.max_length == total_length
        if self._static_cache_busy or not same_shape:
            cache = KVCache(self.config, batch_size, total_length, self.device, dtype)
            for tensor in cache.keys + cache.values:
                torch._dynamo.mark_static_address(tensor, guard=False)
            if not self._static_cache_busy:
                self._static_cache = cache  # the old one is freed
        if cache is self._static_cache:
            self._static_cache_busy = True
        cache.length, cache.slot = 0, None
        return cache

    def _release_cache(self, cache: KVCache) -> None:
        """Called when a stream ends (finished, closed or collected): the kept cache is free again."""
        if cache is self._static_cache:
            self._static_cache_busy = False

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        stop: StopCondition | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[int]]:
        """The generated ids of every prompt (without the prompt; a stop id, if hit, is the last id); `seeds` as in
        `stream`."""
        outputs: list[list[int]] = [[] for _ in prompts]
        for step in self.stream(prompts, params, stop, seeds):
            for row, token in step.tokens.items():
                outputs[row].append(token)
        return outputs
