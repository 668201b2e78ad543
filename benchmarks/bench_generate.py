"""Decode speed of repolm's engine against Hugging Face transformers, on the same weights, in one run.

Measures decode tokens/s (prefill excluded) with greedy decoding and a KV cache:
- `small` at batch 1 and batch 8;
- `deepseek-coder-1.3b` (random weights, fp32) at batch 1, with the memory-bandwidth bound: a decode step
  must read every weight once, so tokens/s <= bandwidth / bytes of weights read per step. Bandwidth is
  measured here with the same kind of operation (large matrix-vector products reading as many bytes as a step),
  between the timed runs; the best rate measured sets the bound.

`small` also runs `Engine(compile=True)` (decode steps through torch.compile; compile time excluded, as a
server pays it once) and, as its peer, `transformers` with a static cache, whose forward `generate` compiles.
Both systems share one set of weight tensors (no second copy).

On a GPU (`--device cuda`, bf16 by default there) the same measurements run on the device, `deepseek-coder-1.3b`
at batch 1 and 8, both with and without compile, and the bound uses the device's bandwidth (bf16 matrix-vector
products on the device).
Run: `python benchmarks/bench_generate.py` (options: --device, --dtype, --skip-1.3b, --no-compile, --new-tokens N,
--threads N, --json FILE).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import torch
from transformers import CompileConfig, LlamaConfig, LlamaForCausalLM

from repolm.hf_folder import config_to_hf, to_hf_state_dict
from repolm.infer.devices import resolve_device, resolve_dtype
from repolm.infer.engine import Engine
from repolm.infer.sampling import SamplingParams
from repolm.model import build_model, preset_config


def transformers_twin(model: torch.nn.Module) -> LlamaForCausalLM:
    """A transformers Llama that shares `model`'s weight tensors (SDPA attention)."""
    hf_config = LlamaConfig(**{k: v for k, v in config_to_hf(model.config).items() if k != "architectures"})
    hf_config._attn_implementation = "sdpa"
    with torch.device("meta"):
        twin = LlamaForCausalLM(hf_config)
    twin.load_state_dict(to_hf_state_dict(model), strict=True, assign=True)
    twin.model.rotary_emb.inv_freq = model.rotary_inverse_frequencies.clone()
    twin.model.rotary_emb.original_inv_freq = model.rotary_inverse_frequencies.clone()
    return twin.eval()


Runner = Callable[[int], float]
"""Generates n new tokens for the benchmark's prompts and returns the seconds it took."""


def decode_step_seconds(
    runners: dict[str, Runner], new_tokens: int, repeats: int, between: Callable[[], None] | None = None
) -> dict[str, float]:
    """Seconds per decode step of each runner: (best time for N tokens - best time for 1 token) / (N - 1) over
    `repeats` rounds (each best separately: a disturbed 1-token run must not make the difference look small).

    The runners take turns within each round, so all of them meet the same moments of a shared machine (its speed
    moves 2-3x within minutes); `between` runs at the start of each round (the 1.3B bound measures the bandwidth
    there)."""
    for run in runners.values():
        run(new_tokens), run(1)  # warm-up (and, with compile=True, compile both cache-length buckets)
    long_runs: dict[str, list[float]] = {name: [] for name in runners}
    short_runs: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        if between is not None:
            between()
        for name, run in runners.items():
            long_runs[name].append(run(new_tokens))
            short_runs[name].append(run(1))
    return {name: (min(long_runs[name]) - min(short_runs[name])) / (new_tokens - 1) for name in runners}


def ours_runner(engine: Engine, prompts: list[list[int]]) -> Runner:
    def run(n: int) -> float:
        start = time.perf_counter()
        engine.generate(prompts, SamplingParams(max_new_tokens=n))
        return time.perf_counter() - start

    return run


def transformers_runner(model: LlamaForCausalLM, prompts: list[list[int]], compiled: bool = False) -> Runner:
    """`generate` with its default dynamic cache; `compiled`: with a static cache, whose forward `generate` compiles
    (transformers does that by itself on GPUs; `CompileConfig._compile_all_devices` asks for it on CPUs too)."""
    ids = torch.tensor(prompts, device=model.device)
    options = {}
    if compiled:
        compile_config = CompileConfig()
        compile_config._compile_all_devices = True
        options = dict(cache_implementation="static", compile_config=compile_config)

    def run(n: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, **options
            )
        return time.perf_counter() - start

    return run


