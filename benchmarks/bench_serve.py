"""Serving throughput and latency of `repolm serve` under concurrent load: continuous batching against the same load
served one request at a time and in static batches, in one run.

For each way of serving, a `repolm serve` process is started on loopback with a `small` model folder and
`--concurrency` clients (asyncio + httpx, one process) send `/v1/completions` requests back to back for `--duration`
seconds: a prompt cut from a Python standard-library file, a `max_tokens` of 1/8, 1/4, 1/2 or all of `--max-tokens`
(drawn per request: editors ask for short and long completions), temperature 0.8 with a seed per request. Printed per
way of serving: errors (must be 0), requests, aggregate generated tokens/s, and p50/p99 request latency; beside them
the latency of one request served alone (the same kinds of requests, nothing else running). The ways:
- continuous: `--max-batch-size B` (requests join and leave the running batch between decode steps);
- static: `--max-batch-size B --batching static` (a batch starts when the previous one has ended);
- one at a time: `--max-batch-size 1`.
Goal (issue 13): continuous >= 3x one-at-a-time in aggregate tokens/s.

Run: `python benchmarks/bench_serve.py` (options: --model DIR (default: a random-weight `small` model with a
tokenizer trained here), --duration S, --concurrency N, --max-batch-size B, --max-tokens N, --json FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from machine import machine_description


def stdlib_prompts(count: int, seed: int = 0) -> list[str]:
    """Prompts of 200-1200 characters cut at line starts from standard-library modules."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    rng = random.Random(seed)
    prompts = []
    while len(prompts) < count:
        text = rng.choice(files).read_text(encoding="utf-8", errors="replace")
        if len(text) < 2000:
            continue
        start = text.find("\n", rng.randrange(len(text) - 1500)) + 1
        prompts.append(text[start : start + rng.randrange(200, 1200)])
    return prompts


