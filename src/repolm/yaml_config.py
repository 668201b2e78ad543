"""Dataclass configs from YAML: strict reading that names the file and the key of every mistake.

Each stage keeps its settings in dataclasses (documented fields, defaults, `__post_init__` checks); a YAML file
maps onto them key for key. `from_mapping` builds a dataclass from a mapping, recursively, checking that every key
is a field and every value has the field's type (bool, int, float, str, optional, list, tuple, dict, nested
dataclass); `apply_overrides` sets dotted keys ("run.tasks" -> 8) from the command line first. Errors are
`RepolmError`s such as "build.yaml: filters.max_line_length: expected an integer, got 'long'".
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from repolm.errors import RepolmError


def read_yaml_mapping(path: str | Path, option: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file; `option` names where the path came from (e.g. "--config")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RepolmError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RepolmError(f"{option} {path}: cannot read it ({error})") from None
    try:
        mapping = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise RepolmError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(mapping, dict):
        raise RepolmError(f"{path}: the top level must be a mapping of sections, got {type(mapping).__name__}")
    return mapping


def apply_overrides(mapping: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Sets dotted keys of `overrides` ("run.tasks": 8) in the nested `mapping`, creating sections as needed."""
    for dotted, value in overrides.items():
        target = mapping
        *parents, last = dotted.split(".")
        for parent in parents:
            child = target.setdefault(parent, {})
            if not isinstance(child, dict):
                raise RepolmError(f"override {dotted}: {parent} is not a section")
            target = child
        target[last] = value


def from_mapping(cls: type, mapping: Any, where: str, key_path: str) -> Any:
    """Builds dataclass `cls` from a YAML mapping, checking keys and value types; errors name `where` and the key."""
    if not isinstance(mapping, dict):
        raise RepolmError(f"{where}: {key_path or 'the top level'}: expected a mapping, got {_shown(mapping)}")
    hints = typing.get_type_hints(cls)
    fields = {item.name: item for item in dataclasses.fields(cls) if item.init}
    values = {}
    for key, value in mapping.items():
        name = f"{key_path}.{key}" if key_path else str(key)
        if key not in fields:
            raise RepolmError(f"{where}: {name}: unknown key (known: {', '.join(sorted(fields))})")
        values[key] = _convert(hints[key], value, where, name)
    try:
        return cls(**values)
    except (ValueError, TypeError, RepolmError) as error:
        # a dataclass's own __post_init__ checks: name the section
        raise RepolmError(f"{where}: {key_path or 'config'}: {' '.join(str(error).split())}") from None


def _convert(hint: Any, value: Any, where: str, name: str) -> Any:
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [argument for argument in arguments if argument is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, where, name)
            except RepolmError as error:
                errors.append(error)
        raise errors[0]
    if origin is typing.Literal:
        if value not in arguments:
            choices = ", ".join(map(repr, arguments))
            raise RepolmError(f"{where}: {name}: expected one of {choices}, got {_shown(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where, name)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RepolmError(f"{where}: {name}: expected true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RepolmError(f"{where}: {name}: expected an integer, got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RepolmError(f"{where}: {name}: expected a number, got {_shown(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise RepolmError(f"{where}: {name}: expected a string, got {_shown(value)}")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RepolmError(f"{where}: {name}: expected a list, got {_shown(value)}")
        item_hint = arguments[0] if arguments else Any
        items = []
        for index, item in enumerate(value):
            item_name = f"{name}[{index}]"
            if dataclasses.is_dataclass(item_hint) and isinstance(item, dict) and "name" in item:
                item_name = f"{name}.{item['name']}"
            items.append(_convert(item_hint, item, where, item_name))
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RepolmError(f"{where}: {name}: expected a mapping, got {_shown(value)}")
        if len(arguments) == 2:
            return {
                _convert(arguments[0], key, where, name): _convert(arguments[1], item, where, f"{name}.{key}")
                for key, item in value.items()
            }
        return dict(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise RepolmError(f"{where}: {name}: unsupported value {_shown(value)} for type {hint}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
