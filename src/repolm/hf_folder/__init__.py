"""Hugging Face model folders: read and write `LlamaForCausalLM` checkpoints.

This package's job is to move a repolm `Transformer` in and out of the folder layout that
`transformers.AutoModelForCausalLM.from_pretrained` reads and `save_pretrained` writes:

- `config`: `config.json` <-> `ModelConfig` (`config_from_hf`, `config_to_hf`, `read_config`);
- `names`: repolm tensor names <-> HF tensor names, fused matrices split and joined (`split_fused`,
  `join_fused`, `to_hf_state_dict`);
- `reading`: weights from safetensors or `pytorch_model.bin` files, checked and read into a model
  (`load_pretrained`);
- `writing`: a model written as a folder, sharded and atomically (`save_pretrained`);
- `files`: the folder's file names, and the helpers the modules above share.

Import from `repolm.hf_folder` itself; its modules are the parts it is built from.
"""

from repolm.hf_folder.config import config_from_hf, config_to_hf, read_config
from repolm.hf_folder.files import (
    CONFIG_NAME,
    GENERATION_CONFIG_NAME,
    PYTORCH_INDEX_NAME,
    PYTORCH_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_NAME,
)
from repolm.hf_folder.names import join_fused, split_fused, to_hf_state_dict
from repolm.hf_folder.reading import load_pretrained, weight_files
from repolm.hf_folder.writing import save_pretrained

__all__ = [
    "CONFIG_NAME",
    "GENERATION_CONFIG_NAME",
    "PYTORCH_INDEX_NAME",
    "PYTORCH_NAME",
    "SAFETENSORS_INDEX_NAME",
    "SAFETENSORS_NAME",
    "config_from_hf",
    "config_to_hf",
    "join_fused",
    "load_pretrained",
    "read_config",
    "save_pretrained",
    "split_fused",
    "to_hf_state_dict",
    "weight_files",
]
