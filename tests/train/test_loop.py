"""Tests of repolm.train.loop: pinned losses, bit-exact resume (in process and after `kill -9`), loss masks, init_from.

A scaled-down `tiny` model (2 layers, width 64) trains on stdlib files tokenized with the session's small tokenizer
(windows of 32 tokens, micro-batches of 4, 2 micro-batches per step). The reference run is done once per module;
the resumed runs are compared with it bit for bit (the same machine: CPU, deterministic algorithms, the same thread
count).

The pinned figures hold on every x86-64 machine of the project, but not bit for bit. torch dispatches its own
vectorized kernels by CPU (AVX-512 on Zen 4, AVX2 on Zen 3): `log_softmax` (the loss, `linear_cross_entropy`),
`softmax` and the CPU flash-attention kernel of `scaled_dot_product_attention` round differently in the last bit
(measured op by op: matmul (MKL), sums, exp, RMSNorm, SiLU and fused AdamW are bit-identical; at these sizes no op
splits over threads, so 1 and 2 threads give identical runs). Training amplifies such differences: at the earlier
lr 3e-3 (gradient norms spiking to 4-8 before clipping) the runs parted from step ~30-40 on, and the last step's loss
moved by 0.04 and the validation loss by 0.09 between AVX-512 and AVX2. At lr 1e-3 the run is calm: the figures of
`PINNED_FIGURES` move by less than 4e-6 across AVX-512, AVX2 and torch's scalar kernels, with 1 or 2 threads; their
tolerances come from that spread, and `BROKEN_RUNS` shows that they still catch deliberately broken runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from repolm.errors import RepolmError
from repolm.model import build_model
from repolm.train import loop
from repolm.train.checkpoint import MODEL_FILE, latest_checkpoint
from repolm.train.config import load_train_config, prepare_run
from repolm.train.data import Batch, TrainData
from repolm.train.loop import document_mask_kind, train, train_data
from repolm.train.metrics import read_metrics
from repolm.train.optim import learning_rate

STEPS = 200
CHECKPOINT_EVERY = 20
LEARNING_RATE = 1e-3
# the loop's threads; conftest exports --torch-threads / REPOLM_TEST_THREADS (1 when unset: fast on a busy machine)
LOOP_THREADS = int(os.environ.get("REPOLM_TEST_THREADS") or 1)
EARLY_STEPS = 20  # the early figure: the mean loss of steps 1-20

# The reference run's figures (torch 2.13.0+cpu, fp32) and how far another machine may move them: (value, tolerance).
# Measured for this seed (3): AVX-512 and AVX2 dispatch with 1 and 2 threads, torch's scalar kernels
# (ATEN_CPU_CAPABILITY=default), and MKL limited to SSE4.2: the largest spread is 2.4e-8 in the early mean, 3.8e-6
# in the late mean, 1.7e-6 / 3.6e-6 in the validation losses. Over seeds 3-10 (AVX-512 against AVX2) the early mean
# never moved by more than 1.2e-7, the late mean and the validation losses by up to 6e-4 (seed 9), and up to 4e-3
# against the scalar kernels (seed 10): other seeds are less calm, so re-measure before changing the run.
# Deliberately broken runs move them far more (`BROKEN_RUNS`): targets one token further on, +2.3e-3 early; a causal
# mask that lets each token see the next one, -3.5e-3 early; a warm-up whose first step has lr 0, +2.4e-2 early;
# each decay of the schedule one step late, -6.2e-3 in the late mean and -3.0e-3 in the last validation loss.
# (Re-pinned 2026-12-05 when the loader began to visit each epoch's windows in a shuffled order and validation to
# spread its windows over the folder; AVX-512 and AVX2 agree, 1 and 2 threads to 5e-8.)
# Tolerances: 1e-5 early (80x the largest spread of any seed, 1/230 of the smallest broken move); 1e-3 late (250x
# this seed's spread, above the AVX-512/AVX2 spread of every seed measured, 1/5 of the smallest broken move).
PINNED_FIGURES = {
    "early_mean_loss": (6.7471388, 1e-5),  # steps 1-20
    "late_mean_loss": (4.6375745, 1e-3),  # steps 181-200
    "val_loss_100": (5.5551947, 1e-3),
    "val_loss_200": (5.1563309, 1e-3),
}


def write_token_folder(folder: Path, tokenizer, files: list[Path]) -> None:
    from repolm.tokenizer.token_shards import TokenShardWriter, write_meta

    writer = TokenShardWriter(folder, "00000", len(tokenizer))
    for path in files:
        writer.add(tokenizer.encode(path.read_text(encoding="utf-8")) + [tokenizer.eos_id])
    write_meta(folder, len(tokenizer), tokenizer.eos_id, [writer.close()])


@pytest.fixture(scope="module")
def dataset(small_tokenizer, stdlib_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    write_token_folder(root / "code", small_tokenizer, stdlib_files[30:36])
    write_token_folder(root / "code_text", small_tokenizer, stdlib_files[36:38])
    write_token_folder(root / "validation", small_tokenizer, stdlib_files[38:39])
    (root / "mixture.json").write_text(json.dumps({"target_share": {"code": 0.8, "code_text": 0.2}}))
    return root


def run_overrides(run_dir: Path, dataset: Path, tokenizer_dir: Path) -> dict:
    return {
        "run_dir": str(run_dir),
        "tokenizer": str(tokenizer_dir),
        "model.preset": "tiny",
        "model.overrides": {"hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2},
        "data.folder": str(dataset),
        "data.sequence_length": 32,
        "batch.micro_batch_size": 4,
        "batch.gradient_accumulation_steps": 2,
        "optimizer.lr": LEARNING_RATE,  # 3e-3 is chaotic here: last-bit differences between CPUs grew to 0.1
        "schedule.warmup_steps": 10,
        "max_steps": STEPS,
        "checkpoint.every_steps": CHECKPOINT_EVERY,
        "checkpoint.keep_last": 2,
        "eval.every_steps": 100,
        "eval.batches": 4,
        "logging.every_steps": 1,
        "logging.progress_bar": False,
        "logging.peak_flops": 1e11,
        "seed": 3,
        "cpu_threads": LOOP_THREADS,  # the same in every process (bit-exact comparisons)
    }


@pytest.fixture(scope="module")
def reference(dataset, saved_small_tokenizer, tmp_path_factory):
    """The uninterrupted run: (result, run folder, overrides)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    overrides = run_overrides(run_dir, dataset, saved_small_tokenizer)
    return train(load_train_config(None, overrides)), run_dir, overrides


