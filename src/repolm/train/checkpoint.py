"""Training checkpoints: everything a run needs to continue exactly, written atomically; export to an HF folder.

A checkpoint is a folder `<run_dir>/checkpoints/step_NNNNNNN/`, in one of two formats:

    model.safetensors     full: the consolidated model state dict, repolm tensor names, fp32 master weights
    optimizer.pt          full: the consolidated optimizer state dict (torch.save)
    shards/               sharded: model and optimizer state written by every rank, its own shards only
                          (`torch.distributed.checkpoint`: one .distcp file per rank and a .metadata file)
    model_config.json     the `ModelConfig` of those weights
    rank_states.pt        per rank: the data loader's state and the RNG states (python, numpy, torch CPU, CUDA)
    trainer_state.json    step, tokens, elapsed seconds, world size, format, the metrics line count, the run config

The full format suits one process (rank 0 gathers everything); the sharded one a sharded run, where no rank could
hold the whole model and optimizer (torchtitan's checkpointing): every rank writes its shards into the same staging
folder (`save_shards`), then rank 0 adds the small files and renames it into place. Either format loads into any
number of processes (`load_shards` reshards). It is staged in a hidden sibling folder, fsynced and renamed into place
(`repolm.folder_writer`), so a killed run leaves either a whole checkpoint or none; `latest_checkpoint` ignores the
staging folders. `save_checkpoint` keeps
the last N. The metrics line count lets a resumed run cut `metrics.jsonl` back to what the checkpoint had seen, so
its logged curve equals an uninterrupted run's. The .pt files are read with `weights_only=True` (no code runs).

Not handled here: gathering sharded state (`repolm.train.parallelize` gives full state dicts) and deciding when to
save (`repolm.train.loop`).
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from repolm.errors import RepolmError, one_line
from repolm.folder_writer import staging_folder, write_folder
from repolm.model.config import ModelConfig

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model_config.json"
OPTIMIZER_FILE = "optimizer.pt"
RANK_STATES_FILE = "rank_states.pt"
SHARDS_FOLDER = "shards"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKPOINTS_FOLDER = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"step_(\d{7,})")
# one process reading or writing shards: DCP warns (from any thread) that it assumes one process, which is the intent
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


@dataclass
class Checkpoint:
    """A checkpoint read back.

    Attributes:
        path: its folder; step: optimizer steps done; tokens: training tokens seen (all ranks).
        model_config / model_state: the weights (full state dict, CPU tensors; None when not asked for).
        optimizer_state: the full optimizer state dict (None when not asked for).
        rank_states: per rank {"data": loader state, "rng": `rng_states()`}.
        metrics_lines: lines of metrics.jsonl when it was written; elapsed_seconds: training time until then.
        world_size: processes of the run that wrote it; config: the run's `TrainConfig.to_dict()`.
        sharded: the weights and optimizer state are in `shards/` (`load_shards`), not in model_state.
    """

    path: Path
    step: int
    tokens: int
    model_config: ModelConfig
    model_state: dict[str, torch.Tensor] | None
    optimizer_state: dict[str, Any] | None
    rank_states: list[dict[str, Any]]
    metrics_lines: int
    elapsed_seconds: float
    world_size: int
    config: dict[str, Any]
    sharded: bool = False


def rng_states() -> dict[str, Any]:
    """The state of every RNG a run draws from: python, numpy, torch CPU and (when present) every CUDA device."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.copy()), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what `rng_states` returned."""
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.numpy(), position, has_gauss, cached_gaussian))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _checkpoints_in(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and (path / TRAINER_STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint of a run folder (looks in its checkpoints/) or of a checkpoints folder; None if none."""
    directory = Path(directory)
    folder = directory / CHECKPOINTS_FOLDER if (directory / CHECKPOINTS_FOLDER).is_dir() else directory
    found = _checkpoints_in(folder)
    return found[-1][1] if found else None


def start_sharded_checkpoint(folder: str | Path, step: int) -> Path:
    """The staging folder of checkpoint `step` of a sharded save (rank 0 creates it; every rank then writes its
    shards there with `save_shards`, and rank 0 finishes it with `save_checkpoint(..., staging=...)`)."""
    return staging_folder(Path(folder) / checkpoint_name(step))


def save_shards(
    staging: str | Path, state: dict[str, Any], process_group: Any = None, asynchronous: bool = False
) -> Callable[[], None] | None:
    """Every rank: writes its shards of `state` (`repolm.train.parallelize.sharded_state_dict`) into
    `<staging>/shards/` with `torch.distributed.checkpoint` (a collective: all ranks call it).

    `asynchronous`: the state is copied to CPU memory now and written by a background thread (`dcp.async_save`);
    returns the function that waits for the write to end (call it before finishing the checkpoint). Its collectives
    run on `process_group`, which must not be the group training uses (a gloo group of its own)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    shards = str(Path(staging) / SHARDS_FOLDER)
    no_dist = not dist.is_initialized()
    if not asynchronous:
        dcp.save(state, checkpoint_id=shards, process_group=process_group, no_dist=no_dist)
        return None
    handle = dcp.async_save(state, checkpoint_id=shards, process_group=process_group, no_dist=no_dist)
    # a Future, or (with a stager of its own) a response whose upload_completion is the Future
    future = getattr(handle, "upload_completion", handle)
    return lambda: future.result()


def load_shards(path: str | Path, state: dict[str, Any]) -> None:
    """Every rank: fills `state` (the structure of `sharded_state_dict`, or any subset such as {"model": ...})
    from checkpoint `path`'s shards, resharded to this run's processes (one process needs no process group)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    shards = Path(path) / SHARDS_FOLDER
    try:
        dcp.load(state, checkpoint_id=str(shards), no_dist=not dist.is_initialized())
    except Exception as error:  # DCP raises CheckpointException and others for missing or mismatched shards
        raise RepolmError(f"{shards}: cannot load it ({one_line(error, 300)})") from None


def save_checkpoint(
    folder: str | Path,
    step: int,
    tokens: int,
    model_config: ModelConfig,
    model_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any] | None,
    rank_states: list[dict[str, Any]],
    metrics_lines: int,
    elapsed_seconds: float,
    config: dict[str, Any],
    keep_last: int,
    staging: Path | None = None,
) -> Path:
    """Writes `<folder>/step_NNNNNNN/` atomically, then removes all but the newest `keep_last`; returns its path.

    Full format: `model_state` and `optimizer_state` given. Sharded: both None and `staging` the folder from
    `start_sharded_checkpoint` that the ranks wrote their shards into."""
    folder = Path(folder)
    target = folder / checkpoint_name(step)
    sharded = staging is not None
    if sharded == (model_state is not None):
        raise ValueError("save_checkpoint: give model_state and optimizer_state, or the staging folder of shards")
    weights = {}
    if model_state is not None:
        weights = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model_state.items()}
        if model_config.tie_word_embeddings:
            weights.pop("lm_head.weight", None)  # the same tensor as embed_tokens.weight; safetensors stores it once
    trainer_state = {
        "step": step,
        "tokens": tokens,
        "metrics_lines": metrics_lines,
        "elapsed_seconds": elapsed_seconds,
        "world_size": len(rank_states),
        "format": "sharded" if sharded else "full",
        "config": config,
    }

    def write_into(staging: Path) -> None:
        if not sharded:
            save_file(weights, str(staging / MODEL_FILE), metadata={"format": "pt"})
            torch.save(optimizer_state, staging / OPTIMIZER_FILE)
        (staging / MODEL_CONFIG_FILE).write_text(json.dumps(model_config.to_dict(), indent=1) + "\n", "utf-8")
        torch.save(rank_states, staging / RANK_STATES_FILE)
        (staging / TRAINER_STATE_FILE).write_text(json.dumps(trainer_state, indent=1) + "\n", "utf-8")

    write_folder(target, write_into, staging=staging)
    logger.info("saved checkpoint %s", target)
    _prune(folder, keep_last)
    return target


def _prune(folder: Path, keep_last: int) -> None:
    """Removes checkpoints beyond the newest `keep_last` and staging folders of killed saves."""
    for _, path in _checkpoints_in(folder)[:-keep_last]:
        logger.info("removing old checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(".step_*.tmp-*"):
        shutil.rmtree(path, ignore_errors=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RepolmError(f"{path}: missing (not a complete checkpoint)") from None
    except (OSError, ValueError) as error:
        raise RepolmError(f"{path}: cannot read it ({one_line(error)})") from None


def load_checkpoint(path: str | Path, load_weights: bool = True) -> Checkpoint:
    """Reads a checkpoint folder (tensors on CPU). `load_weights=False` skips the model and optimizer state
    (ranks other than 0 of a resumed run: rank 0's full state is what gets loaded)."""
    path = Path(path)
    if not path.is_dir():
        raise RepolmError(f"{path}: no such checkpoint folder")
    trainer_state = _read_json(path / TRAINER_STATE_FILE)
    try:
        model_config = ModelConfig.from_dict(_read_json(path / MODEL_CONFIG_FILE))
    except (TypeError, ValueError) as error:
        raise RepolmError(f"{path / MODEL_CONFIG_FILE}: {one_line(error)}") from None
    model_state = optimizer_state = None
    sharded = trainer_state.get("format") == "sharded"
    if sharded and not (path / SHARDS_FOLDER).is_dir():
        raise RepolmError(f"{path / SHARDS_FOLDER}: missing (not a complete checkpoint)")
    if load_weights and not sharded:
        model_state = read_model_state(path, model_config)
        optimizer_state = _torch_load(path / OPTIMIZER_FILE)
    rank_states = _torch_load(path / RANK_STATES_FILE)
    return Checkpoint(
        path=path,
        step=int(trainer_state["step"]),
        tokens=int(trainer_state["tokens"]),
        model_config=model_config,
        model_state=model_state,
        optimizer_state=optimizer_state,
        rank_states=rank_states,
        metrics_lines=int(trainer_state["metrics_lines"]),
        elapsed_seconds=float(trainer_state["elapsed_seconds"]),
        world_size=int(trainer_state["world_size"]),
        config=trainer_state["config"],
        sharded=sharded,
    )


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RepolmError(f"{path}: missing (not a complete checkpoint)") from None
    except Exception as error:  # truncated or foreign files: pickle and zip errors of many kinds
        raise RepolmError(f"{path}: cannot read it ({one_line(error)})") from None


def read_model_state(path: str | Path, model_config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of checkpoint `path` (repolm names, CPU), with a tied `lm_head.weight` restored; a sharded
    checkpoint's shards are gathered into one process here."""
    if (Path(path) / SHARDS_FOLDER).is_dir():
        from repolm.model import build_model

        model = build_model(model_config, device="cpu", seed=None, initialize=False)
        wanted = model.state_dict()
        if model_config.tie_word_embeddings:
            wanted.pop("lm_head.weight", None)  # one tensor with embed_tokens.weight
        state = {"model": wanted}
        load_shards(path, state)
        weights = dict(state["model"])
        if model_config.tie_word_embeddings:
            weights["lm_head.weight"] = weights["embed_tokens.weight"]
        return weights
    weights_path = Path(path) / MODEL_FILE
    if not weights_path.is_file():
        raise RepolmError(f"{weights_path}: missing (not a complete checkpoint)")
    try:
        state = load_file(str(weights_path), device="cpu")
    except Exception as error:  # safetensors raises its own error types for truncated or invalid files
        raise RepolmError(f"{weights_path}: cannot read it ({one_line(error)})") from None
    if model_config.tie_word_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def model_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A `Transformer` (fp32, eval mode) with the weights of checkpoint `path`."""
    from repolm.model import build_model

    path = Path(path)
    model_config = ModelConfig.from_dict(_read_json(path / MODEL_CONFIG_FILE))
    model = build_model(model_config, device="meta", seed=None, initialize=False)
    state = {name: tensor.to(device) for name, tensor in read_model_state(path, model_config).items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise RepolmError(f"{path / MODEL_FILE}: does not fit {MODEL_CONFIG_FILE} ({one_line(error)})") from None
    if model_config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.init_rotary_embeddings()
    return model.eval()


def export_checkpoint(
    checkpoint_dir: str | Path,
    output_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Writes checkpoint `checkpoint_dir` (or a run folder's latest) as an HF `LlamaForCausalLM` folder.

    The tokenizer is saved beside the weights: `tokenizer_dir`, else the run config's `tokenizer`, else its
    `model.init_from` folder's, when that folder exists. A run on instructions (SFT) gives an instruct folder: the
    tokenizer carries the chat template it was tuned with, `<|EOT|>` as eos and `<｜end▁of▁sentence｜>` as pad
    (`repolm.tokenizer.instruct_tokenizer`), and config.json's eos_token_id is `<|EOT|>`'s id. `dtype` None keeps
    fp32. The folder loads with `repolm.hf_folder.load_pretrained` and transformers.
    """
    import dataclasses

    from repolm.hf_folder import save_pretrained
    from repolm.tokenizer import CodeTokenizer, instruct_tokenizer

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / TRAINER_STATE_FILE).is_file():
        latest = latest_checkpoint(checkpoint_dir)
        if latest is None:
            raise RepolmError(f"{checkpoint_dir}: neither a checkpoint nor a run folder with checkpoints")
        checkpoint_dir = latest
    model = model_from_checkpoint(checkpoint_dir)
    run_config = _read_json(checkpoint_dir / TRAINER_STATE_FILE).get("config", {})
    if tokenizer_dir is None:
        candidates = [run_config.get("tokenizer"), (run_config.get("model") or {}).get("init_from")]
        tokenizer_dir = next((c for c in candidates if c and (Path(c) / "tokenizer.json").is_file()), None)
        if tokenizer_dir is None:
            logger.warning("no tokenizer known for %s: the export holds the model only", checkpoint_dir)
    tokenizer = CodeTokenizer.load(tokenizer_dir) if tokenizer_dir is not None else None
    if (run_config.get("data") or {}).get("format") == "instructions" and tokenizer is not None:
        tokenizer = instruct_tokenizer(tokenizer)
        model.config = dataclasses.replace(model.config, eos_token_id=tokenizer.eot_id)
    output_dir = Path(output_dir)
    save_pretrained(model, output_dir, dtype=dtype)
    if tokenizer is not None:
        tokenizer.save(output_dir)
    logger.info("exported %s to %s", checkpoint_dir, output_dir)
    return output_dir
