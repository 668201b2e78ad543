"""The files of a Hugging Face model folder: their names, and the helpers the package's modules share.

`_existing_folder` checks the folder and `_read_json` reads its JSON files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
PYTORCH_INDEX_NAME = "pytorch_model.bin.index.json"


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RepolmError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RepolmError(f"{path}: cannot read ({one_line(error)})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RepolmError(f"{path}: invalid JSON ({one_line(error)})") from error


def _existing_folder(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.exists():
        raise RepolmError(f"{path}: model folder not found")
    if not path.is_dir():
        raise RepolmError(f"{path}: not a folder (expected a Hugging Face model folder)")
    return path
