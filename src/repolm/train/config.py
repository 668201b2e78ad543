"""The configuration of a training run (`TrainConfig`), read from YAML, and its checks before any compute.

A run config has one section per concern: model (a preset, or `init_from` an HF folder, a training checkpoint or
a run folder), data (a tokenized dataset and the window length), tokenizer, optimizer, schedule, batch, max_steps,
precision, device, cpu_threads, parallel, checkpoint, eval, logging, seed and run_dir. Each section is a dataclass
whose fields are the YAML keys; `load_train_config` reads the file with `repolm.yaml_config` (unknown keys and
wrong types are errors naming the key), applies `--key=value` overrides (dotted keys, values parsed as YAML scalars)
and then `prepare_run` checks everything that needs the filesystem: the data folder is tokenized, the tokenizer exists,
vocabularies agree, windows fit the model's positions. Every failure is a `RepolmError` naming the file and the
key, raised before a model is built.

Not handled here: building the model or the data (see `repolm.train.loop`), the optimizer and schedule rules
(`repolm.train.optim`) and the distributed wrapping (`repolm.train.parallelize`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repolm.errors import RepolmError, one_line
from repolm.model.config import ModelConfig, padded_vocab_size, preset_config
from repolm.tokenizer.token_shards import (
    META_FILE,
    MIXTURE_FILE,
    is_token_folder,
    is_token_mixture,
    read_meta,
    read_token_mixture,
)
from repolm.train.optim import OptimizerConfig, ScheduleConfig
from repolm.train.parallelize import ParallelConfig
from repolm.yaml_config import apply_overrides, from_mapping, read_yaml_mapping

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
DATA_FORMATS = ("tokens", "instructions")
VALIDATION_FOLDER = "validation"
_MODEL_FIELDS = {item.name for item in dataclasses.fields(ModelConfig)}


@dataclass
class ModelSection:
    """Where the model comes from: a preset (fresh weights) or `init_from` (weights of an earlier model).

    Attributes:
        preset: a name of `repolm.model.PRESETS` (tiny, small, deepseek-coder-1.3b, ...). The vocabulary is sized
            to the tokenizer (its ids rounded up to 64, as `repolm model init` does) unless `overrides` sets it.
        init_from: an HF model folder, a training checkpoint folder (step_NNNNNNN) or a run folder (its latest
            checkpoint): continued pretraining, long context, SFT. Only the weights are taken, not the optimizer.
        rope_theta, rope_scaling_factor, max_position_embeddings: set over the preset's or the loaded model's
            values (the long-context stage: theta 1e4 -> 1e5, linear scaling 1 -> 4).
        overrides: other `ModelConfig` fields over the preset's (only with `preset`; `init_from` fixes the shapes).
    """

    preset: str | None = None
    init_from: str | None = None
    rope_theta: float | None = None
    rope_scaling_factor: float | None = None
    max_position_embeddings: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init_from is None):
            raise RepolmError("set exactly one of model.preset and model.init_from")
        if self.init_from is not None and self.overrides:
            raise RepolmError("model.overrides: only with model.preset (init_from fixes the shapes)")
        unknown = sorted(set(self.overrides) - _MODEL_FIELDS)
        if unknown:
            raise RepolmError(f"model.overrides.{unknown[0]}: not a model config field")
        for name in ("rope_theta", "rope_scaling_factor", "max_position_embeddings"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise RepolmError(f"model.{name}: must be positive, got {value}")


DOCUMENT_MASKS = ("auto", "dense", "spans", "flex")
CHECKPOINT_FORMATS = ("auto", "full", "sharded")


@dataclass
class DataSection:
    """The training data.

    Attributes:
        format: "tokens" (pretraining: token folders of `repolm data tokenize`) or "instructions" (SFT: instruction
            JSONL, `repolm.data.instruction_records`, rendered with the chat template by `repolm.train.sft`).
        folder: tokens: output of `repolm data tokenize`: `<folder>/<kind>/` token folders and `mixture.json`
            ({"target_share": {kind: share}}), or a single token folder (one source). instructions: a JSONL file
            or a folder of `*.jsonl` files.
        mixture: share per kind, over `mixture.json`'s (empty: use the file's shares); tokens only.
        sequence_length: tokens per training window (the paper: 4096; 16384 in the long-context stage).
        document_masking: attention stays inside each packed document (always on for instructions).
        document_mask: how the document mask reaches attention: "dense" (a (B, 1, T, T) boolean mask for SDPA),
            "spans" (SDPA document by document with its causal mask: no T x T tensor, any device), "flex" (a
            flex_attention block mask and the compiled fused kernel: no T x T tensor; a GPU for training, as
            PyTorch has no flex backward on CPUs; the sequence length a multiple of 128), or "auto": flex on a GPU,
            spans on a CPU from 4096 tokens, dense below.
        validation_folder: tokens: held-out token folder, None means `<folder>/validation` when it exists;
            instructions: a held-out JSONL file or folder.
        validation_share: instructions only: hold out this share of the conversations (by a hash of their content)
            for the validation loss, in [0, 1); 0 with no `validation_folder` means no validation.
    """

    format: str = "tokens"
    folder: str = ""
    mixture: dict[str, float] = field(default_factory=dict)
    sequence_length: int = 4096
    document_masking: bool = False
    document_mask: str = "auto"
    validation_folder: str | None = None
    validation_share: float = 0.0

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise RepolmError(f"data.format: {self.format!r} is not one of {', '.join(DATA_FORMATS)}")
        if self.sequence_length < 2:
            raise RepolmError(f"data.sequence_length: must be >= 2, got {self.sequence_length}")
        if self.document_mask not in DOCUMENT_MASKS:
            raise RepolmError(f"data.document_mask: {self.document_mask!r} is not one of {', '.join(DOCUMENT_MASKS)}")
        if self.document_mask == "flex" and self.sequence_length % 128:
            raise RepolmError(
                "data.document_mask: flex needs a sequence_length that is a multiple of 128, "
                f"got {self.sequence_length}"
            )
        for kind, share in self.mixture.items():
            if share < 0:
                raise RepolmError(f"data.mixture.{kind}: a share must be >= 0, got {share}")
        if not 0.0 <= self.validation_share < 1.0:
            raise RepolmError(f"data.validation_share: must be in [0, 1), got {self.validation_share}")
        if self.format == "instructions":
            if self.mixture:
                raise RepolmError("data.mixture: instruction data has no kinds to mix")
            if self.validation_share and self.validation_folder is not None:
                raise RepolmError("data.validation_share: set it or data.validation_folder, not both")
            self.document_masking = True  # conversations never attend to each other
        elif self.validation_share:
            raise RepolmError("data.validation_share: only for data.format instructions")


@dataclass
class BatchSection:
    """Batch sizes, in windows: global batch = micro_batch_size x gradient_accumulation_steps x world size.

    Attributes:
        micro_batch_size: windows per forward pass on one process.
        gradient_accumulation_steps: micro-batches per optimizer step (when global_batch_size is 0).
        global_batch_size: windows per optimizer step over all processes (the paper's Table 2 numbers); when set,
            the accumulation steps follow from it and the world size at start, which must divide it.
    """

    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    global_batch_size: int = 0

    def __post_init__(self) -> None:
        for name in ("micro_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise RepolmError(f"batch.{name}: must be >= 1, got {getattr(self, name)}")
        if self.global_batch_size < 0:
            raise RepolmError(f"batch.global_batch_size: must be >= 0, got {self.global_batch_size}")
        if self.global_batch_size and self.gradient_accumulation_steps != 1:
            raise RepolmError("batch.gradient_accumulation_steps: leave it at 1 when global_batch_size is set")
        if self.global_batch_size and self.global_batch_size % self.micro_batch_size:
            raise RepolmError(
                f"batch.global_batch_size: {self.global_batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size}"
            )

    def accumulation_steps(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each of `world_size` processes."""
        if not self.global_batch_size:
            return self.gradient_accumulation_steps
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise RepolmError(
                f"batch.global_batch_size: {self.global_batch_size} windows do not split into micro-batches of "
                f"{self.micro_batch_size} over {world_size} processes"
            )
        return self.global_batch_size // per_step


@dataclass
class CheckpointSection:
    """Checkpoints: every `every_steps` steps (0: only at the end) and always at the end; the last `keep_last` kept.

    `folder` None means `<run_dir>/checkpoints`. `format`: "full" (rank 0 gathers the model and optimizer into
    model.safetensors and optimizer.pt), "sharded" (every rank writes its own shards with
    torch.distributed.checkpoint, nothing gathered), or "auto": sharded for FSDP runs of several processes (and
    with `async_save`), full otherwise. Both resume on any number of processes and export with `repolm export`.
    `async_save`: write the shards in the background (the state is copied to CPU memory, then written while
    training goes on; the checkpoint appears, renamed into place, once written); sharded format only.
    """

    every_steps: int = 1000
    keep_last: int = 3
    folder: str | None = None
    format: str = "auto"
    async_save: bool = False

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise RepolmError(f"checkpoint.every_steps: must be >= 0, got {self.every_steps}")
        if self.keep_last < 1:
            raise RepolmError(f"checkpoint.keep_last: must be >= 1, got {self.keep_last}")
        if self.format not in CHECKPOINT_FORMATS:
            raise RepolmError(f"checkpoint.format: {self.format!r} is not one of {', '.join(CHECKPOINT_FORMATS)}")
        if self.async_save and self.format == "full":
            raise RepolmError("checkpoint.async_save: needs the sharded format (checkpoint.format: sharded or auto)")


@dataclass
class EvalSection:
    """Held-out validation loss every `every_steps` steps (0: never) over at most `batches` micro-batches."""

    every_steps: int = 0
    batches: int = 20

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise RepolmError(f"eval.every_steps: must be >= 0, got {self.every_steps}")
        if self.batches < 1:
            raise RepolmError(f"eval.batches: must be >= 1, got {self.batches}")


@dataclass
class LoggingSection:
    """A JSON line in `<run_dir>/metrics.jsonl` every `every_steps` steps (and at the first and last step).

    Attributes:
        tensorboard: also write every logged number as a TensorBoard scalar to `<run_dir>/tensorboard`
            (`tensorboard --logdir <run_dir>`; a resumed run purges the events past its checkpoint).
        progress_bar: a tqdm bar on rank 0.
        peak_flops: the device's peak FLOP/s for MFU; 0 measures it at start (~0.5 s of matmuls).
    """

    every_steps: int = 10
    tensorboard: bool = False
    progress_bar: bool = True
    peak_flops: float = 0.0

    def __post_init__(self) -> None:
        if self.every_steps < 1:
            raise RepolmError(f"logging.every_steps: must be >= 1, got {self.every_steps}")
        if self.peak_flops < 0:
            raise RepolmError(f"logging.peak_flops: must be >= 0, got {self.peak_flops}")


@dataclass
class TrainConfig:
    """A whole training run.

    Attributes:
        run_dir: where metrics.jsonl, config.json, checkpoints/ and tensorboard/ go.
        tokenizer: tokenizer folder (checked against the model and the data; saved with exports). None: the
            `init_from` folder's tokenizer when it has one.
        max_steps: optimizer steps of the run (the schedule spans them).
        precision: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" (autocast wherever) or "fp32".
            Master weights and optimizer state are always fp32.
        device: "auto", "cpu" or "cuda" (passed to `init_distributed`).
        cpu_threads: torch's intra-op threads on CPU (0: torch's default, one per core). Small models on a busy
            machine run many times faster with 1 (no OpenMP threads spinning against other processes).
        seed: seeds weights, data order and every RNG.
    """

    run_dir: str = ""
    model: ModelSection = field(default_factory=lambda: ModelSection(preset="tiny"))
    data: DataSection = field(default_factory=DataSection)
    tokenizer: str | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchSection = field(default_factory=BatchSection)
    max_steps: int = 1000
    precision: str = "auto"
    device: str = "auto"
    cpu_threads: int = 0
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    eval: EvalSection = field(default_factory=EvalSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise RepolmError("run_dir: not set")
        if self.max_steps < 1:
            raise RepolmError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.cpu_threads < 0:
            raise RepolmError(f"cpu_threads: must be >= 0 (0 = torch's default), got {self.cpu_threads}")
        if self.precision not in PRECISIONS:
            raise RepolmError(f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.schedule.warmup_steps > self.max_steps:
            raise RepolmError(
                f"schedule.warmup_steps: {self.schedule.warmup_steps} is longer than max_steps {self.max_steps}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (saved as `<run_dir>/config.json` and in every checkpoint)."""
        return dataclasses.asdict(self)

    @property
    def checkpoint_folder(self) -> Path:
        return Path(self.checkpoint.folder) if self.checkpoint.folder else Path(self.run_dir) / "checkpoints"


def parse_overrides(arguments: list[str]) -> dict[str, Any]:
    """`["--optimizer.lr=3e-4", "--max_steps=10"]` -> {"optimizer.lr": 0.0003, "max_steps": 10} (YAML scalars)."""
    overrides: dict[str, Any] = {}
    for argument in arguments:
        if not argument.startswith("--") or "=" not in argument:
            raise RepolmError(f"{argument}: overrides are written --key=value (e.g. --optimizer.lr=3e-4)")
        key, text = argument[2:].split("=", 1)
        if not key:
            raise RepolmError(f"{argument}: the key is empty")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as error:
            raise RepolmError(f"--{key}: not a YAML value ({one_line(error)})") from None
        if isinstance(value, str) and _looks_like_float(value):
            value = float(value)  # YAML 1.1 reads "3e-4" as a string; a number is meant
        overrides[key] = value
    return overrides


# what PyYAML (YAML 1.1) leaves as a string but a person means as a number: 3e-4, 1E5, 2.5e+3
_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _looks_like_float(text: str) -> bool:
    return bool(_EXPONENT_NUMBER.fullmatch(text.strip()))


def load_train_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None, check_files: bool = True
) -> TrainConfig:
    """Reads a YAML run config (None: defaults only), applies dotted `overrides` and checks it: its keys and values,
    then (`check_files`) what it reads from the filesystem (`prepare_run`); the recipe checks a stage's config before
    the stages it reads from have run."""
    where = str(path) if path is not None else "config"
    mapping = read_yaml_mapping(path, "--config") if path is not None else {}
    _floats_from_strings(mapping)
    apply_overrides(mapping, overrides or {})
    _overridden_model_source_wins(mapping, overrides or {})
    config = from_mapping(TrainConfig, mapping, where, "")
    if check_files:
        prepare_run(config, where)
    return config


def _overridden_model_source_wins(mapping: dict[str, Any], overrides: dict[str, Any]) -> None:
    """An override of `model.init_from` replaces the file's `model.preset` (and the preset's `model.overrides`), and
    an override of `model.preset` the file's `model.init_from`: `--model.init_from=DIR` continues pretraining with a
    config written for a preset (the v1.5 path) without `--model.preset=null`. Both overridden stays an error."""
    model = mapping.get("model")
    if not isinstance(model, dict):
        return
    if overrides.get("model.init_from") is not None and "model.preset" not in overrides:
        model.pop("preset", None)
        if "model.overrides" not in overrides:
            model.pop("overrides", None)
    if overrides.get("model.preset") is not None and "model.init_from" not in overrides:
        model.pop("init_from", None)


def _floats_from_strings(mapping: dict[str, Any]) -> None:
    """YAML 1.1 (PyYAML) reads `5.3e-4` as a float but `3e-4` as a string: treat numeric strings as numbers."""
    for key, value in mapping.items():
        if isinstance(value, dict):
            _floats_from_strings(value)
        elif isinstance(value, str) and _looks_like_float(value):
            mapping[key] = float(value)


@dataclass
class RunPlan:
    """What a checked config resolves to (computed before any compute, again by `train`).

    Attributes:
        model_config: the model's final config (preset or loaded, with the RoPE overrides).
        init_kind: "preset", "hf_folder" or "checkpoint"; init_path: the folder the weights come from.
        sources: (token folder, weight) per data source, for `TrainData`.
        validation_folder: held-out token folder (instructions: held-out JSONL file or folder), or None.
        tokenizer_dir: the tokenizer folder, or None when none is known.
        data_vocab_size: `vocab_size` of the token folders' meta.json.
    """

    model_config: ModelConfig
    init_kind: str
    init_path: Path | None
    sources: list[tuple[Path, float]]
    validation_folder: Path | None
    tokenizer_dir: Path | None
    data_vocab_size: int


def prepare_run(config: TrainConfig, where: str = "config") -> RunPlan:
    """Checks the parts of `config` that need the filesystem and resolves them; `RepolmError` names the key."""
    tokenizer_dir, tokenizer_size = _resolve_tokenizer(config, where)
    model_config, init_kind, init_path = _resolve_model(config, where, tokenizer_dir, tokenizer_size)
    sources, data_vocab_size = _resolve_sources(config, where, tokenizer_size)
    validation_folder = _resolve_validation(config, where)

    if config.data.sequence_length > model_config.max_position_embeddings:
        raise RepolmError(
            f"{where}: data.sequence_length: {config.data.sequence_length} is longer than the model's "
            f"max_position_embeddings {model_config.max_position_embeddings} (set model.max_position_embeddings)"
        )
    if tokenizer_size is not None and tokenizer_size > model_config.vocab_size:
        raise RepolmError(
            f"{where}: tokenizer: {tokenizer_dir} has {tokenizer_size} ids, more than the model's vocab_size "
            f"{model_config.vocab_size}"
        )
    if data_vocab_size > model_config.vocab_size:
        raise RepolmError(
            f"{where}: data.folder: the tokens come from a vocabulary of {data_vocab_size} ids, more than the "
            f"model's vocab_size {model_config.vocab_size}"
        )
    if tokenizer_size is not None and data_vocab_size != tokenizer_size:
        raise RepolmError(
            f"{where}: data.folder: tokenized with a vocabulary of {data_vocab_size} ids but the tokenizer "
            f"{tokenizer_dir} has {tokenizer_size}: another tokenizer?"
        )
    return RunPlan(model_config, init_kind, init_path, sources, validation_folder, tokenizer_dir, data_vocab_size)


def _resolve_tokenizer(config: TrainConfig, where: str) -> tuple[Path | None, int | None]:
    directory = config.tokenizer
    key = "tokenizer"
    if directory is None and config.model.init_from is not None:
        candidate = Path(config.model.init_from)
        if (candidate / "tokenizer.json").is_file():
            directory, key = str(candidate), "model.init_from"
        elif config.data.format == "instructions":
            directory, key = _checkpoint_tokenizer(candidate), "model.init_from"
    if directory is None:
        if config.model.preset is not None:
            raise RepolmError(f"{where}: tokenizer: not set (the tokenizer folder the data was tokenized with)")
        if config.data.format == "instructions":
            raise RepolmError(f"{where}: tokenizer: not set (the tokenizer of the model, to tokenize the instructions)")
        return None, None
    path = Path(directory)
    if not (path / "tokenizer.json").is_file():
        raise RepolmError(f"{where}: {key}: {path}: not a tokenizer folder (no tokenizer.json)")
    from repolm.tokenizer import CodeTokenizer

    return path, len(CodeTokenizer.load(path))


def _checkpoint_tokenizer(init_from: Path) -> str | None:
    """The tokenizer folder named in the run config of a training checkpoint or run folder, when it exists."""
    from repolm.train.checkpoint import TRAINER_STATE_FILE, latest_checkpoint

    checkpoint = init_from if (init_from / TRAINER_STATE_FILE).is_file() else latest_checkpoint(init_from)
    if checkpoint is None:
        return None
    try:
        state = json.loads((checkpoint / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
        directory = state["config"]["tokenizer"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return directory if isinstance(directory, str) and (Path(directory) / "tokenizer.json").is_file() else None


def _resolve_model(
    config: TrainConfig, where: str, tokenizer_dir: Path | None, tokenizer_size: int | None
) -> tuple[ModelConfig, str, Path | None]:
    section = config.model
    changes = {
        name: getattr(section, name)
        for name in ("rope_theta", "rope_scaling_factor", "max_position_embeddings")
        if getattr(section, name) is not None
    }
    if section.preset is not None:
        values = dict(section.overrides)
        if tokenizer_dir is not None and tokenizer_size is not None and "vocab_size" not in values:
            from repolm.tokenizer import CodeTokenizer

            tokenizer = CodeTokenizer.load(tokenizer_dir)
            values["vocab_size"] = padded_vocab_size(tokenizer_size)
            values.setdefault("bos_token_id", tokenizer.bos_id)
            values.setdefault("eos_token_id", tokenizer.eos_id)
        try:
            return preset_config(section.preset, **values, **changes), "preset", None
        except KeyError as error:
            raise RepolmError(f"{where}: model.preset: {one_line(error).strip(chr(34))}") from None
        except (ValueError, TypeError) as error:
            raise RepolmError(f"{where}: model.overrides: {one_line(error)}") from None

    from repolm.train.checkpoint import MODEL_CONFIG_FILE, latest_checkpoint

    path = Path(section.init_from)
    if not path.is_dir():
        raise RepolmError(f"{where}: model.init_from: {path}: no such folder")
    if (path / "config.json").is_file():
        from repolm.hf_folder import read_config

        model_config, kind = read_config(path), "hf_folder"
    else:
        if not (path / MODEL_CONFIG_FILE).is_file():
            latest = latest_checkpoint(path)
            if latest is None:
                raise RepolmError(
                    f"{where}: model.init_from: {path}: neither an HF model folder (config.json), a checkpoint "
                    f"nor a run folder with checkpoints"
                )
            path = latest
        model_config = ModelConfig.from_dict(json.loads((path / MODEL_CONFIG_FILE).read_text(encoding="utf-8")))
        kind = "checkpoint"
    if changes:
        try:
            model_config = ModelConfig.from_dict({**model_config.to_dict(), **changes})
        except ValueError as error:
            raise RepolmError(f"{where}: model: {one_line(error)}") from None
    return model_config, kind, path


def _token_folder_vocab(folder: Path, where: str, key: str) -> int:
    if not is_token_folder(folder):
        raise RepolmError(f"{where}: {key}: {folder}: not tokenized (no {META_FILE}; run `repolm data tokenize`)")
    try:
        return read_meta(folder)["vocab_size"]
    except RepolmError as error:
        raise RepolmError(f"{where}: {key}: {error}") from None


def _resolve_sources(
    config: TrainConfig, where: str, tokenizer_size: int | None
) -> tuple[list[tuple[Path, float]], int]:
    if config.data.format == "instructions":
        if not config.data.folder:
            raise RepolmError(f"{where}: data.folder: not set (an instruction JSONL file or a folder of them)")
        from repolm.data.instruction_records import instruction_files

        try:
            instruction_files(config.data.folder)
        except RepolmError as error:
            raise RepolmError(f"{where}: data.folder: {error}") from None
        assert tokenizer_size is not None  # _resolve_tokenizer requires one for instructions
        return [(Path(config.data.folder), 1.0)], tokenizer_size
    if not config.data.folder:
        raise RepolmError(f"{where}: data.folder: not set (the output of `repolm data tokenize`)")
    folder = Path(config.data.folder)
    if not folder.is_dir():
        raise RepolmError(f"{where}: data.folder: {folder}: no such folder")
    if is_token_folder(folder) and not is_token_mixture(folder):
        if config.data.mixture:
            raise RepolmError(f"{where}: data.mixture: {folder} is a single token folder, there is nothing to mix")
        return [(folder, 1.0)], _token_folder_vocab(folder, where, "data.folder")
    shares: dict[str, float] = {}
    if is_token_mixture(folder):
        try:
            shares = dict(read_token_mixture(folder)["target_share"])
        except RepolmError as error:
            raise RepolmError(f"{where}: data.folder: {error}") from None
    elif not config.data.mixture:
        raise RepolmError(f"{where}: data.folder: {folder}: not tokenized (no {MIXTURE_FILE} and no {META_FILE})")
    for kind in config.data.mixture:
        if shares and kind not in shares:
            raise RepolmError(f"{where}: data.mixture.{kind}: no such kind in {folder / MIXTURE_FILE}")
    shares.update(config.data.mixture)
    sources = [(folder / kind, float(share)) for kind, share in sorted(shares.items()) if share > 0]
    if not sources:
        raise RepolmError(f"{where}: data.mixture: every share is 0")
    vocab_sizes = {_token_folder_vocab(path, where, f"data.mixture.{path.name}") for path, _ in sources}
    if len(vocab_sizes) > 1:
        raise RepolmError(f"{where}: data.folder: the kinds were tokenized with different vocabularies {vocab_sizes}")
    return sources, vocab_sizes.pop()


def _resolve_validation(config: TrainConfig, where: str) -> Path | None:
    if config.data.format == "instructions":
        if config.data.validation_folder is not None:
            from repolm.data.instruction_records import instruction_files

            try:
                instruction_files(config.data.validation_folder)
            except RepolmError as error:
                raise RepolmError(f"{where}: data.validation_folder: {error}") from None
            return Path(config.data.validation_folder)
        if config.eval.every_steps and not config.data.validation_share:
            raise RepolmError(
                f"{where}: eval.every_steps: no validation data (set data.validation_share or "
                f"data.validation_folder, or eval.every_steps=0)"
            )
        return None
    if config.data.validation_folder is not None:
        folder = Path(config.data.validation_folder)
        _token_folder_vocab(folder, where, "data.validation_folder")
        return folder
    default = Path(config.data.folder) / VALIDATION_FOLDER
    if is_token_folder(default):
        return default
    if config.eval.every_steps:
        raise RepolmError(
            f"{where}: eval.every_steps: no validation data ({default} is not a token folder; "
            f"set data.validation_folder or eval.every_steps=0)"
        )
    return None