def loss_lines(run_dir: Path) -> list[tuple]:
    """The logged curve: what must not depend on interruptions (timings do)."""
    return [
        (r["step"], r["loss"], r["lr"], r["grad_norm"], r["tokens"]) if "loss" in r else (r["step"], r["val_loss"])
        for r in read_metrics(run_dir)
        if "loss" in r or "val_loss" in r
    ]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The latest checkpoint's weights (either format)."""
    from repolm.train.checkpoint import load_checkpoint, read_model_state

    checkpoint = latest_checkpoint(run_dir)
    if (checkpoint / MODEL_FILE).is_file():
        return load_file(str(checkpoint / MODEL_FILE))
    return read_model_state(checkpoint, load_checkpoint(checkpoint, load_weights=False).model_config)


def assert_same_run(run_dir: Path, reference_dir: Path) -> None:
    assert loss_lines(run_dir) == loss_lines(reference_dir)
    expected = final_weights(reference_dir)
    weights = final_weights(run_dir)
    assert weights.keys() == expected.keys()
    for name in expected:
        assert torch.equal(weights[name], expected[name]), name


def pinned_figures(run_dir: Path) -> dict[str, float]:
    """The figures of `PINNED_FIGURES` that the run's metrics hold (a run stopped early has the early mean only)."""
    records = read_metrics(run_dir)
    losses = [r["loss"] for r in records if "loss" in r]
    figures = {"early_mean_loss": sum(losses[:EARLY_STEPS]) / EARLY_STEPS}
    if len(losses) == STEPS:
        figures["late_mean_loss"] = sum(losses[-20:]) / 20
        figures.update({f"val_loss_{r['step']}": r["val_loss"] for r in records if "val_loss" in r})
    return figures


