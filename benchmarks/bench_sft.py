"""The instruct recipe on CPU, measured: mine instructions from the Python standard library, pretrain a `tiny` base
model on the same library, tune it on the mined pairs, and measure how many greedy answers to held-out instructions
end with <|EOT|> before and after tuning (the README's figures). The held-out instructions are the SFT config's
`data.validation_share` (by content hash) whose conversation fits a training window.

    python benchmarks/bench_sft.py [--output out/sft-recipe] [--pretrain-steps 400] [--sft-steps 300]

Every step is a `repolm` command (data instructions, tokenizer train, data build, data tokenize, pretrain, export,
sft) run as a subprocess; a step whose output exists is skipped, so a killed run continues where it stopped (the
training steps resume from their checkpoints). The results go to `<output>/results.json`: the mining summary, the
SFT data report, the first and last answer-only losses and validation losses, and, for the base and the tuned model,
the answer-only loss and the end-of-turn share on the held-out instructions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

from repolm.data.instruction_records import held_out, read_instructions  # noqa: E402
from repolm.eval.instruct_format import end_of_turn_share  # noqa: E402
from repolm.tokenizer import ChatFormat, CodeTokenizer  # noqa: E402
from repolm.train.metrics import read_metrics  # noqa: E402

TOKENIZER_EXCLUDES = ("site-packages", "test", "tests", "idlelib", "*.pyc")


def run(*arguments: str, log: Path) -> None:
    """One `repolm` command, its output appended to `log`; exits on failure."""
    command = [sys.executable, "-m", "repolm", *arguments]
    print("$ repolm " + " ".join(arguments), flush=True)
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src")}
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=environment, check=False)
    print(f"  {time.perf_counter() - started:.0f} s, exit code {result.returncode}", flush=True)
    if result.returncode:
        sys.exit(f"failed: see {log}")


def losses(run_dir: Path) -> dict:
    """First and last training losses (mean of the first and last 3 logged) and the validation losses."""
    records = read_metrics(run_dir)
    train = [record for record in records if "loss" in record]
    validation = [record for record in records if "val_loss" in record]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    return {
        "first_logged_steps": [record["step"] for record in train[:3]],
        "first_loss": mean([record["loss"] for record in train[:3]]),
        "last_logged_steps": [record["step"] for record in train[-3:]],
        "last_loss": mean([record["loss"] for record in train[-3:]]),
        "val_loss": {record["step"]: record["val_loss"] for record in validation},
    }


def answer_loss(folder: Path, samples: list) -> float:
    """The model's mean loss over the answer tokens of the conversations (one at a time, no padding)."""
    import torch

    from repolm.hf_folder import load_pretrained

    model = load_pretrained(folder).eval()
    chat_format = ChatFormat(CodeTokenizer.load(folder))
    total, count = 0.0, 0
    with torch.no_grad():
        for sample in samples:
            rendered = chat_format.conversation(sample.messages)
            ids = torch.tensor([rendered.ids])
            mask = torch.tensor([rendered.loss_mask[1:]])
            targets = torch.where(mask, ids[:, 1:], torch.full_like(ids[:, 1:], -100))
            total += float(model(ids[:, :-1], targets=targets))
            count += int(mask.sum())
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="out/sft-recipe", help="work folder (default out/sft-recipe)")
    parser.add_argument("--benchmarks", default=None, help="benchmark folder for decontamination")
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--max-new-tokens", type=int, default=512, help="answer limit of the measurement (512)")
    parser.add_argument("--measure", type=int, default=0, help="held-out instructions measured (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training runs (1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    stdlib = sysconfig.get_paths()["stdlib"]
    benchmarks = ["--benchmarks", args.benchmarks] if args.benchmarks else []
    timings: dict[str, float] = {}

    def step(name: str, done: Path, *arguments: str) -> None:
        if done.exists():
            print(f"{name}: {done} exists, skipped")
            return
        started = time.perf_counter()
        run(*arguments, log=log)
        timings[name] = round(time.perf_counter() - started, 1)

    instructions = out / "instructions.jsonl"
    step("mine", instructions, "data", "instructions", "--input", stdlib, "--output", str(instructions), *benchmarks)
    excludes = [item for name in TOKENIZER_EXCLUDES for item in ("--exclude", name)]
    step("tokenizer", out / "tokenizer" / "tokenizer.json", "tokenizer", "train", "--input", stdlib, *excludes,
         "--vocab-size", "2048", "--output", str(out / "tokenizer"))  # fmt: skip
    step("data build", out / "data" / "stats.json", "data", "build", "--input", stdlib, "--output", str(out / "data"),
         "--tasks", "2", *benchmarks)  # fmt: skip
    step("tokenize", out / "tokens" / "mixture.json", "data", "tokenize", "--input", str(out / "data"),
         "--tokenizer", str(out / "tokenizer"), "--output", str(out / "tokens"))  # fmt: skip
    threads = f"--cpu_threads={args.threads}"
    pretrain = out / "pretrain"
    tiny = str(REPOSITORY / "configs/pretrain/tiny.yaml")
    step("pretrain", out / "base" / "config.json", "pretrain", "--config", tiny, f"--run_dir={pretrain}",
         f"--tokenizer={out / 'tokenizer'}", f"--data.folder={out / 'tokens'}",
         "--data.sequence_length=1024", "--batch.micro_batch_size=4", f"--max_steps={args.pretrain_steps}",
         "--eval.every_steps=0", "--logging.progress_bar=false", threads, "--resume")  # fmt: skip
    step("export base", out / "base" / "config.json", "export", str(pretrain), "--output", str(out / "base"))
    sft = out / "sft"
    step("sft", out / "instruct" / "config.json", "sft", "--config", str(REPOSITORY / "configs/sft/tiny.yaml"),
         f"--run_dir={sft}", f"--model.init_from={pretrain}", f"--data.folder={instructions}",
         f"--max_steps={args.sft_steps}", "--logging.progress_bar=false", threads, "--resume",
         "--output", str(out / "instruct"))  # fmt: skip

    # the held-out instructions (SFT's validation share) whose conversation fits a training window
    samples, _ = read_instructions(instructions)
    sft_data = json.loads((sft / "run_config.json").read_text())["data"]
    chat_format = ChatFormat(CodeTokenizer.load(out / "instruct"))
    held_all = [sample for sample in samples if held_out(sample.messages, sft_data["validation_share"])]
    window = sft_data["sequence_length"] + 1
    held = [sample for sample in held_all if len(chat_format.conversation(sample.messages).ids) <= window]
    if args.measure:
        held = held[: args.measure]
    results = {
        "mining": json.loads((out / "instructions.summary.json").read_text()),
        "sft_data": json.loads((sft / "sft_data.json").read_text()),
        "pretrain_losses": losses(pretrain),
        "sft_losses": losses(sft),
        "held_out_instructions": len(held_all),
        "held_out_within_window": len(held),
        "max_new_tokens": args.max_new_tokens,
        "timings_seconds": timings,
    }
    for name in ("base", "instruct"):
        started = time.perf_counter()
        result = end_of_turn_share(out / name, held, max_new_tokens=args.max_new_tokens)
        results[f"{name}_answer_loss"] = answer_loss(out / name, held)
        results[f"{name}_format"] = {
            "answers": result.answers,
            "ended_with_eot": result.ended_with_eot,
            "ended_with_eos": result.ended_with_eos,
            "hit_limit": result.hit_limit,
            "share": result.share,
            "mean_answer_tokens": result.mean_answer_tokens,
            "examples": result.examples,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{name}: {result.ended_with_eot}/{result.answers} answers end with <|EOT|> ({100 * result.share:.1f}%), "
            f"answer loss {results[name + '_answer_loss']:.4f}"
        )
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({key: value for key, value in results.items() if key not in ("mining", "sft_data")}, indent=1))


if __name__ == "__main__":
    main()
