"""The recipe's stages: each one the same library call as its standalone command, writing its own folder.

Every stage is a `Stage` with a name, a one-line description, the equivalent standalone command (what `--dry-run`
prints, so that a cluster user can run each stage alone: the data build on Slurm or Ray through its `run.executor`,
the training stages under `torchrun`) and a function that does the work and returns a small summary. The folders:

    OUT/data/        `repolm data build` (training samples in data/, held-out repositories in heldout/)
    OUT/tokenizer/   the BPE tokenizer, trained on the training samples only
    OUT/tokenize/    token shards with FIM
    OUT/pretrain/    the pretraining run (checkpoints, metrics.jsonl); OUT/long_context/ likewise
    OUT/model/       the base model (Hugging Face folder), after the long-context stage (or pretraining without one)
    OUT/sft/         instructions mined from the training repositories and the SFT run; OUT/instruct/ its model
    OUT/eval/        results.json and every evaluation's own files
    OUT/configs/     the resolved config of every stage (what the standalone commands read)

A training stage given `minutes` measures a few real training steps first and sizes `max_steps` to fit them; the
sizing is saved (`OUT/<stage>/sizing.json`), so a resumed stage keeps the same schedule.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically
from repolm.recipe.config import RecipeConfig, TrainingStage

logger = logging.getLogger(__name__)

CALIBRATION_STEPS = 12
SIZING_FILE = "sizing.json"
SUSTAINED_STEP_FACTOR = 1.15
"""A stage's steps take this much longer than the calibration's short burst: on the project's 2-core machines,
14-minute demo pretraining runs measured 1.09x and 1.21x the calibrated step time (clock and cache effects of a
sustained run, checkpoints, logging), so steps are sized with the factor and the stage keeps to its minutes."""


@dataclass
class RecipeRun:
    """One run of a recipe: its (scaled) config and where it writes."""

    config: RecipeConfig
    output: Path
    factor: float = 1.0

    def folder(self, name: str) -> Path:
        return self.output / name

    @property
    def configs(self) -> Path:
        return self.output / "configs"

    @property
    def base_model(self) -> Path:
        return self.output / "model"

    @property
    def instruct_model(self) -> Path:
        return self.output / "instruct"

    @property
    def data_samples(self) -> Path:
        return self.folder("data")

    @property
    def heldout_samples(self) -> Path:
        from repolm.data.split import HELDOUT_FOLDER

        return self.folder("data") / HELDOUT_FOLDER


@dataclass
class Stage:
    """One stage of the recipe.

    Attributes:
        name: the folder and `--from` name.
        description: what it does, in a few words (shown with the progress).
        command: the equivalent standalone command(s), given the run.
        work: does the stage; returns a JSON-serialisable summary.
        enabled: whether the config runs it.
    """

    name: str
    description: str
    command: Callable[[RecipeRun], str]
    work: Callable[[RecipeRun], dict[str, Any]]
    enabled: Callable[[RecipeConfig], bool] = lambda config: True


def _write_yaml(path: Path, mapping: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, yaml.safe_dump(mapping, sort_keys=False))
    return path


# -----------------------------------------------------------------------------
# data, tokenizer, tokenize


def build_config(run: RecipeRun):
    """The data build's config: the recipe's data YAML and overrides, with the held-out split."""
    from repolm.data.config import load_build_config

    data = run.config.data
    overrides = {**data.overrides, "split.heldout_fraction": data.heldout_fraction, "split.seed": data.heldout_seed}
    return load_build_config(data.config, overrides)


def _data_command(run: RecipeRun) -> str:
    return f"repolm data build --config {run.configs / 'data.yaml'} --output {run.data_samples}"


def _data_work(run: RecipeRun) -> dict[str, Any]:
    from repolm.data.pipeline import run_build

    config = build_config(run)
    _write_yaml(run.configs / "data.yaml", config.to_dict())
    run_build(config, run.data_samples)
    stats = json.loads((run.data_samples / "stats.json").read_text(encoding="utf-8"))
    heldout = stats.get("heldout", {})
    return {
        "input_repositories": stats["input"]["repositories"],
        "input_megabytes": round(stats["input"]["bytes"] / 1e6, 2),
        "train_megabytes": round(sum(stats["output"]["bytes"].values()) / 1e6, 2),
        "heldout_repositories": len(heldout.get("repositories", [])),
        "heldout_megabytes": round(sum(heldout.get("bytes", {}).values()) / 1e6, 2),
    }


def _tokenizer_command(run: RecipeRun) -> str:
    settings = run.config.tokenizer
    limit = f" --max-bytes {int(settings.max_megabytes * 1e6)}" if settings.max_megabytes else ""
    return (
        f"repolm tokenizer train --input {run.data_samples} --vocab-size {settings.vocab_size} "
        f"--min-frequency {settings.min_frequency}{limit} --output {run.folder('tokenizer')}"
    )


def _tokenizer_work(run: RecipeRun) -> dict[str, Any]:
    from repolm.tokenizer import train_tokenizer

    settings = run.config.tokenizer
    tokenizer = train_tokenizer(
        [run.data_samples],
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        max_total_bytes=int(settings.max_megabytes * 1e6) or None,
        show_progress=True,
    )
    tokenizer.save(run.folder("tokenizer"))
    return {"ids": len(tokenizer), "bpe_vocab_size": settings.vocab_size}


def train_tokens(run: RecipeRun) -> Path:
    return run.folder("tokenize") / "train"


def heldout_tokens(run: RecipeRun) -> Path:
    return run.folder("tokenize") / "heldout"


def _tokenize_command(run: RecipeRun) -> str:
    settings = run.config.tokenize
    options = (
        f"--tokenizer {run.folder('tokenizer')} --fim-rate {settings.fim_rate} --fim-mode {settings.fim_mode} "
        f"--fim-spm-rate {settings.fim_spm_rate} --fim-msp-spans {settings.fim_msp_spans} --seed {settings.seed} "
        f"--validation-fraction 0 --workers {os.cpu_count() or 1}"
    )
    return "\n".join(
        f"repolm data tokenize --input {source} --output {target} {options}"
        for source, target in ((run.data_samples, train_tokens(run)), (run.heldout_samples, heldout_tokens(run)))
    )


def _tokenize_work(run: RecipeRun) -> dict[str, Any]:
    from repolm.tokenizer.corpus import tokenize_corpus
    from repolm.tokenizer.fim import FimConfig

    settings = run.config.tokenize
    fim = FimConfig(
        rate=settings.fim_rate, mode=settings.fim_mode, spm_rate=settings.fim_spm_rate, msp_spans=settings.fim_msp_spans
    )
    summary = {}
    for name, source, target in (
        ("train", run.data_samples, train_tokens(run)),
        ("heldout", run.heldout_samples, heldout_tokens(run)),
    ):
        result = tokenize_corpus(
            source, run.folder("tokenizer"), target, fim, seed=settings.seed, validation_fraction=0.0,
            workers=os.cpu_count() or 1,
        )  # fmt: skip
        summary[name] = json.loads(json.dumps(result, default=str))
    return summary


# -----------------------------------------------------------------------------
# training stages


def _init_from(run: RecipeRun, name: str) -> str | None:
    """Where a training stage starts: pretraining from scratch, long context from the pretraining run, SFT from the
    base model."""
    return {"pretrain": None, "long_context": str(run.folder("pretrain")), "sft": str(run.base_model)}[name]


def _stage_overrides(run: RecipeRun, name: str) -> dict[str, Any]:
    """The recipe's chaining over the stage's own overrides: folders, tokenizer, init, device, seed."""
    stage: TrainingStage = getattr(run.config, name)
    chained: dict[str, Any] = {
        "run_dir": str(run.folder(name)),
        "device": run.config.device,
    }
    if name == "sft":
        chained["data.folder"] = str(instructions_file(run))
    else:
        chained["data.folder"] = str(train_tokens(run))
        chained["tokenizer"] = str(run.folder("tokenizer"))
        chained["data.validation_folder"] = str(heldout_tokens(run) / "code")  # the held-out repositories' code
    if (init_from := _init_from(run, name)) is not None:
        chained["model.init_from"] = init_from  # replaces a preset that the stage's config names
    return {**stage.overrides, **chained}


def training_config(run: RecipeRun, name: str, check_files: bool = True, max_steps: int | None = None):
    """The `TrainConfig` of a training stage (sized when `max_steps` is given)."""
    from repolm.train.config import load_train_config

    stage: TrainingStage = getattr(run.config, name)
    overrides = _stage_overrides(run, name)
    if max_steps is not None:
        base = load_train_config(stage.config, overrides, check_files=False)
        overrides = {**overrides, **_sized(base, max_steps)}
    return load_train_config(stage.config, overrides, check_files=check_files)


def _sized(config, max_steps: int) -> dict[str, Any]:
    """Overrides that fit a config to `max_steps`: warm-up, checkpoints (about 10 a run, so a kill loses little)
    and validation (about 8 a run) scaled with it."""
    warmup = min(config.schedule.warmup_steps, max(1, max_steps // 10))
    every_eval = max(1, max_steps // 8) if config.eval.every_steps else 0
    return {
        "max_steps": max_steps,
        "schedule.warmup_steps": warmup,
        "checkpoint.every_steps": max(1, min(config.checkpoint.every_steps, math.ceil(max_steps / 10))),
        "eval.every_steps": every_eval,
        "logging.every_steps": max(1, min(config.logging.every_steps, max_steps // 50 or 1)),
    }


def _measure_step_seconds(run: RecipeRun, name: str) -> float:
    """Seconds per training step of the stage's config on this machine: a real run of a few steps (data, model,
    optimizer, validation off) in a scratch folder; the median of the last steps' times (the first steps pay for
    allocation, page faults of the token files and compilation)."""
    from repolm.train.loop import train
    from repolm.train.metrics import read_metrics

    scratch = run.folder(name) / "calibration"
    shutil.rmtree(scratch, ignore_errors=True)
    config = training_config(run, name)
    config = dataclasses.replace(
        config,
        run_dir=str(scratch),
        max_steps=CALIBRATION_STEPS,
        schedule=dataclasses.replace(config.schedule, warmup_steps=1),
        checkpoint=dataclasses.replace(config.checkpoint, every_steps=10**9, keep_last=1),
        eval=dataclasses.replace(config.eval, every_steps=0),
        logging=dataclasses.replace(config.logging, every_steps=1, progress_bar=False, tensorboard=False),
    )
    train(config)
    records = [record for record in read_metrics(scratch) if "loss" in record and "elapsed_seconds" in record]
    shutil.rmtree(scratch, ignore_errors=True)
    if len(records) < 3:
        raise RepolmError(f"the calibration run logged {len(records)} steps, expected {CALIBRATION_STEPS}")
    steps = [
        (later["elapsed_seconds"] - earlier["elapsed_seconds"]) / (later["step"] - earlier["step"])
        for earlier, later in itertools.pairwise(records)
    ][len(records) // 3 :]
    return statistics.median(steps)


def stage_steps(run: RecipeRun, name: str) -> int:
    """The stage's `max_steps`: the config's, or sized to its minutes from a measured step (saved, reused)."""
    stage: TrainingStage = getattr(run.config, name)
    if stage.minutes <= 0:
        return training_config(run, name, check_files=False).max_steps
    sizing_path = run.folder(name) / SIZING_FILE
    if sizing_path.is_file():
        return int(json.loads(sizing_path.read_text(encoding="utf-8"))["max_steps"])
    seconds = _measure_step_seconds(run, name)
    config = training_config(run, name, check_files=False)
    # validation passes (forward only, about a third of a step per batch) share the minutes with training
    validations = 8 * config.eval.batches / 3 if config.eval.every_steps else 0
    max_steps = max(1, int(stage.minutes * 60 / (seconds * SUSTAINED_STEP_FACTOR) - validations))
    sizing = {"max_steps": max_steps, "seconds_per_step": seconds, "minutes": stage.minutes}
    write_file_atomically(sizing_path, json.dumps(sizing, indent=1))
    logger.info("%s: %.2f s a step -> %d steps in %.1f minutes", name, seconds, max_steps, stage.minutes)
    return max_steps


def _write_training_config(run: RecipeRun, name: str, max_steps: int | None) -> Path:
    config = training_config(run, name, check_files=False, max_steps=max_steps)
    return _write_yaml(run.configs / f"{name}.yaml", config.to_dict())


def base_export_stage(config: RecipeConfig) -> str:
    """The stage whose run becomes the base model folder: long_context when enabled, else pretrain."""
    return "long_context" if config.long_context.enabled else "pretrain"


def _training_command(name: str) -> Callable[[RecipeRun], str]:
    def command(run: RecipeRun) -> str:
        stage: TrainingStage = getattr(run.config, name)
        launcher = "torchrun --nproc-per-node N -m repolm" if name != "sft" else "repolm"
        verb = "sft" if name == "sft" else "pretrain"
        lines = [f"{launcher} {verb} --config {run.configs / (name + '.yaml')}"]
        if name == "sft":
            lines[0] += f" --output {run.instruct_model}"
        if stage.minutes > 0:
            lines[0] += f"   # max_steps sized to {stage.minutes:.1f} minutes from a measured step"
        if name == "sft" and run.config.sft.instructions.file is None:
            mined = instructions_file(run)
            lines.insert(0, f"repolm data instructions --input {run.data_samples} --output {mined}")
        if name == base_export_stage(run.config):
            lines.append(f"repolm export --checkpoint {run.folder(name)} --output {run.base_model}")
        return "\n".join(lines)

    return command


def _training_work(name: str) -> Callable[[RecipeRun], dict[str, Any]]:
    def work(run: RecipeRun) -> dict[str, Any]:
        from repolm.train.checkpoint import export_checkpoint, latest_checkpoint
        from repolm.train.loop import train

        if name == "sft":
            _prepare_instructions(run)
        max_steps = stage_steps(run, name)
        _write_training_config(run, name, max_steps)
        config = training_config(run, name, max_steps=max_steps)
        resume = latest_checkpoint(config.checkpoint_folder) is not None
        if name == "sft":
            from repolm.train.sft import run_sft

            result, _ = run_sft(config, resume=resume, output=run.instruct_model)
        else:
            result = train(config, resume=resume)
            if name == base_export_stage(run.config):
                export_checkpoint(config.run_dir, run.base_model, tokenizer_dir=run.folder("tokenizer"))
        return {
            "steps": result.steps,
            "tokens": result.tokens,
            "loss": result.loss,
            "val_loss": result.val_loss,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "mfu": result.mfu,
            "seconds": round(result.elapsed_seconds, 1),
            "resumed": resume,
        }

    return work


def instructions_file(run: RecipeRun) -> Path:
    """The SFT stage's instructions: the config's file, or those mined from the training repositories."""
    given = run.config.sft.instructions.file
    return Path(given) if given else run.folder("sft") / "instructions.jsonl"


def heldout_instructions_file(run: RecipeRun) -> Path:
    """Instructions mined from the held-out repositories: the instruct model's format check."""
    return run.folder("sft") / "heldout_instructions.jsonl"