def missed_figures(figures: dict[str, float]) -> dict[str, float]:
    """The figures farther from their pinned value than its tolerance, with their distance (figure - pinned)."""
    distances = {name: value - PINNED_FIGURES[name][0] for name, value in figures.items()}
    return {name: distance for name, distance in distances.items() if abs(distance) > PINNED_FIGURES[name][1]}


def describe(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.7f} ({value - PINNED_FIGURES[name][0]:+.1e})" for name, value in figures.items())


def test_pinned_loss(reference):
    result, run_dir, _ = reference
    assert (result.steps, result.tokens) == (STEPS, STEPS * 4 * 32 * 2)
    records = read_metrics(run_dir)
    start = records[0]
    assert start["event"] == "start" and start["peak_flops"] == 1e11 and start["tokens_per_step"] == 256
    train_lines = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_lines] == list(range(1, STEPS + 1))
    assert [r["step"] for r in records if "val_loss" in r] == [100, 200]
    assert train_lines[0]["loss"] == pytest.approx(6.93, abs=0.05)  # ln(1024): uniform over the padded vocabulary
    assert all(r["tokens_per_second"] > 0 and r["mfu"] > 0 for r in train_lines)
    assert (result.loss, result.val_loss) == (
        train_lines[-1]["loss"],
        [r["val_loss"] for r in records if "val_loss" in r][-1],
    )
    figures = pinned_figures(run_dir)
    print(f"\npinned figures ({torch.backends.cpu.get_cpu_capability()}, threads {LOOP_THREADS}): {describe(figures)}")
    assert figures.keys() == PINNED_FIGURES.keys()
    assert not missed_figures(figures), describe(figures)
    # the last checkpoints are kept, the run's config is saved beside them
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_0000180", "step_0000200"]
    assert json.loads((run_dir / "run_config.json").read_text())["max_steps"] == STEPS


class _TargetsOneTokenLate(TrainData):
    """Batches whose targets are the token after the next one (an off-by-one in the targets)."""

    def next_batch(self) -> Batch:
        batch = super().next_batch()
        targets = batch.targets.clone()
        targets[:, :-1] = batch.targets[:, 1:]
        return Batch(batch.input_ids, targets, batch.positions, batch.attention_mask, batch.documents_started)


def _install_breakage(breakage: str, monkeypatch: pytest.MonkeyPatch) -> loop.MakeData:
    """Puts one deliberate bug into the run (undone by `monkeypatch`); returns the batch source to train on."""
    if breakage == "targets_one_token_late":
        return lambda config, plan, info: _TargetsOneTokenLate(plan.sources, 32, 4, config.seed)
    if breakage == "causal_mask_sees_the_next_token":
        attention = F.scaled_dot_product_attention

        def leaky_attention(q, k, v, attn_mask=None, is_causal=False, **options):
            assert attn_mask is None and is_causal  # training and validation: the kernel's own causal mask
            mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(diagonal=1)
            return attention(q, k, v, attn_mask=mask, **options)

        monkeypatch.setattr(F, "scaled_dot_product_attention", leaky_attention)
    elif breakage == "warmup_starts_at_lr_0":

        def warmup_from_zero(step: int, total_steps: int, max_lr: float, config) -> float:
            rate = learning_rate(step, total_steps, max_lr, config)  # step / warmup_steps in place of (step + 1) / ...
            return rate * step / (step + 1) if step < config.warmup_steps else rate

        monkeypatch.setattr(loop, "learning_rate", warmup_from_zero)
    elif breakage == "decays_one_step_late":

        def late_decay(step: int, total_steps: int, max_lr: float, config) -> float:
            decay_steps = {round(fraction * total_steps) for fraction in config.decay_at}  # `>` where `>=` belongs
            return learning_rate(step - 1 if step in decay_steps else step, total_steps, max_lr, config)

        monkeypatch.setattr(loop, "learning_rate", late_decay)
    else:
        raise ValueError(breakage)
    return train_data


