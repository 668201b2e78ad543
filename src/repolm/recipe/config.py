"""The recipe's configuration (`RecipeConfig`): one YAML file that says what every stage of the main job does.

A recipe config has one section per stage (data, tokenizer, tokenize, pretrain, long_context, sft, eval) plus the
time budget. The training stages name a training YAML (`configs/pretrain/*.yaml`, `configs/sft/*.yaml`) and
dotted overrides over it; the data stage names a data build YAML (or none: the default corpus) and overrides. The
recipe fills in what chains the stages (data folders, the tokenizer, `init_from`, run folders), so the stage
configs stay the ones a user runs by hand.

Reading is strict and happens before any work: an unknown key, a wrong type, a missing file or an invalid value is
a `RepolmError` naming the file and the key ("demo.yaml: pretrain.minutes: must be >= 0"). The stage configs it
names are read and checked too (their keys and values; the files they will read do not exist yet).

Budget: `budget_minutes` is the run's intended wall time; `--budget M` multiplies the minutes of the training
stages and the work of the evaluation by M / budget_minutes, so one config serves a quick check and a long run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError
from repolm.yaml_config import from_mapping, read_yaml_mapping

STAGES = ("data", "tokenizer", "tokenize", "pretrain", "long_context", "sft", "eval", "report")
TRAINING_STAGES = ("pretrain", "long_context", "sft")


@dataclass
class DataStage:
    """Repositories -> repository-level samples, with the held-out split (`repolm data build`).

    Attributes:
        config: a `repolm data build` YAML, relative to the recipe file; None: the default corpus with defaults.
        overrides: dotted keys over it ({"run.tasks": 2, "sources": [...]}): a whole list replaces the file's.
        heldout_fraction: share of each source's repositories held out by a hash of their name (> 0: the
            evaluations need held-out repositories).
        heldout_seed: salts that hash.
    """

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    heldout_fraction: float = 0.1
    heldout_seed: int = 0


@dataclass
class TokenizerStage:
    """A byte-level BPE trained on the training samples only (`repolm tokenizer train`).

    Attributes:
        vocab_size: BPE ids; the 22 DeepSeek-Coder special and leftover ids follow them.
        min_frequency: a pair must occur this often to be merged.
        max_megabytes: read at most this many MB of samples (0: all).
    """

    vocab_size: int = 8000
    min_frequency: int = 2
    max_megabytes: float = 0.0


@dataclass
class TokenizeStage:
    """Samples -> token shards with fill-in-the-middle (`repolm data tokenize`).

    Attributes:
        fim_rate: share of files turned into FIM examples (the paper: 0.5).
        fim_mode: "psm", "spm" or "msp" (see `repolm.tokenizer.fim.FimConfig`).
        fim_spm_rate: with "psm", the share of FIM examples put in SPM instead (0: the paper's PSM only).
        fim_msp_spans: masked spans per file with "msp".
        seed: seeds the FIM choices.

    The held-out repositories are tokenized the same way into `tokenize/heldout/`: the training stages' validation
    loss is measured on them (repositories the model never sees), not on a share of the training samples.
    """

    fim_rate: float = 0.5
    fim_mode: str = "psm"
    fim_spm_rate: float = 0.0
    fim_msp_spans: int = 3
    seed: int = 0


@dataclass
class TrainingStage:
    """One run of the training loop (pretraining, the long-context stage, instruction tuning).

    Attributes:
        enabled: False skips the stage (long_context: the base model is the pretrained one; sft: no instruct model).
        config: the training YAML, relative to the recipe file.
        overrides: dotted keys over it ({"optimizer.lr": 3e-3, "model.overrides.num_hidden_layers": 6}).
        minutes: > 0: `max_steps` is sized so that the stage takes about this long, from a measured training step
            (the schedule then spans exactly those steps); 0: the config's `max_steps`.
    """

    enabled: bool = True
    config: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    minutes: float = 0.0


@dataclass
class InstructionsSection:
    """Where the SFT stage's instructions come from.

    Attributes:
        file: an instruction JSONL file (relative to the recipe file); None: mined from the training repositories
            with `repolm data instructions`.
        kinds: the kinds mined (see `repolm.data.instruction_mining.KINDS`); empty: all.
    """

    file: str | None = None
    kinds: list[str] = field(default_factory=list)


@dataclass
class SftStage(TrainingStage):
    """Instruction tuning (`repolm sft`) of the base model.

    Attributes:
        instructions: the instruction data.
    """

    instructions: InstructionsSection = field(default_factory=InstructionsSection)


@dataclass
class EvalStage:
    """What the evaluation measures, at the recipe's nominal budget (the example counts scale with it).

    Attributes:
        heldout_megabytes: held-out bytes scored for bits per byte (per language, with xz and zstd baselines; not
            scaled by --budget: fewer bytes would make the figure noisy, and scoring is cheap).
        fim_examples: held-out FIM examples for the loss on middles.
        infilling_examples: held-out single-line infilling examples (with the BM25 nearest-line baseline).
        crossfile_examples: cross-file completion examples (none / retrieval / oracle context).
        humaneval_problems, mbpp_problems, humaneval_infilling_problems: problems of each benchmark (0: skip).
        instruct_examples: held-out instructions for the instruct model's format share.
        copying_spans: spans (code, and random tokens) scored twice in a row for in-context copying, the loss on the
            second copy against the first (`repolm.eval.copying`; not scaled by --budget: it takes seconds).
        samples: completions and infills shown in the report.
        max_seq_len: the longest prompt + output of the generation tasks.
        batch_size: prompts per batch of the local engine.
    """

    heldout_megabytes: float = 1.0
    fim_examples: int = 200
    infilling_examples: int = 200
    crossfile_examples: int = 200
    humaneval_problems: int = 164
    mbpp_problems: int = 100
    humaneval_infilling_problems: int = 200
    instruct_examples: int = 50
    copying_spans: int = 48
    samples: int = 4
    max_seq_len: int = 2048
    batch_size: int = 8


@dataclass
class RecipeConfig:
    """The main job: raw repositories -> data -> tokenizer -> pretraining -> long context -> SFT -> eval -> report.

    Attributes:
        description: one line shown by `--dry-run` and in the report.
        budget_minutes: the intended wall time of a run with this config (the stages' minutes add up to about
            this, with data, tokenizer, tokenization and the report); `--budget M` scales by M / budget_minutes.
        device: "auto" (CUDA when present), "cpu" or "cuda": every training and evaluation stage uses it.
        seed: the seed of every stage that has none of its own.
        data, tokenizer, tokenize, pretrain, long_context, sft, eval: the stages.
        arms: an ablation: {arm name: {dotted key of this config: value}}; every arm runs as a recipe of its own
            with the same budget, in `OUT/<arm>/` (see `repolm.recipe.arms`). Empty: one run.
        claims: an ablation's findings to check, each {"text": the paper's finding, "conditions": ["ARM.FIGURE <
            ARM.FIGURE", ...]} (see `repolm.recipe.arms.check_claims`).
    """

    description: str = ""
    budget_minutes: float = 30.0
    device: str = "auto"
    seed: int = 0
    data: DataStage = field(default_factory=DataStage)
    tokenizer: TokenizerStage = field(default_factory=TokenizerStage)
    tokenize: TokenizeStage = field(default_factory=TokenizeStage)
    pretrain: TrainingStage = field(default_factory=TrainingStage)
    long_context: TrainingStage = field(default_factory=lambda: TrainingStage(enabled=False))
    sft: SftStage = field(default_factory=lambda: SftStage(enabled=False))
    eval: EvalStage = field(default_factory=EvalStage)
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(condition: bool, where: str, key: str, message: str) -> None:
    if not condition:
        raise RepolmError(f"{where}: {key}: {message}")


def _resolve_file(value: str | None, base: Path, where: str, key: str) -> str | None:
    """A path of the config, relative to the recipe file's folder (then to the working directory); must exist."""
    if value is None:
        return None
    for candidate in (base / value, Path(value)):
        if candidate.exists():
            return str(candidate.resolve())
    raise RepolmError(f"{where}: {key}: {value}: no such file (relative to {base} or the working directory)")


def validate(config: RecipeConfig, where: str, base: Path) -> RecipeConfig:
    """Checks values and the files the config names, resolves its paths; raises `RepolmError` naming the key."""
    from repolm.data.config import load_build_config
    from repolm.data.sources import ensure_sources_exist
    from repolm.tokenizer.fim import FimConfig
    from repolm.train.config import load_train_config

    _check(config.budget_minutes > 0, where, "budget_minutes", f"must be > 0, got {config.budget_minutes}")
    _check(config.device in ("auto", "cpu", "cuda"), where, "device", f"auto, cpu or cuda, got {config.device!r}")
    data = config.data
    fraction = data.heldout_fraction
    _check(0 < fraction < 1, where, "data.heldout_fraction", f"must be in (0, 1), got {fraction}")
    data.config = _resolve_file(data.config, base, where, "data.config")
    try:
        ensure_sources_exist(load_build_config(data.config, dict(data.overrides)).sources)
    except RepolmError as error:
        raise RepolmError(f"{where}: data: {error}") from None
    _check(config.tokenizer.vocab_size >= 256, where, "tokenizer.vocab_size", "must be >= 256")
    _check(config.tokenizer.max_megabytes >= 0, where, "tokenizer.max_megabytes", "must be >= 0 (0 = all)")
    tokenize = config.tokenize
    try:
        FimConfig(tokenize.fim_rate, tokenize.fim_mode, tokenize.fim_spm_rate, msp_spans=tokenize.fim_msp_spans)
    except (RepolmError, ValueError) as error:
        raise RepolmError(f"{where}: tokenize: {error}") from None
    for name in TRAINING_STAGES:
        stage: TrainingStage = getattr(config, name)
        _check(stage.minutes >= 0, where, f"{name}.minutes", f"must be >= 0, got {stage.minutes}")
        if not stage.enabled:
            continue
        _check(bool(stage.config), where, f"{name}.config", "a training YAML is required when the stage is enabled")
        stage.config = _resolve_file(stage.config, base, where, f"{name}.config")
        try:
            load_train_config(stage.config, dict(stage.overrides), check_files=False)
        except RepolmError as error:
            raise RepolmError(f"{where}: {name}: {error}") from None
    if config.sft.enabled:
        instructions = config.sft.instructions
        instructions.file = _resolve_file(instructions.file, base, where, "sft.instructions.file")
        from repolm.data.instruction_mining import KINDS

        for kind in instructions.kinds:
            _check(kind in KINDS, where, "sft.instructions.kinds", f"{kind!r} is not one of {', '.join(KINDS)}")
    for item in dataclasses.fields(EvalStage):
        value = getattr(config.eval, item.name)
        _check(value >= 0, where, f"eval.{item.name}", f"must be >= 0, got {value}")
    _check(config.eval.max_seq_len >= 64, where, "eval.max_seq_len", "must be >= 64")
    _check(config.eval.batch_size >= 1, where, "eval.batch_size", "must be >= 1")
    for name in config.arms:
        _check(re.fullmatch(r"[\w-]+", name) is not None and name not in STAGES, where, f"arms.{name}",
               "an arm name is a word (letters, digits, _ and -) other than a stage name")  # fmt: skip
    for claim in config.claims:
        _check(isinstance(claim, dict) and set(claim) <= {"text", "conditions"}, where, "claims",
               "each claim is {text: ..., conditions: [...]}")  # fmt: skip
    return config


def load_recipe_config(path: str | Path) -> RecipeConfig:
    """Reads and checks a recipe YAML; every error is a `RepolmError` naming the file and the key."""
    where = str(path)
    mapping = read_yaml_mapping(path, "CONFIG")
    config = from_mapping(RecipeConfig, mapping, where, "")
    return validate(config, where, Path(path).resolve().parent)


def scaled(config: RecipeConfig, budget_minutes: float | None) -> tuple[RecipeConfig, float]:
    """The config with its training minutes and evaluation work scaled to `budget_minutes`, and the factor."""
    if budget_minutes is None:
        return config, 1.0
    if budget_minutes <= 0:
        raise RepolmError(f"--budget: must be > 0 minutes, got {budget_minutes}")
    factor = budget_minutes / config.budget_minutes
    scaled_config = dataclasses.replace(config, budget_minutes=budget_minutes)
    for name in TRAINING_STAGES:
        stage = getattr(config, name)
        setattr(scaled_config, name, dataclasses.replace(stage, minutes=stage.minutes * factor))
    work = {}
    for item in dataclasses.fields(EvalStage):
        value = getattr(config.eval, item.name)
        if item.name in ("max_seq_len", "batch_size", "samples", "heldout_megabytes", "copying_spans"):
            work[item.name] = value
        elif isinstance(value, float):
            work[item.name] = value * factor
        else:
            work[item.name] = max(1, round(value * factor)) if value else 0
    scaled_config.eval = EvalStage(**work)
    return scaled_config, factor
