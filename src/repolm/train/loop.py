"""The training loop: one loop for pretraining, long-context training and SFT, on one CPU or many GPUs.

`train(config)` runs a checked `TrainConfig`: seeds; joins the process group (`repolm.train.parallelize`); builds
the model from a preset or loads `init_from` (fp32 master weights) and wraps it (DDP, FSDP2, activation
checkpointing, compile); AdamW with the decay split and the schedule (`repolm.train.optim`); packed, mixed,
rank-split batches (`repolm.train.data`; for `data.format: instructions`, packed conversations with
answer-only targets from `repolm.train.sft`). With `resume=True` it continues from the latest checkpoint of the run
(model, optimizer, data position, RNG states, step, metrics file): the result is bit-identical on CPU to a run
that was never stopped (`torch.use_deterministic_algorithms`).

One optimizer step: the learning rate of the step; `gradient_accumulation_steps` micro-batches, each a forward
under bf16 autocast on CUDA (fp32 on CPU) and a backward of its summed token losses over the step's nominal
token count, gradients exchanged on the last micro-batch only (`no_sync`); targets equal to -100 are ignored
(SFT masks its prompts that way), and when some are, the gradients are rescaled so the step minimizes the mean
loss over the valid tokens of the whole global batch; clipping; the AdamW step. Rank 0 writes a JSON line every
`logging.every_steps` steps (step, loss, lr, grad_norm, tokens, tokens_per_second, mfu, elapsed_seconds) to
`<run_dir>/metrics.jsonl`, a validation line ("val_loss") every `eval.every_steps`, and a checkpoint every
`checkpoint.every_steps` and at the end. MFU divides the model FLOP/s by the peak measured at start.

`python -m repolm.train.loop CONFIG.yaml [--resume] [--key=value ...]` runs it without the CLI.

Not handled here: the config checks (`repolm.train.config`), the data format, the optimizer rules and the
distributed wrapping (their own modules), and the CLI (`repolm pretrain`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from repolm.errors import RepolmError
from repolm.model import Transformer, build_model, flops_per_token
from repolm.model.llama import IGNORE_INDEX
from repolm.train import parallelize as parallel
from repolm.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_shards,
    rng_states,
    save_checkpoint,
    save_shards,
    set_rng_states,
    start_sharded_checkpoint,
)
from repolm.train.config import RunPlan, TrainConfig, load_train_config, parse_overrides, prepare_run
from repolm.train.data import Batch, TrainData, validation_batches
from repolm.train.metrics import MetricsLog, measure_peak_flops, model_flops_utilization
from repolm.train.optim import apply_learning_rate, build_optimizer, clip_gradients, learning_rate

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "run_config.json"
"""The run's config as plain data, in the run folder (not `config.json`: that name marks an HF model folder)."""


@dataclass
class TrainResult:
    """What a run ended with.

    Attributes:
        run_dir: the run folder; steps: optimizer steps done (all invocations); tokens: training tokens seen.
        loss: training loss of the last step; val_loss: the last validation loss (None without validation).
        elapsed_seconds: training time of the whole run (all invocations).
        tokens_per_second, mfu: averages over this invocation's steps; peak_flops: the measured peak.
        checkpoint: the last checkpoint written (None if none was).
    """

    run_dir: Path
    steps: int
    tokens: int
    loss: float | None
    val_loss: float | None
    elapsed_seconds: float
    tokens_per_second: float
    mfu: float
    peak_flops: float
    checkpoint: Path | None


class BatchSource(Protocol):
    """What the loop draws training batches from: `TrainData`, or another source (SFT) of the same shape."""

    def next_batch(self) -> Batch: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


MakeData = Callable[[TrainConfig, RunPlan, parallel.DistributedInfo], BatchSource]
MakeValidation = Callable[[TrainConfig, RunPlan], list[Batch]]


_BATCH_MASKS = {"dense": "attention_mask", "spans": "document_spans", "flex": "block_mask"}
"""How each `data.document_mask` kind is read off a `Batch`."""


def document_mask_kind(choice: str, device: torch.device, sequence_length: int) -> str:
    """`data.document_mask` resolved: "auto" is flex on a GPU (the fused kernel; windows a multiple of 128),
    spans on a CPU from 4096 tokens (no T x T mask; PyTorch has no flex backward on CPUs), dense below."""
    if choice != "auto":
        return choice
    if device.type == "cuda" and sequence_length % 128 == 0:
        return "flex"
    return "spans" if sequence_length >= 4096 else "dense"


