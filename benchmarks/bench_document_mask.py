"""Memory and time of document masking at long windows: the dense (B, 1, T, T) mask with SDPA against the documents'
spans (`repolm.train.data.document_spans`: SDPA document by document) and flex_attention's block mask
(`repolm.train.data.document_block_mask`, the compiled kernel; its backward needs a GPU, so on a CPU it is left out),
with plain causal SDPA (no document mask) as the floor.

One training step (forward with the summed loss, backward) of the `small` preset on one window of `--length` tokens
(default 4096 and 16384) packed with documents of random lengths (64 to 4096 tokens), fp32 on a CPU (bf16 autocast on
CUDA). Each variant runs in its own process: a warm-up step (compilation for flex), then the peak memory of one more
step over what the process held before it (CPU: the resident set's high-water mark, reset with
/proc/self/clear_refs; CUDA: `torch.cuda.max_memory_allocated`), and the median time of `--steps` steps. The mask is
built inside the measured step, as the training loop builds it, so its memory counts.
Run: `python benchmarks/bench_document_mask.py` (options: --length N (repeatable), --steps N, --json FILE).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("causal", "dense", "spans", "flex")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(variant: str, length: int, steps: int) -> dict:
    """One variant in this process: {"peak_bytes", "step_seconds"}."""
    import torch

    from repolm.model import build_model, preset_config
    from repolm.train.data import document_attention_mask, document_block_mask, document_spans

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    config = preset_config("small", max_position_embeddings=max(length, 2048))
    model = build_model(config, device=device, seed=0).train()
    input_ids = torch.randint(0, config.vocab_size, (1, length), generator=generator).to(device)
    targets = torch.randint(0, config.vocab_size, (1, length), generator=generator).to(device)
    pieces, total = [], 0
    while total < length:
        pieces.append(int(torch.randint(64, 4097, (1,), generator=generator)))
        total += pieces[-1]
    positions = torch.cat([torch.arange(piece) for piece in pieces])[:length].view(1, length).to(device)
    build_mask = {
        "causal": lambda: None,
        "dense": lambda: document_attention_mask(positions),
        "spans": lambda: document_spans(positions),
        "flex": lambda: document_block_mask(positions),
    }[variant]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )

    def step() -> None:
        with autocast:
            loss = model(input_ids, positions=positions, attention_mask=build_mask(), targets=targets)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernels chosen, flex_attention compiled, gradient buffers allocated once
    if device.type == "cuda":
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        resident = _rss_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    step()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_kib("VmHWM") * 1024) - resident
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return {"peak_bytes": peak, "step_seconds": statistics.median(seconds), "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, action="append", help="window length (default: 4096 and 16384)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.steps)))
        return
    from machine import machine_description

    print(machine_description(("torch",)))
    print("small preset, one window, one training step (forward + loss + backward), documents of 64-4096 tokens")
    print(f"{'tokens':>7} {'mask':>7} {'step memory':>12} {'step time':>10}")
    results = []
    import torch

    variants = VARIANTS if torch.cuda.is_available() else VARIANTS[:-1]
    if not torch.cuda.is_available():
        print("(flex left out: PyTorch has no flex_attention backward on CPUs)")
    for length in args.length or [4096, 16384]:
        for variant in variants:
            command = [sys.executable, __file__, "--one", variant, str(length), "--steps", str(args.steps)]
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode != 0:
                print(f"{length:>7} {variant:>7} failed: {finished.stderr.strip().splitlines()[-1:]}")
                continue
            figures = json.loads(finished.stdout.strip().splitlines()[-1])
            results.append({"tokens": length, "mask": variant, **figures})
            print(
                f"{length:>7} {variant:>7} {figures['peak_bytes'] / 2**20:>9.0f} MiB {figures['step_seconds']:>9.2f}s"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
