"""Training speed of repolm against Hugging Face transformers, on the same config and weights, in one run.

One full training step is timed: forward, cross-entropy over every position (each system's own loss path: repolm's
chunked output projection + loss, `repolm.model.llama.linear_cross_entropy`, as its training loop runs it;
transformers' fp32-upcast logits then `F.cross_entropy`, as `LlamaForCausalLM`'s loss does), backward, AdamW step (the
optimizer of `repolm.train.optim.build_optimizer` for both models: the same parameter groups and kernel).
Both models are the `small` preset (or `--preset`), batch 8 x 256 tokens, fp32 on CPU or bf16 autocast on
CUDA, SDPA attention; `transformers.LlamaForCausalLM` is built from `repolm.hf_folder.config_to_hf` with a
copy of repolm's initial weights. Warm-up steps are excluded; the two models alternate in rounds (so a
change of machine load hits both) and the median step time is reported, with tokens/s and MFU against the
matmul peak measured in the same run, before and after the timings (the larger of the two, from
`repolm.train.metrics.measure_peak_flops`: fp32 on CPU, bf16 on CUDA), and MFU* against the rate of the step's own
matmul shapes run alone (`step_matmul_rate`: every linear layer's forward and two backward products and attention's
products at this batch and window; on a CPU a small model's shapes run well below the 1024^3 peak, so MFU* says how
much of the step is overhead besides its matmuls). FLOPs per token are `repolm.model.flops_per_token`: 6 per matmul
weight (projections and output head) + attention; the matmul shapes add up to exactly that.

`--profile` adds a torch.profiler breakdown of repolm's step (phases and top operators); `--compile` adds
repolm with `torch.compile` on each block (`repolm.train.parallelize`, compile time excluded).
Run: `python benchmarks/bench_train.py` (options: --preset, --batch, --sequence-length, --rounds,
--steps-per-round, --warmup, --threads, --device, --profile, --compile, --json FILE).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from machine import machine_description
from repolm.hf_folder import config_to_hf, to_hf_state_dict
from repolm.model import Transformer, build_model, flops_per_token, preset_config
from repolm.train.metrics import measure_peak_flops
from repolm.train.optim import OptimizerConfig, build_optimizer
from repolm.train.parallelize import DistributedInfo, ParallelConfig, parallelize


def transformers_copy(model: Transformer) -> LlamaForCausalLM:
    """A transformers Llama (SDPA attention) with a copy of `model`'s weights (trained separately)."""
    hf_config = LlamaConfig(**{k: v for k, v in config_to_hf(model.config).items() if k != "architectures"})
    hf_config._attn_implementation = "sdpa"
    hf_config.use_cache = False  # a training step keeps no KV cache
    device = model.embed_tokens.weight.device
    with torch.device("meta"):
        twin = LlamaForCausalLM(hf_config)
    state = {name: tensor.detach().clone() for name, tensor in to_hf_state_dict(model).items()}
    twin.load_state_dict(state, strict=True, assign=True)
    twin.model.rotary_emb.inv_freq = model.rotary_inverse_frequencies.clone().to(device)
    twin.model.rotary_emb.original_inv_freq = model.rotary_inverse_frequencies.clone().to(device)
    return twin.train()


