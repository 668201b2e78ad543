"""`config.json` <-> `ModelConfig`: the config of an HF `LlamaForCausalLM` folder, mapped both ways.

`config_from_hf` reads both the transformers-4 spelling (`rope_theta` + `rope_scaling`) and the transformers-5
one (`rope_parameters`); `config_to_hf` writes the transformers-4 spelling; `read_config` reads a folder's
`config.json`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch

from repolm.errors import RepolmError, one_line
from repolm.hf_folder.files import CONFIG_NAME, _existing_folder, _read_json
from repolm.model import ModelConfig

logger = logging.getLogger(__package__)  # one logger for the package: "repolm.hf_folder"

_ARCHITECTURE = "LlamaForCausalLM"
_MODEL_TYPE = "llama"


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
        raise RepolmError(f"{source}: {one_line(error)}") from error


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


def read_config(directory: str | os.PathLike) -> ModelConfig:
    """The `ModelConfig` of the HF folder `directory` (its `config.json`)."""
    directory = _existing_folder(directory)
    path = directory / CONFIG_NAME
    return config_from_hf(_read_json(path), str(path))
