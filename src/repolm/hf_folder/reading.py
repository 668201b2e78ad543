"""Loading: find an HF folder's weight files, check them and read them into a `Transformer` (`load_pretrained`).

Weights come from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`), or
`pytorch_model.bin` (single or sharded, read only with `torch.load(weights_only=True, mmap=True)`).

Loading checks everything it can from the file headers before reading any tensor data (architecture,
missing/unexpected tensors, shapes, truncated files) and raises `RepolmError` with a one-line message naming
the file, field or tensor at fault. The model is built on the meta device and each tensor is read, converted
and assigned one at a time, so a 33B checkpoint never exists twice in memory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from repolm.errors import RepolmError, one_line
from repolm.hf_folder.config import _dtype_name, read_config
from repolm.hf_folder.files import (
    PYTORCH_INDEX_NAME,
    PYTORCH_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
    _existing_folder,
    _read_json,
)
from repolm.hf_folder.names import _hf_name, _repolm_name, join_fused, split_fused
from repolm.model import ModelConfig, Transformer, build_model

logger = logging.getLogger(__package__)  # one logger for the package: "repolm.hf_folder"

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit


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
        raise RepolmError(f"{path}: cannot read ({one_line(error)})") from error
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as error:
        raise RepolmError(f"{path}: corrupt safetensors header ({one_line(error)})") from error
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
        raise RepolmError(f"{path}: cannot load PyTorch weights ({one_line(error)})") from error
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


def _find_weight_files(directory: Path) -> tuple[list[Path], str, str]:
    """(files, "safetensors" or "bin", the file that names them) in HF's order of preference."""
    if (directory / SAFETENSORS_NAME).exists():
        return [directory / SAFETENSORS_NAME], "safetensors", SAFETENSORS_NAME
    if (directory / SAFETENSORS_INDEX_NAME).exists():
        shards = _shard_names(directory / SAFETENSORS_INDEX_NAME)
        return [directory / s for s in shards], "safetensors", SAFETENSORS_INDEX_NAME
    if (directory / PYTORCH_NAME).exists():
        return [directory / PYTORCH_NAME], "bin", PYTORCH_NAME
    if (directory / PYTORCH_INDEX_NAME).exists():
        shards = _shard_names(directory / PYTORCH_INDEX_NAME)
        return [directory / s for s in shards], "bin", PYTORCH_INDEX_NAME
    raise RepolmError(
        f"{directory}: no weights found (expected {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME}, "
        f"{PYTORCH_NAME} or {PYTORCH_INDEX_NAME})"
    )


def weight_files(directory: str | Path) -> list[Path]:
    """The weight files `load_pretrained` reads from a model folder: model.safetensors, the shards of
    model.safetensors.index.json, pytorch_model.bin or the shards of pytorch_model.bin.index.json, in that order of
    preference; RepolmError naming the folder or a bad index."""
    return _find_weight_files(Path(directory))[0]


def _open_checkpoint(directory: Path) -> _Checkpoint:
    """Find the folder's weight files (HF's order of preference) and read their headers."""
    files, kind, description = _find_weight_files(directory)
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
                raise RepolmError(f"{path}: corrupt safetensors file ({one_line(error)})") from error
            for name in names:
                try:
                    tensor = file.get_tensor(plan[name])
                except (SafetensorError, OSError, ValueError, RuntimeError) as error:
                    raise RepolmError(f"{path}: cannot read tensor {plan[name]} ({one_line(error)})") from error
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
        raise RepolmError(f"invalid device {device!r} ({one_line(error)})") from error
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