def make_small_model(folder: Path) -> Path:
    """A `small` model folder with random weights and a byte-level BPE tokenizer trained on stdlib files."""
    import torch

    from repolm.hf_folder import save_pretrained
    from repolm.model import build_model, padded_vocab_size, preset_config
    from repolm.tokenizer import train_tokenizer

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:80]
    tokenizer = train_tokenizer(files, vocab_size=8000)
    config = preset_config(
        "small",
        vocab_size=padded_vocab_size(len(tokenizer)),
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
    )
    model = build_model(config, device="cpu", dtype=torch.float32, seed=0)
    save_pretrained(model, folder)
    tokenizer.save(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A `repolm serve` subprocess on a free loopback port."""

    def __init__(self, model: Path, options: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "repolm", "serve", "--model", str(model), "--port", str(self.port)]
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([*command, *options], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"repolm serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"repolm serve did not answer /health within 300 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def request_tokens(index: int, max_tokens: int) -> int:
    """The max_tokens of request `index`: all, 1/2, 1/4 or 1/8 of `max_tokens`, drawn from the index."""
    return max(1, max_tokens >> random.Random(index).randrange(4))


async def one_request(client: httpx.AsyncClient, prompt: str, max_tokens: int, seed: int) -> tuple[float, int, str]:
    """(seconds, generated tokens, error or "") of one /v1/completions request."""
    body = {"model": "repolm", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed}
    started = time.perf_counter()
    try:
        response = await client.post("/v1/completions", json=body)
    except httpx.HTTPError as error:
        return time.perf_counter() - started, 0, f"{type(error).__name__}: {error}"
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        return elapsed, 0, f"HTTP {response.status_code}: {response.text[:200]}"
    return elapsed, int(response.json()["usage"]["completion_tokens"]), ""


async def load(url: str, prompts: list[str], concurrency: int, duration: float, max_tokens: int, label: str) -> dict:
    """`concurrency` clients sending requests back to back for `duration` seconds (requests in flight at the end
    finish and count); aggregate tokens/s over the time until the last one ends."""
    latencies: list[float] = []
    errors: list[str] = []
    tokens = 0
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + duration
        progress = tqdm(total=round(duration), desc=label, unit="s", leave=False, disable=not sys.stderr.isatty())

        async def client_loop() -> None:
            nonlocal tokens
            while time.perf_counter() < deadline:
                index = next(counter)
                prompt = prompts[index % len(prompts)]
                seconds, generated, error = await one_request(client, prompt, request_tokens(index, max_tokens), index)
                if error:
                    errors.append(error)
                else:
                    latencies.append(seconds)
                    tokens += generated

        async def ticker() -> None:
            while (now := time.perf_counter()) < deadline:
                progress.n = min(round(now - started), round(duration))
                progress.refresh()
                await asyncio.sleep(0.5)

        await asyncio.gather(ticker(), *(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        progress.close()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "generated_tokens": tokens,
        "seconds": elapsed,
        "tokens_per_second": tokens / elapsed,
        "latency_p50": statistics.median(latencies) if latencies else float("nan"),
        "latency_p99": statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else float("nan"),
    }


async def alone(url: str, prompts: list[str], max_tokens: int, repeats: int) -> dict:
    """Latency of single requests with nothing else running."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await one_request(client, prompts[0], max_tokens, 0)  # warm-up
        results = []
        for index in range(repeats):
            prompt = prompts[index % len(prompts)]
            results.append(await one_request(client, prompt, request_tokens(index, max_tokens), index))
    seconds = [s for s, _, error in results if not error]
    return {
        "latency_p50": statistics.median(seconds),
        "tokens_per_second": sum(t for _, t, _ in results) / sum(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a random-weight `small` model)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per way of serving")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--max-batch-size", type=int, default=32, help="rows of the continuous and static batches")
    parser.add_argument("--max-tokens", type=int, default=128, help="most new tokens of a request (default 128)")
    parser.add_argument("--alone-repeats", type=int, default=8, help="requests timed one by one, nothing else running")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or make_small_model(Path(scratch) / "small")
        prompts = stdlib_prompts(256)
        batch = str(args.max_batch_size)
        waiting = str(max(64, 2 * args.concurrency))
        ways = {
            "continuous": ["--max-batch-size", batch, "--max-waiting", waiting],
            "static": ["--max-batch-size", batch, "--max-waiting", waiting, "--batching", "static"],
            "one at a time": ["--max-batch-size", "1", "--max-waiting", waiting],
        }
        results: dict[str, dict] = {}
        for label, options in ways.items():
            server = Server(model, options)
            try:
                if label == "continuous":
                    results["alone"] = asyncio.run(alone(server.url, prompts, args.max_tokens, args.alone_repeats))
                results[label] = asyncio.run(
                    load(server.url, prompts, args.concurrency, args.duration, args.max_tokens, label)
                )
            finally:
                server.stop()

    machine = machine_description(("torch", "fastapi", "uvicorn", "httpx"))
    print(f"\nrepolm serve, {model if args.model else 'small (random weights)'}; {machine}")
    print(f"{args.concurrency} clients x {args.duration:.0f} s, max_tokens {args.max_tokens} (or 1/2, 1/4, 1/8)\n")
    print("| way of serving | errors | requests | tokens/s | p50 latency s | p99 latency s |")
    print("|---|---|---|---|---|---|")
    for label in ways:
        r = results[label]
        print(
            f"| {label} | {r['errors']} | {r['requests']} | {r['tokens_per_second']:.0f} | "
            f"{r['latency_p50']:.2f} | {r['latency_p99']:.2f} |"
        )
    single = results["alone"]
    print(f"| one request alone | | | {single['tokens_per_second']:.0f} | {single['latency_p50']:.2f} | |")
    ratio = results["continuous"]["tokens_per_second"] / results["one at a time"]["tokens_per_second"]
    static_ratio = results["continuous"]["tokens_per_second"] / results["static"]["tokens_per_second"]
    print(f"\ncontinuous / one at a time: {ratio:.2f}x (goal >= 3x); continuous / static: {static_ratio:.2f}x")
    for label in ways:
        if results[label]["errors"]:
            print(f"errors ({label}): {results[label]['first_errors']}")
    if args.json:
        report = {
            "machine": machine,
            "settings": vars(args) | {"model": str(args.model)},
            **results,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if any(results[label]["errors"] for label in ways):
        sys.exit(1)


if __name__ == "__main__":
    main()
