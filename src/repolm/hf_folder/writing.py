"""Saving: write a `Transformer` as an HF `LlamaForCausalLM` folder, sharded and atomically (`save_pretrained`).

Saving goes through `repolm.folder_writer.write_folder`: a new folder appears complete or not at all; in an existing
folder every file is replaced atomically, weights first and `config.json` last, stale weight files of an earlier
save are removed, and only model files are touched (a tokenizer saved in the same folder survives).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from repolm.errors import RepolmError
from repolm.folder_writer import write_folder
from repolm.hf_folder.config import _dtype_name, config_to_hf
from repolm.hf_folder.files import (
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
)
from repolm.hf_folder.names import _hf_name, split_fused
from repolm.model import Transformer

logger = logging.getLogger(__package__)  # one logger for the package: "repolm.hf_folder"

# Weight files of a model folder: replaced (or removed as stale) by `save_pretrained`, nothing else is.
_WEIGHT_FILE = re.compile(
    r"^(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(-\d{5}-of-\d{5})?\.bin|pytorch_model\.bin\.index\.json)$"
)


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
    files: list[tuple[str, Callable[[Path], None]]] = []  # (name, writer), written in this order
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

    def write_into(staging: Path) -> None:
        for name, write in files:
            write(staging / name)

    write_folder(directory, write_into, owned=lambda name: bool(_WEIGHT_FILE.match(name)), last=(CONFIG_NAME,))
    logger.info("saved %s (%d weight file(s), %s)", directory, len(shards), _dtype_name(dtype))
