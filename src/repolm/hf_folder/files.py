"""The files of a Hugging Face model folder: their names, and the helpers the package's modules share.

`_existing_folder` checks the folder, `_read_json` reads its JSON files and `_one_line` puts an error on one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
PYTORCH_INDEX_NAME = "pytorch_model.bin.index.json"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


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


def _existing_folder(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.exists():
        raise RepolmError(f"{path}: model folder not found")
    if not path.is_dir():
        raise RepolmError(f"{path}: not a folder (expected a Hugging Face model folder)")
    return path