def train_data(config: TrainConfig, plan: RunPlan, info: parallel.DistributedInfo) -> TrainData:
    """The batch source of token folders: the plan's folders packed and mixed by `TrainData`."""
    return TrainData(
        plan.sources,
        config.data.sequence_length,
        config.batch.micro_batch_size,
        config.seed,
        rank=info.rank,
        world_size=info.world_size,
        document_masking=config.data.document_masking,
    )


def validation_data(config: TrainConfig, plan: RunPlan) -> list[Batch]:
    """The validation batches of a held-out token folder (none without one)."""
    if plan.validation_folder is None:
        return []
    return validation_batches(
        plan.validation_folder,
        config.data.sequence_length,
        config.batch.micro_batch_size,
        config.eval.batches,
        config.data.document_masking,
    )


def data_of_format(data_format: str) -> tuple[MakeData, MakeValidation]:
    """The batch source and validation batches of a `data.format`: token folders, or instructions (SFT)."""
    if data_format == "instructions":
        from repolm.train.sft import instruction_data, instruction_validation

        return instruction_data, instruction_validation
    return train_data, validation_data


def train(
    config: TrainConfig,
    resume: bool = False,
    stop_at_step: int | None = None,
    make_data: MakeData | None = None,
    make_validation: MakeValidation | None = None,
) -> TrainResult:
    """Runs `config` (see the module doc). `resume` continues the run's latest checkpoint (a fresh start if none).

    `stop_at_step` ends the run early at that step (with a checkpoint) without changing the schedule, which still
    spans `max_steps`; resuming later continues it exactly. `make_data` builds the batch source and
    `make_validation` the validation batches (default: those of `config.data.format`, `data_of_format`: token
    folders, or instruction data whose targets are -100 where no loss is wanted).
    """
    default_data, default_validation = data_of_format(config.data.format)
    make_data = make_data or default_data
    make_validation = make_validation or default_validation
    plan = prepare_run(config)  # every check before any compute
    if stop_at_step is not None and not 1 <= stop_at_step <= config.max_steps:
        raise RepolmError(f"stop_at_step: must be in [1, max_steps {config.max_steps}], got {stop_at_step}")
    checkpoint_path = latest_checkpoint(config.checkpoint_folder)
    if checkpoint_path is not None and not resume:
        raise RepolmError(
            f"run_dir: {config.run_dir} already has checkpoints ({checkpoint_path.name}); resume it (--resume) "
            f"or choose another run_dir"
        )
    if resume and checkpoint_path is None:
        logger.info("no checkpoint in %s yet: starting the run from step 0", config.checkpoint_folder)
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    info = parallel.init_distributed(config.device)
    try:
        if info.device.type == "cpu":
            torch.use_deterministic_algorithms(True)  # bit-exact resume on CPU
            if config.cpu_threads:
                torch.set_num_threads(config.cpu_threads)
        run = _Run(config, plan, info, checkpoint_path if resume else None, make_data, make_validation)
        return run.run(stop_at_step or config.max_steps)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
        parallel.destroy_distributed()