BROKEN_RUNS = {  # a deliberate bug -> the pinned figures it must move out of their tolerance
    "targets_one_token_late": {"early_mean_loss"},
    "causal_mask_sees_the_next_token": {"early_mean_loss"},
    "warmup_starts_at_lr_0": {"early_mean_loss"},
    "decays_one_step_late": {"late_mean_loss", "val_loss_200"},  # steps 160 and 180: the first 100 steps are the same
}


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(name, marks=[] if figures == {"early_mean_loss"} else [pytest.mark.slow])
        for name, figures in BROKEN_RUNS.items()
    ],
)
def test_the_tolerances_catch_broken_runs(breakage, dataset, saved_small_tokenizer, tmp_path, monkeypatch):
    """The tolerances of `PINNED_FIGURES` are loose enough for any CPU yet catch a broken run: a bug that shows early
    fails the early figure within 20 steps (the run stops there); a late one (the schedule's decay) needs the whole
    run (slow) and fails the late figures only."""
    expected = BROKEN_RUNS[breakage]
    make_data = _install_breakage(breakage, monkeypatch)
    config = load_train_config(None, run_overrides(tmp_path / "run", dataset, saved_small_tokenizer))
    train(config, stop_at_step=EARLY_STEPS if expected == {"early_mean_loss"} else None, make_data=make_data)
    figures = pinned_figures(tmp_path / "run")
    print(f"\n{breakage}: {describe(figures)}")
    assert set(missed_figures(figures)) == expected, describe(figures)


@pytest.mark.parametrize("steps", [EARLY_STEPS, pytest.param(STEPS, marks=pytest.mark.slow)])
def test_pinned_figures_hold_with_the_other_thread_count(steps, dataset, saved_small_tokenizer, tmp_path):
    """The loop with 2 threads (1 if the tests run it with more) meets the pins: the early one in 20 steps, all of
    them in the whole run (slow)."""
    overrides = run_overrides(tmp_path / "run", dataset, saved_small_tokenizer)
    overrides["cpu_threads"] = 2 if LOOP_THREADS == 1 else 1
    train(load_train_config(None, overrides), stop_at_step=steps)
    figures = pinned_figures(tmp_path / "run")
    print(f"\nthreads {overrides['cpu_threads']}: {describe(figures)}")
    assert len(figures) == (1 if steps == EARLY_STEPS else len(PINNED_FIGURES))
    assert not missed_figures(figures), describe(figures)


def test_the_automatic_document_mask_suits_the_device_and_the_window():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [document_mask_kind("auto", cpu, length) for length in (256, 4095, 4096, 16384)] == [
        "dense",
        "dense",
        "spans",
        "spans",
    ]
    assert [document_mask_kind("auto", cuda, length) for length in (256, 16384, 1000, 5000)] == [
        "flex",
        "flex",
        "dense",
        "spans",
    ]  # flex tiles are 128 tokens
    assert document_mask_kind("dense", cuda, 16384) == "dense"


def tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar as TensorBoard reads the run's event files (purges of a resume applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