class BandwidthProbe:
    """Bytes/s of large matrix-vector products (each reads its matrix once) in `dtype` on `device`.

    A measurement times enough back-to-back products of one 1 GiB matrix to read `bytes_per_measurement` (the weights
    of one decode step), so the rate is one sustained over a step's worth of reading, as a decode step must sustain
    it. `measure()` runs between the timed decoding runs, so the bound comes from the same minutes as the decoding
    (a shared machine's bandwidth moves); `best` is the highest rate measured."""

    def __init__(self, device: torch.device, dtype: torch.dtype, bytes_per_measurement: int) -> None:
        self.device = device
        self.matrix = torch.randn((1 << 30) // dtype.itemsize // 4096, 4096, device=device, dtype=dtype)
        self.vector = torch.randn(4096, device=device, dtype=dtype)
        matrix_bytes = self.matrix.numel() * dtype.itemsize
        self.products = max(1, round(bytes_per_measurement / matrix_bytes))
        self.bytes_read = self.products * matrix_bytes
        self.rates: list[float] = []
        torch.mv(self.matrix, self.vector)

    def measure(self, repeats: int = 2) -> None:
        for _ in range(repeats):
            synchronize(self.device)
            start = time.perf_counter()
            for _ in range(self.products):
                torch.mv(self.matrix, self.vector)
            synchronize(self.device)
            self.rates.append(self.bytes_read / (time.perf_counter() - start))

    @property
    def best(self) -> float:
        return max(self.rates)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_preset(
    name: str,
    batches: list[int],
    new_tokens: int,
    repeats: int,
    prompt_length: int,
    compile: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> list[dict]:
    config = preset_config(name)
    dtype_name = str(dtype).removeprefix("torch.")
    print(f"\n{name}: {config.num_parameters / 1e6:.1f}M parameters, {dtype_name} on {device}", flush=True)
    model = build_model(config, device=device, dtype=dtype, seed=0)
    twin = transformers_twin(model)
    engine = Engine(model)
    compiled = Engine(model, compile=True) if compile else None
    # per step every weight matrix is read once, except the embedding table (one row per token)
    weight_bytes = (config.num_parameters - config.vocab_size * config.hidden_size) * dtype.itemsize
    probe = BandwidthProbe(device, dtype, weight_bytes) if "deepseek" in name else None
    between = probe.measure if probe is not None else None
    rows = []
    for batch in batches:
        generator = torch.Generator().manual_seed(batch)
        prompts = torch.randint(0, config.vocab_size, (batch, prompt_length), generator=generator).tolist()
        runners = {"repolm": ours_runner(engine, prompts), "transformers": transformers_runner(twin, prompts)}
        if compiled is not None:
            runners["repolm compiled"] = ours_runner(compiled, prompts)
            runners["transformers compiled"] = transformers_runner(twin, prompts, compiled=True)
        steps = decode_step_seconds(runners, new_tokens, repeats, between)
        ours, theirs = steps["repolm"], steps["transformers"]
        row = dict(
            model=name,
            device=str(device),
            dtype=dtype_name,
            batch=batch,
            repolm_tokens_per_s=batch / ours,
            transformers_tokens_per_s=batch / theirs,
            ratio=theirs / ours,
        )
        line = (
            f"  batch {batch}: repolm {row['repolm_tokens_per_s']:8.1f} tok/s   transformers "
            f"{row['transformers_tokens_per_s']:8.1f} tok/s   ratio {row['ratio']:.2f}x"
        )
        if compiled is not None:
            ours_compiled = steps["repolm compiled"]
            row.update(repolm_compiled_tokens_per_s=batch / ours_compiled, compiled_ratio=theirs / ours_compiled)
            line += f"   | repolm compiled {batch / ours_compiled:8.1f} tok/s   ratio {theirs / ours_compiled:.2f}x"
            theirs_compiled = steps["transformers compiled"]
            row.update(
                transformers_compiled_tokens_per_s=batch / theirs_compiled,
                compiled_vs_compiled_ratio=theirs_compiled / ours_compiled,
            )
            line += (
                f"\n           transformers compiled (static cache) {batch / theirs_compiled:8.1f} tok/s   "
                f"repolm compiled / it: {theirs_compiled / ours_compiled:.2f}x"
            )
        rows.append(row)
        print(line, flush=True)
    if probe is not None:
        bandwidth = probe.best
        bound = bandwidth / weight_bytes
        fraction = rows[0]["repolm_tokens_per_s"] / bound
        rows[0].update(bandwidth_gb_s=bandwidth / 1e9, bound_tokens_per_s=bound, fraction_of_bound=fraction)
        reached = f"repolm reaches {fraction:.0%} of it"
        if "repolm_compiled_tokens_per_s" in rows[0]:
            rows[0]["compiled_fraction_of_bound"] = rows[0]["repolm_compiled_tokens_per_s"] / bound
            reached += f" (compiled: {rows[0]['compiled_fraction_of_bound']:.0%})"
        print(
            f"  bandwidth ({dtype_name} matvecs reading {probe.bytes_read / 1e9:.1f} GB, best of {len(probe.rates)} "
            f"between the runs) {bandwidth / 1e9:.1f} GB/s, {weight_bytes / 1e9:.2f} GB of weights per step -> "
            f"bound {bound:.2f} tok/s at batch 1; {reached}",
            flush=True,
        )
    del model, twin, engine, compiled, probe
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per timed run for `small`")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-1.3b", dest="skip_large", action="store_true")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip Engine(compile=True)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "--device")
    dtype = resolve_dtype(args.dtype, device, "--dtype")
    on_gpu = device.type == "cuda"
    machine = torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine()
    print(
        f"machine: {machine}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"python {sys.version.split()[0]}"
    )
    # on GPUs, prompt + new tokens fit one compile bucket (64): one compiled graph per batch size
    results = bench_preset("small", [1, 8], args.new_tokens, 5, 16 if on_gpu else 32, args.compile, device, dtype)
    if not args.skip_large:
        # on CPUs a 1.3B decode step takes ~0.2 s: a few tokens at batch 1 suffice; on GPUs batch 8 and compile too
        batches, new_tokens = ([1, 8], args.new_tokens) if on_gpu else ([1], 8)
        results += bench_preset(
            "deepseek-coder-1.3b", batches, new_tokens, 3, 16, args.compile and on_gpu, device, dtype
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
