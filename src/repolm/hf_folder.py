"""Hugging Face model folders: read and write `LlamaForCausalLM` checkpoints.

This module's job is to move a repolm `Transformer` in and out of the folder layout that
`transformers.AutoModelForCausalLM.from_pretrained` reads and `save_pretrained` writes:

- `config.json` <-> `ModelConfig` (`config_from_hf`, `config_to_hf`), both the transformers-4 spelling
  (`rope_theta` + `rope_scaling`) and the transformers-5 one (`rope_parameters`);
- weights from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`), or
  `pytorch_model.bin` (single or sharded, read only with `torch.load(weights_only=True, mmap=True)`);
- HF tensor names are repolm names with a `model.` prefix (`lm_head.weight` is the same in both), except that
  repolm's fused `qkv_proj` and `gate_up_proj` are stored as HF's `q_proj`/`k_proj`/`v_proj` and
  `gate_proj`/`up_proj` (`split_fused`, `join_fused`); both use the rotate-half RoPE layout, so there is no
  q/k permutation.

Loading checks everything it can from the file headers before reading any tensor data (architecture,
missing/unexpected tensors, shapes, truncated files) and raises `RepolmError` with a one-line message naming
the file, field or tensor at fault. The model is built on the meta device and each tensor is read, converted
and assigned one at a time, so a 33B checkpoint never exists twice in memory.

Saving is atomic per file: a new folder is written under a temporary sibling name and renamed into place; in an
existing folder every file is written under a temporary name and `os.replace`d, weights first and `config.json`
last, and only model files are touched (a tokenizer saved in the same folder survives).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from repolm.errors import RepolmError
from repolm.model import ModelConfig, Transformer, build_model

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
PYTORCH_INDEX_NAME = "pytorch_model.bin.index.json"

_ARCHITECTURE = "LlamaForCausalLM"
_MODEL_TYPE = "llama"
_HF_PREFIX = "model."
# Weight files of a model folder: replaced (or removed as stale) by `save_pretrained`, nothing else is.
_WEIGHT_FILE = re.compile(
    r"^(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(-\d{5}-of-\d{5})?\.bin|pytorch_model\.bin\.index\.json)$"
)
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ----------------------------------------------------------------------------------------------- config.json


_REQUIRED = object()


def _field(values: dict, key: str, kind: str, source: str, default: Any = _REQUIRED) -> Any:
    """values[key] checked to be of `kind` ("int", "float", "bool", "str"); default when absent or null."""
    value = values.get(key)
    if value is None:
        if default is _REQUIRED:
            raise RepolmError(f"{source}: missing field {key!r}")
        return default
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise RepolmError(f"{source}: field {key!r} must be {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _token_id(values: dict, key: str, source: str) -> int | None:
    value = values.get(key)
    if isinstance(value, list):
        ids = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        if len(ids) != len(value):
            raise RepolmError(f"{source}: field {key!r} must be an int or a list of ints, got {value!r}")
        if len(ids) > 1:
            logger.info("%s: %s is a list %s; using the first id, %d", source, key, ids, ids[0])
        return ids[0] if ids else None
    return _field(values, key, "int", source, default=None)


def _rope(values: dict, source: str) -> tuple[float, float]:
    """(rope_theta, linear scaling factor) from `rope_parameters` (transformers 5) or `rope_scaling`."""
    theta_default = _field(values, "rope_theta", "float", source, default=10000.0)
    if values.get("rope_parameters") is not None:
        field, rope = "rope_parameters", values["rope_parameters"]
    else:
        field, rope = "rope_scaling", values.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise RepolmError(f"{source}: field {field!r} must be an object, got {rope!r}")
    theta = _field(rope, "rope_theta", "float", f"{source}: {field}", default=theta_default)
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        factor = 1.0
    elif rope_type == "linear":
        factor = _field(rope, "factor", "float", f"{source}: {field}")
        if factor <= 0:
            raise RepolmError(f"{source}: {field}.factor must be positive, got {factor}")
    else:
        raise RepolmError(
            f"{source}: {field} rope_type {rope_type!r} is not supported (repolm implements 'default' and 'linear')"
        )
    if theta <= 0:
        raise RepolmError(f"{source}: rope_theta must be positive, got {theta}")
    return theta, factor


def config_from_hf(values: dict, source: str) -> ModelConfig:
    """The `ModelConfig` of an HF `config.json` dict of a `LlamaForCausalLM` (model_type "llama").

    `source` names the file in error messages. Raises `RepolmError` for another architecture, unsupported
    features (biases, an activation other than SiLU, RoPE scaling other than linear) and bad field values.
    """
    if not isinstance(values, dict):
        raise RepolmError(f"{source}: expected a JSON object, got {type(values).__name__}")
    architectures = values.get("architectures")
    model_type = values.get("model_type")
    if not (isinstance(architectures, list) and _ARCHITECTURE in architectures) and model_type != _MODEL_TYPE:
        name = architectures[0] if isinstance(architectures, list) and architectures else None
        raise RepolmError(
            f"{source}: unsupported architecture {name or model_type!r} (architectures {architectures!r}, "
            f"model_type {model_type!r}); repolm loads {_ARCHITECTURE} (model_type 'llama') only"
        )
    hidden_act = _field(values, "hidden_act", "str", source, default="silu")
    if hidden_act not in ("silu", "swish"):
        raise RepolmError(f"{source}: hidden_act {hidden_act!r} is not supported (repolm implements 'silu')")
    for key in ("attention_bias", "mlp_bias"):
        if values.get(key):
            raise RepolmError(f"{source}: {key} is true; repolm's model has no biases")
    rope_theta, rope_scaling_factor = _rope(values, source)
    try:
        return ModelConfig(
            vocab_size=_field(values, "vocab_size", "int", source),
            hidden_size=_field(values, "hidden_size", "int", source),
            intermediate_size=_field(values, "intermediate_size", "int", source),
            num_hidden_layers=_field(values, "num_hidden_layers", "int", source),
            num_attention_heads=_field(values, "num_attention_heads", "int", source),
            num_key_value_heads=_field(values, "num_key_value_heads", "int", source, default=None),
            head_dim=_field(values, "head_dim", "int", source, default=None),
            max_position_embeddings=_field(values, "max_position_embeddings", "int", source, default=2048),
            rope_theta=rope_theta,
            rope_scaling_factor=rope_scaling_factor,
            rms_norm_eps=_field(values, "rms_norm_eps", "float", source, default=1e-6),
            tie_word_embeddings=_field(values, "tie_word_embeddings", "bool", source, default=False),
            initializer_range=_field(values, "initializer_range", "float", source, default=0.02),
            bos_token_id=_token_id(values, "bos_token_id", source),
            eos_token_id=_token_id(values, "eos_token_id", source),
            pad_token_id=_token_id(values, "pad_token_id", source),
        )
    except ValueError as error:
        raise RepolmError(f"{source}: {_one_line(error)}") from error


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def config_to_hf(config: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """An HF `config.json` dict that transformers 4.45+ and 5 load as `LlamaForCausalLM`.

    RoPE is written in the transformers-4 spelling (`rope_theta` + `rope_scaling`), which transformers 5
    converts to `rope_parameters` on load; `dtype` is the dtype of the saved weights.
    """
    rope_scaling = None
    if config.rope_scaling_factor != 1.0:
        rope_scaling = {"type": "linear", "rope_type": "linear", "factor": float(config.rope_scaling_factor)}
    return {
        "architectures": [_ARCHITECTURE],
        "model_type": _MODEL_TYPE,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "initializer_range": config.initializer_range,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": float(config.rope_theta),
        "rope_scaling": rope_scaling,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "use_cache": True,
        "torch_dtype": _dtype_name(dtype),
        "dtype": _dtype_name(dtype),
    }


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RepolmError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RepolmError(f"{path}: cannot read ({_one_line(error)})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RepolmError(f"{path}: invalid JSON ({_one_line(error)})") from error


def read_config(directory: str | os.PathLike) -> ModelConfig:
    """The `ModelConfig` of the HF folder `directory` (its `config.json`)."""
    directory = _existing_folder(directory)
    path = directory / CONFIG_NAME
    return config_from_hf(_read_json(path), str(path))


def _existing_folder(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.exists():
        raise RepolmError(f"{path}: model folder not found")
    if not path.is_dir():
        raise RepolmError(f"{path}: not a folder (expected a Hugging Face model folder)")
    return path


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class _Tensor:
    """Where one checkpoint tensor lies, and its shape and dtype as the file declares them."""

    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype


def _read_safetensors_header(path: Path) -> dict[str, _Tensor]:
    """Tensor entries of a safetensors file, validated against the file's size (catches truncation)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise RepolmError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_bytes,) = struct.unpack("<Q", prefix)
            if header_bytes > min(size - 8, _MAX_HEADER_BYTES):
                raise RepolmError(
                    f"{path}: truncated or corrupt safetensors file (header of {header_bytes} bytes, file of {size})"
                )
            raw = file.read(header_bytes)
    except FileNotFoundError:
        raise RepolmError(f"{path}: weights file not found") from None
    except OSError as error:
        raise RepolmError(f"{path}: cannot read ({_one_line(error)})") from error
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as error:
        raise RepolmError(f"{path}: corrupt safetensors header ({_one_line(error)})") from error
    header.pop("__metadata__", None)
    entries: dict[str, _Tensor] = {}
    data_end = 0
    for name, info in header.items():
        try:
            dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            shape = tuple(int(n) for n in shape)
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError) as error:
            raise RepolmError(f"{path}: corrupt safetensors header entry for {name!r}") from error
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise RepolmError(f"{path}: tensor {name} has dtype {dtype_name}; repolm loads float weights only")
        nbytes = math.prod(shape) * _SAFETENSORS_DTYPES[dtype_name].itemsize
        if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != nbytes:
            raise RepolmError(f"{path}: corrupt safetensors header: tensor {name} has inconsistent data offsets")
        data_end = max(data_end, end)
        entries[name] = _Tensor(path, shape, _SAFETENSORS_DTYPES[dtype_name])
    expected = 8 + header_bytes + data_end
    if size < expected:
        raise RepolmError(f"{path}: truncated safetensors file ({size} bytes, its header describes {expected})")
    return entries


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    """A pytorch_model*.bin state dict, memory-mapped, through the safe (weights-only) unpickler."""
    if not path.is_file():
        raise RepolmError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        raise RepolmError(f"{path}: cannot load PyTorch weights ({_one_line(error)})") from error
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise RepolmError(f"{path}: expected a dict of tensor names to tensors")
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise RepolmError(f"{path}: tensor {name} has dtype {tensor.dtype}; repolm loads float weights only")
    return state