@pytest.mark.parametrize("checkpoint_format", ["full", "sharded", "sharded, written in the background"])
def test_stop_and_resume_is_bit_exact(reference, tmp_path, checkpoint_format):
    """In both checkpoint formats, and with the shards written asynchronously while training goes on. Also with
    TensorBoard on: its event files hold the logged curve once per step across the resume."""
    _, reference_dir, overrides = reference
    overrides = {**overrides, "run_dir": str(tmp_path / "run"), "logging.tensorboard": True}
    overrides["checkpoint.format"] = checkpoint_format.split(",")[0]
    overrides["checkpoint.async_save"] = checkpoint_format.endswith("background")
    config = load_train_config(None, overrides)
    stopped = train(config, stop_at_step=110)  # between checkpoints: the checkpoint at 110 is written on stopping
    assert stopped.steps == 110 and stopped.checkpoint.name == "step_0000110"
    assert (stopped.checkpoint / "shards").is_dir() == checkpoint_format.startswith("sharded")
    with pytest.raises(RepolmError, match="already has checkpoints"):
        train(config)
    resumed = train(config, resume=True)
    assert resumed.steps == STEPS
    assert [r.get("event") for r in read_metrics(tmp_path / "run") if "event" in r] == ["start", "resume"]
    assert_same_run(tmp_path / "run", reference_dir)
    records = read_metrics(tmp_path / "run")
    for tag, key in (("loss", "loss"), ("lr", "lr"), ("val_loss", "val_loss")):
        logged = [(r["step"], r[key]) for r in records if key in r]
        assert len(logged) >= (STEPS if tag != "val_loss" else 2)
        events = tensorboard_scalars(tmp_path / "run", tag)
        assert [step for step, _ in events] == [step for step, _ in logged], tag
        assert [value for _, value in events] == pytest.approx([value for _, value in logged], rel=1e-6)  # float32


@pytest.mark.slow
def test_kill_9_and_resume_is_bit_exact(reference, tmp_path):
    """A subprocess running the loop is killed at a random step; `--resume` finishes it: the reference run, exactly.

    Slow (two interpreter starts); `test_stop_and_resume_is_bit_exact` checks the same in process in the default run.
    """
    _, reference_dir, overrides = reference
    config_path = tmp_path / "run.yaml"
    config_path.write_text(json.dumps({**_nested(overrides), "run_dir": str(tmp_path / "run")}))
    kill_step = random.Random(os.getpid()).randint(CHECKPOINT_EVERY + 1, STEPS - 10)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "repolm.train.loop", str(config_path)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and any(r.get("step", 0) >= kill_step and "loss" in r for r in _readable(metrics)):
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert max(r["step"] for r in _readable(metrics) if "loss" in r) < STEPS
    finished = subprocess.run([*command, "--resume"], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert_same_run(tmp_path / "run", reference_dir)


def _tail_and_validation(run_dir: Path) -> tuple[float, float]:
    """The mean loss of the last 20 steps (5120 tokens: steadier than one step's) and the last validation loss."""
    records = read_metrics(run_dir)
    losses = [r["loss"] for r in records if "loss" in r]
    return sum(losses[-20:]) / 20, [r["val_loss"] for r in records if "val_loss" in r][-1]


@pytest.mark.gpu
def test_cuda_training_follows_the_cpu_run(reference, tmp_path):
    """The reference run on a CUDA device, in fp32 and in bf16 autocast with torch.compile (stopped at step 110 and
    resumed): both reach the CPU run's loss within what float reordering, bf16 and non-deterministic GPU kernels
    allow over 200 steps; MFU is against the measured bf16 peak."""
    _, reference_dir, overrides = reference
    cpu = _tail_and_validation(reference_dir)
    overrides = {**overrides, "device": "cuda"}
    overrides.pop("logging.peak_flops")  # measured at start: the GPU's bf16 matmul peak
    fp32_dir, bf16_dir = tmp_path / "fp32", tmp_path / "bf16"
    assert train(load_train_config(None, {**overrides, "run_dir": str(fp32_dir), "precision": "fp32"})).steps == STEPS
    bf16 = load_train_config(None, {**overrides, "run_dir": str(bf16_dir), "parallel.compile": True})
    assert train(bf16, stop_at_step=110).steps == 110
    assert train(bf16, resume=True).steps == STEPS
    on_cuda = {"fp32": _tail_and_validation(fp32_dir), "bf16": _tail_and_validation(bf16_dir)}
    print(f"\nlast-20-step mean loss, validation loss: cpu {cpu}, cuda {on_cuda}")
    records = read_metrics(bf16_dir)
    assert records[0]["event"] == "start" and records[0]["peak_flops"] > 1e13, records[0]  # a GPU's bf16 rate
    train_lines = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_lines] == list(range(1, STEPS + 1))
    assert all(r["mfu"] > 0 for r in train_lines)
    for precision, tolerance in (("fp32", 0.1), ("bf16", 0.2)):
        tail, validation = on_cuda[precision]
        assert tail == pytest.approx(cpu[0], abs=tolerance), precision
        assert validation == pytest.approx(cpu[1], abs=tolerance), precision