class _Run:
    """The state of one invocation of `train`: model, optimizer, data, counters, metrics."""

    def __init__(
        self,
        config: TrainConfig,
        plan: RunPlan,
        info: parallel.DistributedInfo,
        checkpoint_path: Path | None,
        make_data: MakeData,
        make_validation: MakeValidation,
    ) -> None:
        self.config, self.plan, self.info = config, plan, info
        self.device = info.device
        self.sequence_length = config.data.sequence_length
        _seed_everything(config.seed + info.rank)
        checkpoint_format, self.async_save = config.checkpoint.format, config.checkpoint.async_save
        self.sharded_checkpoints = checkpoint_format == "sharded" or (
            checkpoint_format == "auto"
            and (self.async_save or (config.parallel.mode == "fsdp" and info.world_size > 1))
        )
        self.pending_save: Callable[[], Path | None] | None = None  # finishes an asynchronous save
        # background writes run their collectives on a group of their own, never beside training's on one group
        self.checkpoint_group = dist.new_group(backend="gloo") if self.async_save and info.world_size > 1 else None
        self.document_mask = document_mask_kind(config.data.document_mask, self.device, config.data.sequence_length)
        bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        if bf16 and self.device.type == "cpu":
            logger.warning("precision bf16 on CPU: autocast works but most CPUs run bf16 matmuls very slowly")

        checkpoint = None
        if checkpoint_path is not None:
            checkpoint = load_checkpoint(checkpoint_path, load_weights=info.is_main)
            if checkpoint.model_config != plan.model_config:
                raise RepolmError(f"{checkpoint_path}: its model config differs from this run's model section")
            _warn_config_changes(checkpoint.config, config.to_dict(), checkpoint_path)
        self.model = self._build_model(skip_weights=checkpoint is not None)
        self.wrapped = parallel.parallelize(self.model, config.parallel, info)
        self.optimizer = build_optimizer(self.wrapped, config.optimizer)
        self.data = make_data(config, plan, info)
        self.validation: list[Batch] = make_validation(config, plan) if config.eval.every_steps else []
        self.accumulation = config.batch.accumulation_steps(info.world_size)
        self.tokens_per_step = (
            config.batch.micro_batch_size * self.sequence_length * self.accumulation * info.world_size
        )
        self.flops_per_token = flops_per_token(plan.model_config, self.sequence_length)
        self.step, self.tokens, self.elapsed_before = 0, 0, 0.0
        if checkpoint is not None:
            self._restore(checkpoint)
        self.peak_flops = 0.0
        if info.is_main:
            self.peak_flops = config.logging.peak_flops or measure_peak_flops(self.device)
        self.metrics = MetricsLog(
            config.run_dir,
            enabled=info.is_main,
            keep_lines=checkpoint.metrics_lines if checkpoint is not None else None,
            tensorboard=config.logging.tensorboard,
            tensorboard_start_step=self.step,
        )
        if info.is_main:
            Path(config.run_dir, RUN_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1) + "\n", "utf-8")
        self.metrics.write(
            {
                "event": "resume" if checkpoint is not None else "start",
                "step": self.step,
                "peak_flops": self.peak_flops,
                "device": str(self.device),
                "world_size": info.world_size,
                "parameters": plan.model_config.num_parameters,
                "tokens_per_step": self.tokens_per_step,
                "flops_per_token": self.flops_per_token,
                "max_steps": config.max_steps,
            }
        )

    def _build_model(self, skip_weights: bool) -> Transformer:
        """The model in fp32 on this rank's device: fresh (seeded), or `init_from`'s weights."""
        plan, device = self.plan, self.device
        if skip_weights or plan.init_kind == "preset":
            # every rank draws the same weights (same seed); a resumed run overwrites them with the checkpoint's
            return build_model(plan.model_config, device=device, dtype=torch.float32, seed=self.config.seed)
        if plan.init_kind == "hf_folder":
            from repolm.hf_folder import load_pretrained

            model = load_pretrained(plan.init_path, device=device, dtype=torch.float32)
        else:
            from repolm.train.checkpoint import model_from_checkpoint

            model = model_from_checkpoint(plan.init_path, device=device)
        model.config = plan.model_config  # the RoPE overrides of the model section
        model.init_rotary_embeddings()
        logger.info("initialized from %s (%s)", plan.init_path, plan.init_kind)
        return model.train()

    def _restore(self, checkpoint) -> None:
        info = self.info
        if checkpoint.sharded:  # every rank reads its own shards, resharded from however many wrote them
            state = parallel.sharded_state_dict(self.wrapped, self.optimizer)
            load_shards(checkpoint.path, state)
            parallel.load_sharded_state_dict(self.wrapped, self.optimizer, state)
        else:
            parallel.load_full_model_state_dict(self.wrapped, checkpoint.model_state or {})
            parallel.load_full_optimizer_state_dict(self.wrapped, self.optimizer, checkpoint.optimizer_state or {})
        if checkpoint.world_size != info.world_size:
            logger.warning(
                "%s was written by %d process(es), this run has %d: the data continues exactly, the RNG states "
                "of rank 0 are used",
                checkpoint.path,
                checkpoint.world_size,
                info.world_size,
            )
        rank_state = checkpoint.rank_states[info.rank if checkpoint.world_size == info.world_size else 0]
        self.data.load_state_dict(rank_state["data"])
        set_rng_states(rank_state["rng"])
        self.step, self.tokens, self.elapsed_before = checkpoint.step, checkpoint.tokens, checkpoint.elapsed_seconds
        logger.info("resumed %s at step %d", checkpoint.path, checkpoint.step)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _loss_sum(self, batch: Batch) -> torch.Tensor:
        """Summed cross-entropy of the batch's valid targets (fp32 scalar)."""
        batch = batch.to(self.device, non_blocking=True)
        with self._autocast():
            # the model computes the output projection and the loss chunk by chunk (fp32 softmax), never holding
            # the (B, T, V) logits: repolm.model.llama.linear_cross_entropy
            mask = getattr(batch, _BATCH_MASKS[self.document_mask])  # None without document masking
            return self.wrapped(batch.input_ids, batch.positions, mask, targets=batch.targets)

    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step over the global batch; returns (loss, lr, grad_norm) (loss on every rank)."""
        lr = learning_rate(self.step, self.config.max_steps, self.config.optimizer.lr, self.config.schedule)
        apply_learning_rate(self.optimizer, lr)
        nominal_tokens = self.config.batch.micro_batch_size * self.sequence_length * self.accumulation  # per rank
        loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
        valid_tokens = 0
        for micro_step in range(self.accumulation):
            batch = self.data.next_batch()
            valid_tokens += int((batch.targets != IGNORE_INDEX).sum())
            last = micro_step == self.accumulation - 1
            with contextlib.nullcontext() if last else parallel.no_sync(self.wrapped):
                micro_loss = self._loss_sum(batch)
                (micro_loss / nominal_tokens).backward()
            loss_sum += micro_loss.detach()
        world = self.info.world_size
        global_valid = round(parallel.all_reduce_mean(valid_tokens) * world)
        # gradients hold (1/world) * sum over ranks of d(loss sum)/nominal: make them d(global mean loss)
        scale = nominal_tokens * world / max(global_valid, 1)
        if scale != 1.0:
            gradients = [p.grad for p in self.wrapped.parameters() if p.grad is not None]
            torch._foreach_mul_(gradients, scale)
        grad_norm = clip_gradients(self.wrapped.parameters(), self.config.optimizer.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += self.tokens_per_step
        loss = parallel.all_reduce_mean(float(loss_sum)) * world / max(global_valid, 1)
        return loss, lr, grad_norm

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the validation batches (every rank evaluates all of them, so all ranks agree)."""
        self.wrapped.eval()
        total, count = 0.0, 0
        for batch in self.validation:
            total += float(self._loss_sum(batch))
            count += int((batch.targets != IGNORE_INDEX).sum())
        self.wrapped.train()
        return total / max(count, 1)

    def save(self) -> Path | None:
        """A checkpoint of the current step (every rank takes part; rank 0 writes the full format, every rank its
        shards in the sharded one). With `checkpoint.async_save` the shards are written in the background and None
        is returned; `finish_pending_save` (at the next save and at the end) completes it."""
        self.finish_pending_save()
        model_state = optimizer_state = staging = wait = None
        if self.sharded_checkpoints:
            box = [start_sharded_checkpoint(self.config.checkpoint_folder, self.step) if self.info.is_main else None]
            if self.info.world_size > 1:
                dist.broadcast_object_list(box, src=0)
            staging = box[0]
            state = parallel.sharded_state_dict(self.wrapped, self.optimizer)
            wait = save_shards(staging, state, process_group=self.checkpoint_group, asynchronous=self.async_save)
        else:
            model_state = parallel.full_model_state_dict(self.wrapped)
            optimizer_state = parallel.full_optimizer_state_dict(self.wrapped, self.optimizer)
        rank_state = {"data": self.data.state_dict(), "rng": rng_states()}
        rank_states = [rank_state]
        if self.info.world_size > 1:
            # as bytes: all_gather_object cannot unpickle the RNG state tensors themselves
            buffer = io.BytesIO()
            torch.save(rank_state, buffer)
            payloads = [None] * self.info.world_size
            dist.all_gather_object(payloads, buffer.getvalue())
            rank_states = [torch.load(io.BytesIO(payload), weights_only=True) for payload in payloads]
        if self.info.is_main:
            self.metrics.sync()
        written = dict(
            step=self.step,
            tokens=self.tokens,
            model_config=self.plan.model_config,
            model_state=model_state,
            optimizer_state=optimizer_state,
            rank_states=rank_states,
            metrics_lines=self.metrics.lines,
            elapsed_seconds=self.elapsed(),
            config=self.config.to_dict(),
            keep_last=self.config.checkpoint.keep_last,
            staging=staging,
        )

        def finish() -> Path | None:
            if wait is not None:
                wait()  # this rank's shards are on disk
            path = save_checkpoint(self.config.checkpoint_folder, **written) if self.info.is_main else None
            if self.info.world_size > 1:
                dist.barrier()
            return path

        if wait is not None:
            self.pending_save = finish
            return None
        return finish()

    def finish_pending_save(self) -> Path | None:
        """Waits for an asynchronous save to be written and puts the checkpoint in place; its path (None if none)."""
        finish, self.pending_save = self.pending_save, None
        return finish() if finish is not None else None

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def run(self, stop_at_step: int) -> TrainResult:
        config, info = self.config, self.info
        self.started = time.perf_counter()
        window_start, window_step = time.perf_counter(), self.step
        loss = val_loss = None
        last_checkpoint = None
        rates: list[tuple[float, float]] = []  # (tokens/s, mfu) per logged window
        bar = tqdm(
            total=config.max_steps,
            initial=self.step,
            disable=not (info.is_main and config.logging.progress_bar),
            unit="step",
            dynamic_ncols=True,
        )
        try:
            while self.step < stop_at_step:
                loss, lr, grad_norm = self.train_step()
                if not math.isfinite(loss):
                    raise RepolmError(f"step {self.step}: the loss is {loss}; lower optimizer.lr or check the data")
                bar.update(1)
                # what is logged depends on the step alone, never on where this invocation started or stops,
                # so that a stopped and resumed run logs the same lines as an uninterrupted one
                last = self.step == config.max_steps
                if self.step % config.logging.every_steps == 0 or last or self.step == 1:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    now = time.perf_counter()
                    tokens_per_second = (self.step - window_step) * self.tokens_per_step / max(now - window_start, 1e-9)
                    mfu = model_flops_utilization(
                        self.flops_per_token, tokens_per_second / info.world_size, self.peak_flops
                    )
                    rates.append((tokens_per_second, mfu))
                    window_start, window_step = now, self.step
                    record = {
                        "step": self.step,
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens": self.tokens,
                        "tokens_per_second": tokens_per_second,
                        "mfu": mfu,
                        "elapsed_seconds": self.elapsed(),
                    }
                    self.metrics.write(record)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                    logger.info(
                        "step %d/%d loss %.4f lr %.3g grad_norm %.3f %.0f tokens/s mfu %.1f%%",
                        self.step,
                        config.max_steps,
                        loss,
                        lr,
                        grad_norm,
                        tokens_per_second,
                        100 * mfu,
                    )
                if self.validation and (self.step % config.eval.every_steps == 0 or last):
                    val_loss = self.validation_loss()
                    self.metrics.write({"step": self.step, "val_loss": val_loss, "tokens": self.tokens})
                    logger.info("step %d validation loss %.4f", self.step, val_loss)
                every = config.checkpoint.every_steps
                if self.step == stop_at_step or (every and self.step % every == 0):
                    last_checkpoint = self.save() or last_checkpoint
            last_checkpoint = self.finish_pending_save() or last_checkpoint
        finally:
            bar.close()
            self.metrics.close()
        return TrainResult(
            run_dir=Path(config.run_dir),
            steps=self.step,
            tokens=self.tokens,
            loss=loss,
            val_loss=val_loss,
            elapsed_seconds=self.elapsed(),
            tokens_per_second=float(np.mean([rate for rate, _ in rates])) if rates else 0.0,
            mfu=float(np.mean([mfu for _, mfu in rates])) if rates else 0.0,
            peak_flops=self.peak_flops,
            checkpoint=last_checkpoint,
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _warn_config_changes(saved: dict, current: dict, checkpoint_path: Path) -> None:
    """Logs the keys whose values differ between the checkpoint's run config and this one."""
    saved = json.loads(json.dumps(saved))
    current = json.loads(json.dumps(current))
    changed = []

    def walk(before, after, prefix: str) -> None:
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                walk(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)
        elif before != after:
            changed.append(f"{prefix}: {before!r} -> {after!r}")

    walk(saved, current, "")
    if changed:
        logger.warning("resuming %s with a changed config: %s", checkpoint_path, "; ".join(changed))


def main(arguments: list[str] | None = None) -> int:
    """`python -m repolm.train.loop CONFIG [--resume] [--stop_at_step=N] [--key=value ...]`."""
    arguments = list(sys.argv[1:] if arguments is None else arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not arguments or arguments[0].startswith("--"):
        logger.error("usage: python -m repolm.train.loop CONFIG.yaml [--resume] [--stop_at_step=N] [--key=value ...]")
        return 2
    resume = "--resume" in arguments
    overrides = parse_overrides([argument for argument in arguments[1:] if argument != "--resume"])
    stop_at_step = overrides.pop("stop_at_step", None)
    try:
        result = train(load_train_config(arguments[0], overrides), resume=resume, stop_at_step=stop_at_step)
    except RepolmError as error:
        logger.error("error: %s", error)
        return 2
    logger.info("done: %s", json.dumps(dataclasses.asdict(result), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