def _shard_names(index_path: Path) -> list[str]:
    index = _read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise RepolmError(f"{index_path}: missing or invalid 'weight_map'")
    names = sorted(set(weight_map.values()))
    for name in names:
        if Path(name).name != name:
            raise RepolmError(f"{index_path}: shard name {name!r} must be a file name in the same folder")
    if not names:
        raise RepolmError(f"{index_path}: 'weight_map' is empty")
    return names


@dataclass
class _Checkpoint:
    """The tensors of a folder's weights: entries by HF name, plus what is needed to read them."""

    description: str
    entries: dict[str, _Tensor]
    bin_state: dict[str, torch.Tensor]  # tensors of pytorch_model*.bin files (memory-mapped), by HF name


def _open_checkpoint(directory: Path) -> _Checkpoint:
    """Find the folder's weight files (HF's order of preference) and read their headers."""
    if (directory / SAFETENSORS_NAME).exists():
        files, kind, description = [directory / SAFETENSORS_NAME], "safetensors", SAFETENSORS_NAME
    elif (directory / SAFETENSORS_INDEX_NAME).exists():
        shards = _shard_names(directory / SAFETENSORS_INDEX_NAME)
        files, kind, description = [directory / s for s in shards], "safetensors", SAFETENSORS_INDEX_NAME
    elif (directory / PYTORCH_NAME).exists():
        files, kind, description = [directory / PYTORCH_NAME], "bin", PYTORCH_NAME
    elif (directory / PYTORCH_INDEX_NAME).exists():
        shards = _shard_names(directory / PYTORCH_INDEX_NAME)
        files, kind, description = [directory / s for s in shards], "bin", PYTORCH_INDEX_NAME
    else:
        raise RepolmError(
            f"{directory}: no weights found (expected {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME}, "
            f"{PYTORCH_NAME} or {PYTORCH_INDEX_NAME})"
        )
    entries: dict[str, _Tensor] = {}
    bin_state: dict[str, torch.Tensor] = {}
    for path in files:
        if kind == "safetensors":
            found = _read_safetensors_header(path)
        else:
            state = _torch_load(path)
            bin_state.update(state)
            found = {name: _Tensor(path, tuple(t.shape), t.dtype) for name, t in state.items()}
        for name, entry in found.items():
            if name in entries:
                raise RepolmError(f"{path}: tensor {name} is also in {entries[name].file.name}")
            entries[name] = entry
    return _Checkpoint(description, entries, bin_state)