def _readable(path: Path) -> list[dict]:
    """The complete lines of a file another process is appending to."""
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def _nested(overrides: dict) -> dict:
    nested: dict = {}
    for dotted, value in overrides.items():
        target = nested
        *parents, last = dotted.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    return nested


def test_masked_targets_are_ignored(dataset, saved_small_tokenizer, tmp_path):
    """Targets of -100 (SFT prompts) add nothing; the step minimizes the mean over the valid tokens of the batch."""
    overrides = run_overrides(tmp_path / "run", dataset, saved_small_tokenizer)
    overrides.update({"max_steps": 1, "schedule.warmup_steps": 0, "optimizer.grad_clip": 0.0, "eval.every_steps": 0})
    config = load_train_config(None, overrides)

    def masked(batch: Batch, index: int) -> Batch:
        targets = batch.targets.clone()
        targets[: index + 1, : 8 * (index + 1)] = -100  # uneven: 8 of 128 masked, then 32
        return Batch(batch.input_ids, targets, batch.positions, batch.attention_mask, batch.documents_started)

    class MaskedData(TrainData):
        drawn = 0

        def next_batch(self) -> Batch:
            batch = masked(super().next_batch(), self.drawn)
            self.drawn += 1
            return batch

    def make_data(config, plan, info):
        return MaskedData(plan.sources, 32, 4, config.seed, rank=info.rank, world_size=info.world_size)

    train(config, make_data=make_data)
    logged = [r for r in read_metrics(tmp_path / "run") if "loss" in r][0]

    plan = prepare_run(config)
    model = build_model(plan.model_config, seed=config.seed)
    data = TrainData(plan.sources, 32, 4, config.seed)
    batches = [masked(data.next_batch(), index) for index in range(2)]
    total = sum(
        F.cross_entropy(model(b.input_ids).flatten(0, 1), b.targets.flatten(), ignore_index=-100, reduction="sum")
        for b in batches
    )
    loss = total / sum(int((b.targets != -100).sum()) for b in batches)
    loss.backward()
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert logged["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert logged["grad_norm"] == pytest.approx(grad_norm.item(), rel=1e-5)


def test_init_from_a_run_with_long_context_rope(reference, tmp_path):
    """Continued training from a run folder (its latest checkpoint): RoPE theta 1e5, scaling x4, 2x windows."""
    _, reference_dir, overrides = reference
    overrides = {**overrides, "run_dir": str(tmp_path / "long"), "max_steps": 3, "schedule.warmup_steps": 0}
    overrides.pop("model.overrides")
    overrides.update({"model.preset": None, "model.init_from": str(reference_dir), "data.sequence_length": 64})
    overrides.update({"model.rope_theta": 1e5, "model.rope_scaling_factor": 4.0, "schedule.kind": "constant"})
    overrides.update({"eval.every_steps": 0})
    result = train(load_train_config(None, overrides))
    first = [r for r in read_metrics(tmp_path / "long") if "loss" in r][0]
    assert first["loss"] < 6.0  # trained weights, not a fresh model (6.93)
    saved = json.loads((latest_checkpoint(tmp_path / "long") / "model_config.json").read_text())
    assert (saved["rope_theta"], saved["rope_scaling_factor"], saved["hidden_size"]) == (1e5, 4.0, 64)
    assert result.steps == 3


def test_continued_pretraining_from_an_hf_folder(reference, tmp_path):
    """The v1.5 path: a config written for a preset, `model.init_from=<HF folder>` over it (no `model.preset=null`).
    The run starts from the folder's weights (its first loss is the loaded model's own loss on that batch), trains
    every weight, and exports a folder that loads."""
    import yaml

    from repolm.hf_folder import load_pretrained
    from repolm.train.checkpoint import export_checkpoint
    from repolm.train.config import prepare_run
    from repolm.train.parallelize import DistributedInfo

    _, reference_dir, overrides = reference
    base = export_checkpoint(reference_dir, tmp_path / "base")
    config_file = tmp_path / "continue.yaml"  # names the preset and its shape overrides
    config_file.write_text(yaml.safe_dump(_nested({**overrides, "run_dir": str(tmp_path / "continued")})))
    changes = {"model.init_from": str(base), "max_steps": 10, "schedule.warmup_steps": 0, "eval.every_steps": 0}
    config = load_train_config(config_file, changes)
    assert config.model.preset is None and config.model.init_from == str(base)
    plan = prepare_run(config)
    assert plan.init_kind == "hf_folder" and plan.model_config == load_pretrained(base).config

    single = DistributedInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)
    data = train_data(config, plan, single)
    batches = [data.next_batch() for _ in range(config.batch.gradient_accumulation_steps)]
    loaded = load_pretrained(base).train()
    with torch.no_grad():
        summed = sum(float(loaded(b.input_ids, b.positions, b.attention_mask, targets=b.targets)) for b in batches)
    expected_first = summed / sum(b.targets.numel() for b in batches)

    train(config)
    losses = [r["loss"] for r in read_metrics(tmp_path / "continued") if "loss" in r]
    assert losses[0] == pytest.approx(expected_first, rel=1e-5)
    assert max(losses) < 6.0 and len(losses) == 10  # trained weights, not a fresh model (6.93)
    continued = load_pretrained(export_checkpoint(tmp_path / "continued", tmp_path / "exported"))
    changed = [not torch.equal(p, q) for p, q in zip(continued.parameters(), loaded.parameters(), strict=True)]
    assert all(changed)