def make_step(
    model: torch.nn.Module,
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast_dtype: torch.dtype | None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A training step over (input_ids, targets) (B, T) each, with `loss_sum(input_ids, targets)` the summed
    token losses; returns the mean loss (not synchronized)."""
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-4))
    device_type = next(model.parameters()).device.type

    def step(input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        autocast = (
            torch.autocast(device_type=device_type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.profiler.record_function("forward"), autocast:
            loss = loss_sum(input_ids, targets) / targets.numel()
        with torch.profiler.record_function("backward"):
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    steps: dict[str, Callable], batch: tuple[torch.Tensor, torch.Tensor], rounds: int, per_round: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of each timed step per system; systems alternate in rounds of `per_round` steps."""
    device = batch[0].device
    for step in steps.values():
        for _ in range(warmup):
            step(*batch)
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step(*batch)
                synchronize(device)
                times[name].append(time.perf_counter() - start)
    return times


def profile_step(step: Callable, batch: tuple[torch.Tensor, torch.Tensor], steps: int = 3) -> None:
    """Print where one repolm step spends its time: the four phases, then the top operators."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if batch[0].device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step(*batch)
        synchronize(batch[0].device)
    averages = profiler.key_averages()
    phases = {event.key: event.cpu_time_total / steps / 1e3 for event in averages if event.key in PHASES}
    total = sum(phases.values())
    print("\nrepolm step by phase (ms per step, CPU time; share):")
    for phase in PHASES:
        print(f"  {phase:14s} {phases.get(phase, 0.0):8.1f}  {phases.get(phase, 0.0) / total:6.1%}")
    sort_key = "self_cuda_time_total" if batch[0].device.type == "cuda" else "self_cpu_time_total"
    print("\ntop operators of repolm's step (totals over", steps, "steps):")
    print(averages.table(sort_by=sort_key, row_limit=18, max_name_column_width=42))


PHASES = ("forward", "backward", "optimizer")


def step_matmul_shapes(config, batch: int, sequence_length: int) -> list[tuple[int, tuple[int, int, int], int]]:
    """The matmuls of one training step as (count, (m, k, n), batch of the bmm): every linear layer forward
    (tokens x in @ in x out) and its two backward products (input and weight gradients), and attention's Q K^T
    and P V per head, forward and backward (two products each), over the full T x T as `flops_per_token` counts."""
    tokens = batch * sequence_length
    hidden, query = config.hidden_size, config.num_attention_heads * config.head_dim
    key_value = config.num_key_value_heads * config.head_dim
    linears = [(hidden, query), (hidden, key_value), (hidden, key_value), (query, hidden)]
    linears += [(hidden, config.intermediate_size)] * 2 + [(config.intermediate_size, hidden)]
    layers = config.num_hidden_layers
    shapes: list[tuple[int, tuple[int, int, int], int]] = []
    for count, (inputs, outputs) in [(layers, shape) for shape in linears] + [(1, (hidden, config.vocab_size))]:
        shapes.append((count, (tokens, inputs, outputs), 1))  # forward: Y = X W
        shapes.append((count, (tokens, outputs, inputs), 1))  # input gradient: dX = dY W^T
        shapes.append((count, (inputs, tokens, outputs), 1))  # weight gradient: dW = X^T dY
    heads, head_dim, length = batch * config.num_attention_heads, config.head_dim, sequence_length
    for shape in [(length, head_dim, length), (length, length, head_dim)]:  # Q K^T, P V
        shapes.append((3 * layers, shape, heads))  # forward + its two backward products (same FLOPs)
    return shapes


def step_matmul_rate(config, batch: int, sequence_length: int, device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of the step's own matmul shapes run alone (each shape timed, best of repeats, weighted by its
    count): what a step made only of its matmuls would reach on this machine, the roof for this model size."""
    shapes = step_matmul_shapes(config, batch, sequence_length)
    total_flops = sum(count * 2 * m * k * n * bmm for count, (m, k, n), bmm in shapes)
    assert abs(total_flops - flops_per_token(config, sequence_length) * batch * sequence_length) < 1e-6 * total_flops
    total_seconds = 0.0
    seconds_of: dict[tuple, float] = {}
    for count, (m, k, n), bmm in shapes:
        key = (m, k, n, bmm)
        if key not in seconds_of:
            left = torch.randn(bmm, m, k, device=device, dtype=dtype)
            right = torch.randn(bmm, k, n, device=device, dtype=dtype)
            torch.matmul(left, right)  # warm-up
            best = float("inf")
            deadline = time.perf_counter() + 0.3
            while time.perf_counter() < deadline or best == float("inf"):
                synchronize(device)
                start = time.perf_counter()
                torch.matmul(left, right)
                synchronize(device)
                best = min(best, time.perf_counter() - start)
            seconds_of[key] = best
        total_seconds += count * seconds_of[key]
    return total_flops / total_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per system before timing")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--profile", action="store_true", help="profile repolm's step with torch.profiler")
    parser.add_argument("--compile", action="store_true", help="also time repolm with torch.compile per block")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    config = preset_config(args.preset)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else machine_description().split(";")[0]
    print(
        f"machine: {machine}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"python {sys.version.split()[0]}"
    )
    precision = "bf16 autocast" if autocast_dtype is not None else "fp32"
    print(
        f"{args.preset}: {config.num_parameters / 1e6:.1f}M parameters, batch {args.batch} x {args.sequence_length} "
        f"tokens, {precision}, SDPA attention, AdamW ({'fused' if device.type in ('cpu', 'cuda') else 'default'})"
    )

    peak_before = measure_peak_flops(device, seconds=2.0)

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (args.batch, args.sequence_length + 1), generator=generator)
    batch = (tokens[:, :-1].to(device), tokens[:, 1:].to(device))

    ours = build_model(config, device=device, seed=0).train()
    theirs = transformers_copy(ours)

    def transformers_loss_sum(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # what LlamaForCausalLM's own loss does: logits upcast to fp32, then cross-entropy
        logits = theirs(input_ids=ids, use_cache=False).logits  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="sum")

    steps = {
        "repolm": make_step(ours, lambda ids, targets: ours(ids, targets=targets), autocast_dtype),
        "transformers": make_step(theirs, transformers_loss_sum, autocast_dtype),
    }
    if args.compile:
        single = DistributedInfo(rank=0, world_size=1, local_rank=0, device=device, is_main=True)
        compiled = parallelize(build_model(config, device=device, seed=0).train(), ParallelConfig(compile=True), single)
        steps["repolm compiled"] = make_step(
            compiled, lambda ids, targets: compiled(ids, targets=targets), autocast_dtype
        )
        start = time.perf_counter()
        steps["repolm compiled"](*batch)
        synchronize(device)
        print(f"torch.compile of repolm's blocks: {time.perf_counter() - start:.1f} s (excluded)")

    times = time_steps(steps, batch, args.rounds, args.steps_per_round, args.warmup)
    peak_memory = {}
    if device.type == "cuda":  # GPU memory a step adds on top of what stays (weights, optimizer states, inputs)
        for name, step in steps.items():
            resident = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step(*batch)
            synchronize(device)
            peak_memory[name] = torch.cuda.max_memory_allocated(device) - resident
    # the peak is measured before and after the timings: the machine can do the larger; if they differ much,
    # other work shared the machine during the run and every figure below is suspect
    peak_after = measure_peak_flops(device, seconds=2.0)
    peak = max(peak_before, peak_after)
    matmul_dtype = autocast_dtype or torch.float32
    matmul_rate = step_matmul_rate(config, args.batch, args.sequence_length, device, matmul_dtype)
    print(
        f"measured matmul peak ({'bf16' if device.type == 'cuda' else 'fp32'}): {peak / 1e9:.1f} GFLOP/s "
        f"(before the timings {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f})"
    )
    if min(peak_before, peak_after) < 0.8 * peak:
        print("  warning: the peak changed by more than 20% during the run (a busy machine?); rerun when idle")
    print(
        f"the step's own matmul shapes run alone: {matmul_rate / 1e9:.1f} GFLOP/s ({matmul_rate / peak:.0%} of the "
        "peak; MFU* below is against this rate)"
    )
    tokens_per_step = args.batch * args.sequence_length
    model_flops = flops_per_token(config, args.sequence_length)
    results: dict[str, dict] = {}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        tokens_per_second = tokens_per_step / median
        results[name] = dict(
            median_step_s=median,
            min_step_s=min(seconds),
            tokens_per_s=tokens_per_second,
            mfu=model_flops * tokens_per_second / peak,
            mfu_step_matmuls=model_flops * tokens_per_second / matmul_rate,
        )
        memory = ""
        if name in peak_memory:
            results[name]["step_memory_bytes"] = peak_memory[name]
            memory = f"   step memory {peak_memory[name] / 2**30:.1f} GiB"
        print(
            f"  {name:16s} {tokens_per_second:9.0f} tok/s   step {median * 1e3:7.1f} ms (median of {len(seconds)}, "
            f"min {min(seconds) * 1e3:.1f})   MFU {results[name]['mfu']:6.1%}   MFU* "
            f"{results[name]['mfu_step_matmuls']:6.1%}{memory}"
        )
    ratio = results["repolm"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
    print(f"  ratio repolm / transformers: {ratio:.2f}x")
    if "repolm compiled" in results:
        compiled_ratio = results["repolm compiled"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
        print(f"  ratio repolm compiled / transformers: {compiled_ratio:.2f}x")
    if args.profile:
        profile_step(steps["repolm"], batch)
    if args.json:
        summary = dict(
            machine=machine,
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            preset=args.preset,
            batch=args.batch,
            sequence_length=args.sequence_length,
            precision=precision,
            peak_flops=peak,
            peak_flops_before=peak_before,
            peak_flops_after=peak_after,
            step_matmul_flops=matmul_rate,
            flops_per_token=model_flops,
            ratio=ratio,
            systems=results,
        )
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