# repolm keeps q/k/v and gate/up as one matrix each; HF folders store the parts (rows in this order)
_FUSED_PARTS = {
    "self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}


def _part_rows(config: ModelConfig, fused_suffix: str) -> list[int]:
    if fused_suffix.startswith("self_attn."):
        q_rows = config.num_attention_heads * config.head_dim
        kv_rows = config.num_key_value_heads * config.head_dim
        return [q_rows, kv_rows, kv_rows]
    return [config.intermediate_size, config.intermediate_size]


def split_fused(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """repolm state dict -> the same with fused matrices split into HF's parts (views, no copies)."""
    result: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        fused = next((f for f in _FUSED_PARTS if name.endswith("." + f)), None)
        if fused is None:
            result[name] = tensor
            continue
        prefix = name[: -len(fused)]  # "layers.3."
        for part, rows in zip(_FUSED_PARTS[fused], tensor.split(_part_rows(config, fused), dim=0), strict=True):
            result[prefix + part] = rows
    return result


def join_fused(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `split_fused`: concatenate HF's parts into repolm's fused matrices (empties `state`)."""
    result: dict[str, torch.Tensor] = {}
    for name in list(state):
        if name not in state:  # already joined as a part of an earlier name
            continue
        fused = next((f for f, parts in _FUSED_PARTS.items() if any(name.endswith("." + p) for p in parts)), None)
        if fused is None:
            result[name] = state.pop(name)
            continue
        part = next(p for p in _FUSED_PARTS[fused] if name.endswith("." + p))
        prefix = name[: -len(part)]
        result[prefix + fused] = torch.cat([state.pop(prefix + p) for p in _FUSED_PARTS[fused]])
    return result


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's tensors under Hugging Face `LlamaForCausalLM` names (views of the model's tensors)."""
    return {_hf_name(name): t for name, t in split_fused(model.state_dict(), model.config).items()}


def _repolm_name(hf_name: str) -> str:
    return hf_name.removeprefix(_HF_PREFIX)


def _hf_name(name: str) -> str:
    return name if name.startswith("lm_head.") else _HF_PREFIX + name


def _is_ignored(hf_name: str) -> bool:
    """Buffers old checkpoints saved that repolm recomputes (RoPE inverse frequencies)."""
    return hf_name.endswith("rotary_emb.inv_freq")


def _plan(
    checkpoint: _Checkpoint, config: ModelConfig, expected: dict[str, tuple[int, ...]], source: str
) -> dict[str, str]:
    """Map checkpoint tensors to model parameters; raise on missing, unexpected or misshapen tensors."""
    plan: dict[str, str] = {}  # repolm name -> HF name
    unexpected: list[str] = []
    for hf_name in checkpoint.entries:
        name = _repolm_name(hf_name)
        if _is_ignored(hf_name):
            continue
        if config.tie_word_embeddings and name == "lm_head.weight":
            logger.debug("%s: ignoring %s (tie_word_embeddings is true)", source, hf_name)
            continue
        if name not in expected:
            unexpected.append(hf_name)
            continue
        if name in plan:
            raise RepolmError(f"{source}: tensor {name} appears twice ({plan[name]} and {hf_name})")
        plan[name] = hf_name
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise RepolmError(
            f"{checkpoint.entries[unexpected[0]].file}: unexpected tensor {unexpected[0]}{more} "
            f"(not a parameter of a LlamaForCausalLM with this config.json)"
        )
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()  # filled from embed_tokens.weight
    missing = [_hf_name(name) for name in expected if name not in plan and name not in tied]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise RepolmError(f"{source}: missing tensor {missing[0]}{more} in {checkpoint.description}")
    for name in expected:  # in model order: the embedding first
        if name not in plan:
            continue
        hf_name = plan[name]
        entry = checkpoint.entries[hf_name]
        if entry.shape != expected[name]:
            raise RepolmError(
                f"{entry.file}: tensor {hf_name} has shape {list(entry.shape)}, but config.json implies "
                f"{list(expected[name])}"
            )
    return plan


def _read_tensors(checkpoint: _Checkpoint, plan: dict[str, str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(repolm name, CPU tensor) one at a time, in file order."""
    by_file: dict[Path, list[str]] = {}
    for name, hf_name in plan.items():
        by_file.setdefault(checkpoint.entries[hf_name].file, []).append(name)
    for path, names in by_file.items():
        if checkpoint.bin_state:
            for name in names:
                yield name, checkpoint.bin_state[plan[name]]
            continue
        with ExitStack() as stack:
            try:
                file = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
            except (SafetensorError, OSError, ValueError, RuntimeError) as error:
                raise RepolmError(f"{path}: corrupt safetensors file ({_one_line(error)})") from error
            for name in names:
                try:
                    tensor = file.get_tensor(plan[name])
                except (SafetensorError, OSError, ValueError, RuntimeError) as error:
                    raise RepolmError(f"{path}: cannot read tensor {plan[name]} ({_one_line(error)})") from error
                yield name, tensor


def _checkpoint_dtype(checkpoint: _Checkpoint, plan: dict[str, str]) -> torch.dtype:
    entry = checkpoint.entries[plan["embed_tokens.weight"]]
    return entry.dtype


def load_pretrained(
    directory: str | os.PathLike, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> Transformer:
    """A `Transformer` with the config and weights of the HF `LlamaForCausalLM` folder `directory`.

    Weights come from `model.safetensors`, sharded safetensors, or `pytorch_model.bin` (single or sharded).
    `dtype` None keeps the checkpoint's dtype on an accelerator and uses float32 on CPU (bfloat16 matmuls are
    very slow on most CPUs). The model is returned in eval mode. Raises `RepolmError` for a missing folder or
    file, invalid JSON, another architecture, missing/unexpected/misshapen tensors and truncated files.
    """
    directory = _existing_folder(directory)
    config = read_config(directory)
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise RepolmError(f"invalid device {device!r} ({_one_line(error)})") from error
    checkpoint = _open_checkpoint(directory)
    source = str(directory)

    # the model on the meta device: parameter shapes to check against, and a skeleton to assign tensors into
    model = build_model(config, device="meta", dtype=dtype or torch.float32, seed=None, initialize=False)
    # checked in HF's layout: fused repolm matrices are compared part by part
    expected = {name: tuple(tensor.shape) for name, tensor in split_fused(model.state_dict(), config).items()}
    plan = _plan(checkpoint, config, expected, source)

    file_dtype = _checkpoint_dtype(checkpoint, plan)
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else file_dtype
    if not dtype.is_floating_point:
        raise RepolmError(f"dtype must be a floating-point dtype, got {dtype}")
    model = model.to(dtype)
    converted = {entry.dtype for entry in checkpoint.entries.values() if entry.dtype != dtype}
    if converted:
        logger.info(
            "converting %s weights of %s to %s",
            "/".join(sorted(map(_dtype_name, converted))),
            source,
            _dtype_name(dtype),
        )

    state: dict[str, torch.Tensor] = {}
    for name, tensor in _read_tensors(checkpoint, plan):
        # copy=True: never keep a memory-mapped view of a .bin file inside the model
        state[name] = tensor.to(device=device, dtype=dtype, copy=bool(checkpoint.bin_state))
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    model.load_state_dict(join_fused(state), strict=True, assign=True)
    del state
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.init_rotary_embeddings()
    model.eval()
    logger.info(
        "loaded %s: %d layers, %s parameters, %s on %s",
        source,
        config.num_hidden_layers,
        f"{model.num_parameters():,}",
        _dtype_name(dtype),
        device,
    )
    return model


# ---------------------------------------------------------------------------------------------------- writing


def _named_tensors(model: Transformer) -> list[tuple[str, torch.Tensor]]:
    """(HF name, tensor) of every persistent tensor; tied output weights once (as the embedding)."""
    tied = model.config.tie_word_embeddings
    if tied and model.lm_head.weight is not model.embed_tokens.weight:
        if not torch.equal(model.lm_head.weight, model.embed_tokens.weight):
            raise ValueError(
                "config.tie_word_embeddings is true but lm_head.weight and embed_tokens.weight differ; "
                "tie them (model.lm_head.weight = model.embed_tokens.weight) before saving"
            )
    tensors = []
    for name, tensor in split_fused(model.state_dict(), model.config).items():
        if tied and name == "lm_head.weight":
            continue
        tensors.append((_hf_name(name), tensor))
    return tensors


def _shards(tensors: list[tuple[str, torch.Tensor]], dtype: torch.dtype, max_bytes: int):
    """Tensors grouped in order into shards of at most `max_bytes` (a larger tensor gets a shard of its own)."""
    shards: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    item = torch.empty((), dtype=dtype).element_size()
    for name, tensor in tensors:
        nbytes = tensor.numel() * item
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, tensor))
        size += nbytes
    return shards


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(descriptor)


def _write_json(data: dict) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "x", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=False)
            file.write("\n")

    return write


def _write_shard(shard: list[tuple[str, torch.Tensor]], dtype: torch.dtype) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for name, tensor in shard:
            tensor = tensor.detach().to(device="cpu", dtype=dtype).contiguous()
            if tensor.data_ptr() in seen:  # safetensors refuses tensors that share memory
                tensor = tensor.clone()
            seen.add(tensor.data_ptr())
            tensors[name] = tensor
        save_file(tensors, str(path), metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)  # the usual file permissions, like the JSON files beside it

    return write


def save_pretrained(
    model: Transformer,
    directory: str | os.PathLike,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5 * 2**30,
) -> None:
    """Write `model` as an HF `LlamaForCausalLM` folder that transformers and `load_pretrained` read.

    Writes `config.json`, `generation_config.json` and `model.safetensors`, or shards
    `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json` when the weights exceed
    `max_shard_bytes`. `dtype` None keeps the model's dtype. A new folder appears complete or not at all; in an
    existing folder each file is replaced atomically (weights first, `config.json` last), stale weight files of
    an earlier save are removed, and files that are not model files (e.g. a tokenizer) are left alone.
    """
    directory = Path(directory)
    config = model.config
    dtype = dtype or model.embed_tokens.weight.dtype
    if not dtype.is_floating_point:
        raise RepolmError(f"dtype must be a floating-point dtype, got {dtype}")
    if max_shard_bytes <= 0:
        raise RepolmError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    if directory.exists() and not directory.is_dir():
        raise RepolmError(f"{directory}: exists and is not a folder")

    tensors = _named_tensors(model)
    shards = _shards(tensors, dtype, max_shard_bytes)
    files: list[tuple[str, Callable[[Path], None]]] = []  # in the order they are put in place
    if len(shards) == 1:
        files.append((SAFETENSORS_NAME, _write_shard(shards[0], dtype)))
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            files.append((name, _write_shard(shard, dtype)))
            weight_map.update({tensor_name: name for tensor_name, _ in shard})
        item = torch.empty((), dtype=dtype).element_size()
        total = sum(t.numel() * item for _, t in tensors)
        files.append(
            (SAFETENSORS_INDEX_NAME, _write_json({"metadata": {"total_size": total}, "weight_map": weight_map}))
        )
    generation = {"_from_model_config": True}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(config, key) is not None:
            generation[key] = getattr(config, key)
    files.append((GENERATION_CONFIG_NAME, _write_json(generation)))
    files.append((CONFIG_NAME, _write_json(config_to_hf(config, dtype))))

    if directory.exists():
        _replace_files(directory, files)
    else:
        _write_new_folder(directory, files)
    logger.info("saved %s (%d weight file(s), %s)", directory, len(shards), _dtype_name(dtype))


def _write_new_folder(directory: Path, files: list[tuple[str, Callable[[Path], None]]]) -> None:
    """Write all files into a temporary sibling folder, then rename it to `directory`."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:12]}"
    temporary.mkdir()  # plain mkdir: the folder gets the usual permissions (umask), unlike mkdtemp's 0700
    try:
        for name, write in files:
            write(temporary / name)
            _fsync(temporary / name)
        _fsync(temporary)
        try:
            os.rename(temporary, directory)
        except OSError as error:
            raise RepolmError(f"{directory}: cannot move the saved model into place ({_one_line(error)})") from error
        _fsync(directory.parent)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _replace_files(directory: Path, files: list[tuple[str, Callable[[Path], None]]]) -> None:
    """Write every file under a temporary name in `directory`, then `os.replace` each into place in order."""
    token = uuid.uuid4().hex[:12]
    temporaries = {name: directory / f".{name}.tmp-{token}" for name, _ in files}
    try:
        for name, write in files:
            write(temporaries[name])
            _fsync(temporaries[name])
        new_names = set(temporaries)
        stale = sorted(p for p in directory.iterdir() if _WEIGHT_FILE.match(p.name) and p.name not in new_names)
        weight_names = [name for name in temporaries if _WEIGHT_FILE.match(name)]
        for name in weight_names:
            os.replace(temporaries[name], directory / name)
        for path in stale:  # e.g. shards of an earlier, larger save: would shadow or confuse the new weights
            logger.info("removing stale weights file %s", path)
            path.unlink(missing_ok=True)
        for name in temporaries:
            if name not in weight_names:
                os.replace(temporaries[name], directory / name)
        _fsync(directory)
    finally:
        for path in temporaries.values():
            path.unlink(missing_ok=True)


__all__ = [
    "config_from_hf",
    "config_to_hf",
    "load_pretrained",
    "read_config",
    "save_pretrained",
]