def test_plot_run(reference):
    from repolm.train.plot import plot_run

    _, run_dir, _ = reference
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(RepolmError, match="matplotlib is needed: pip install matplotlib"):
            plot_run(run_dir)
        return
    paths = plot_run(run_dir)
    assert [p.name for p in paths] == ["loss.png", "lr.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def _distributed_worker(
    mode: str, run_dir: str, dataset: str, tokenizer_dir: str, max_steps: str = "12", async_save: str = ""
) -> None:
    """Run under torchrun: the reference settings for `max_steps` steps with 2 processes x micro-batch 2 (resuming
    the run's latest checkpoint when it has one; "async" writes checkpoints in the background)."""
    import dataclasses

    from repolm.train.parallelize import ParallelConfig

    overrides = run_overrides(Path(run_dir), Path(dataset), Path(tokenizer_dir))
    overrides.update({"max_steps": int(max_steps), "batch.micro_batch_size": 2, "checkpoint.every_steps": 6})
    overrides.update({"eval.every_steps": 6, "checkpoint.async_save": async_save == "async"})
    config = dataclasses.replace(load_train_config(None, overrides), parallel=ParallelConfig(mode=mode))
    train(config, resume=True)


def _torchrun(*arguments: str) -> None:
    """Runs this file's `_distributed_worker` with 2 processes (gloo, a free port)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", f"--master-port={port}"]
    finished = subprocess.run([*command, __file__, *arguments], env=environment, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one(mode, dataset, saved_small_tokenizer, tmp_path):
    """2 processes (gloo) x micro-batch 2 log the losses of 1 process x micro-batch 4; the checkpoint exports."""
    from repolm.hf_folder import load_pretrained
    from repolm.train.checkpoint import export_checkpoint

    overrides = run_overrides(tmp_path / "single", dataset, saved_small_tokenizer)
    overrides.update({"max_steps": 12, "checkpoint.every_steps": 6, "eval.every_steps": 6})
    train(load_train_config(None, overrides))
    _torchrun(mode, str(tmp_path / mode), str(dataset), str(saved_small_tokenizer))
    single = [r for r in read_metrics(tmp_path / "single") if "loss" in r]
    distributed = [r for r in read_metrics(tmp_path / mode) if "loss" in r]
    assert [r["step"] for r in distributed] == list(range(1, 13))
    for one, two in zip(single, distributed, strict=True):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    exported = load_pretrained(export_checkpoint(tmp_path / mode, tmp_path / "export"))
    reference = load_pretrained(export_checkpoint(tmp_path / "single", tmp_path / "export_single"))
    input_ids = torch.arange(32).view(1, 32)
    torch.testing.assert_close(exported(input_ids), reference(input_ids), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_sharded_checkpoints_resume_on_one_process_and_on_two(dataset, saved_small_tokenizer, tmp_path):
    """A 2-process FSDP2 run writes sharded checkpoints (no gathered copy; here in the background, on a gloo group of
    their own). Resumed on 1 process and on 2, it goes
    on with the same weights and optimizer state (both log the same losses and end with the same weights); a
    1-process run with sharded checkpoints resumes on 2 as well; a sharded checkpoint exports a folder that
    transformers loads to the same logits."""
    import shutil

    from transformers import LlamaForCausalLM

    from repolm.hf_folder import load_pretrained
    from repolm.train.checkpoint import SHARDS_FOLDER, export_checkpoint, load_checkpoint, read_model_state

    arguments = (str(dataset), str(saved_small_tokenizer))
    _torchrun("fsdp", str(tmp_path / "two"), *arguments, "12", "async")  # checkpoints at 6, 12, in the background
    written = latest_checkpoint(tmp_path / "two")
    assert written.name == "step_0000012" and (written / SHARDS_FOLDER / ".metadata").is_file()
    assert sorted(path.name for path in (written / SHARDS_FOLDER).glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (written / MODEL_FILE).exists()
    assert json.loads((written / "trainer_state.json").read_text())["format"] == "sharded"

    def one_process(run_dir: Path, max_steps: int, **changes) -> None:
        overrides = run_overrides(run_dir, dataset, saved_small_tokenizer)
        overrides.update({"max_steps": max_steps, "checkpoint.every_steps": 6, "eval.every_steps": 6, **changes})
        train(load_train_config(None, overrides), resume=True)

    def losses(run_dir: Path, steps: range) -> list[float]:
        return [r["loss"] for r in read_metrics(run_dir) if "loss" in r and r["step"] in steps]

    shutil.copytree(tmp_path / "two", tmp_path / "two_then_one")
    shutil.copytree(tmp_path / "two", tmp_path / "two_then_two")
    one_process(tmp_path / "two_then_one", 14)  # 2 -> 1
    _torchrun("fsdp", str(tmp_path / "two_then_two"), *arguments, "14")  # 2 -> 2
    one_process(tmp_path / "one", 12, **{"checkpoint.format": "sharded"})
    _torchrun("fsdp", str(tmp_path / "one"), *arguments, "14")  # 1 -> 2
    expected = losses(tmp_path / "two_then_one", range(13, 15))
    assert len(expected) == 2
    assert losses(tmp_path / "two_then_two", range(13, 15)) == pytest.approx(expected, rel=1e-5)
    assert losses(tmp_path / "one", range(13, 15)) == pytest.approx(expected, rel=1e-4)
    config = load_checkpoint(written, load_weights=False).model_config
    final = {
        run: read_model_state(latest_checkpoint(tmp_path / run), config) for run in ("two_then_one", "two_then_two")
    }
    for name, tensor in final["two_then_one"].items():
        torch.testing.assert_close(final["two_then_two"][name], tensor, rtol=1e-4, atol=1e-6, msg=name)

    exported = export_checkpoint(written, tmp_path / "export")
    theirs = LlamaForCausalLM.from_pretrained(exported).eval()
    ours = load_pretrained(exported)
    input_ids = torch.arange(32).view(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids).logits, ours(input_ids), rtol=1e-4, atol=1e-4)


if __name__ == "__main__":
    _distributed_worker(*sys.argv[1:])