def _prepare_instructions(run: RecipeRun) -> None:
    """Mines the training repositories' instructions (unless the config gives a file) and the held-out ones."""
    from repolm.data.instruction_mining import KINDS, mine_instructions

    kinds = tuple(run.config.sft.instructions.kinds or KINDS)
    benchmarks = run.config.data.overrides.get("decontamination.benchmarks")
    decontaminate = run.config.data.overrides.get("decontamination.enabled", True)
    jobs = [(run.heldout_samples, heldout_instructions_file(run))]
    if run.config.sft.instructions.file is None:
        jobs.insert(0, (run.data_samples, instructions_file(run)))
    for source, target in jobs:
        if not target.is_file() and source.is_dir():
            mine_instructions([source], target, benchmarks=benchmarks, decontaminate=decontaminate, kinds=kinds)


# -----------------------------------------------------------------------------
# the table of stages (eval and report are in recipe/evaluation.py and recipe/report.py)


def training_stages() -> list[Stage]:
    descriptions = {
        "pretrain": "next-token prediction + FIM from scratch",
        "long_context": "longer windows, RoPE linear scaling and a larger base",
        "sft": "instruction tuning of the base model (### Instruction / ### Response, <|EOT|>)",
    }
    return [
        Stage(
            name,
            descriptions[name],
            _training_command(name),
            _training_work(name),
            lambda config, name=name: getattr(config, name).enabled,
        )
        for name in ("pretrain", "long_context", "sft")
    ]


def preparation_stages() -> list[Stage]:
    return [
        Stage("data", "repositories -> filtered, dependency-ordered, deduplicated samples", _data_command, _data_work),
        Stage("tokenizer", "byte-level BPE on the training samples", _tokenizer_command, _tokenizer_work),
        Stage("tokenize", "samples -> token shards with fill-in-the-middle", _tokenize_command, _tokenize_work),
    ]
