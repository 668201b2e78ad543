"""The configuration of a data build: sources, mixture, and the settings of every stage, read from YAML.

A build config names its sources (or leaves them out for the local default corpus), the shares of the
pre-training mixture by kind (paper section 2: 87% code, 10% code-related text, 3% other text), the settings of
each stage (rule filters, syntax screening, assembly, MinHash, decontamination) and how to run (tasks, workers,
executor). Every section maps onto a stage's dataclass, so a YAML key is the dataclass field of the same name.

Reading is strict: an unknown key, a value of the wrong type or an invalid value is a `RepolmError` whose message
names the file and the key path ("build.yaml: filters.max_line_length: expected an integer, got 'long'"). The
config is checked whole before anything runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repolm.data.assembly import AssemblyConfig
from repolm.data.filters import FilterConfig
from repolm.data.minhash import MinHashConfig
from repolm.data.quality import QualityConfig
from repolm.data.records import KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT, KINDS
from repolm.data.sources import SourceConfig
from repolm.errors import RepolmError

EXECUTORS = ("local", "ray", "slurm")


@dataclass
class DecontaminationConfig:
    """Decontamination against benchmark sets (paper section 2.4).

    Attributes:
        benchmarks: folder of benchmark sets (layout of `shared/benchmarks`); None = the first of $REPOLM_BENCHMARKS
            and `../shared/benchmarks` next to the working directory that exists.
        enabled: False skips decontamination (the summary says so).
    """

    benchmarks: str | None = None
    enabled: bool = True


@dataclass
class RunConfig:
    """How the build runs.

    Attributes:
        executor: "local" (processes on this machine, datatrove's LocalPipelineExecutor), "ray" (a Ray cluster;
            a local one is started when none is running) or "slurm" (datatrove's SlurmPipelineExecutor).
        tasks: shards of every per-shard stage; the output is the same for any number of tasks.
        workers: tasks run at once (default: the number of CPU cores).
        slurm: keyword arguments for `SlurmPipelineExecutor` (partition, time, ...), only with executor "slurm".
    """

    executor: str = "local"
    tasks: int = 4
    workers: int = 0
    slurm: dict = field(default_factory=dict)


@dataclass
class BuildConfig:
    """A whole data build.

    Attributes:
        sources: where repositories come from; empty = the default corpus found on this machine.
        mixture: share of each kind in the pre-training mixture; the shares are written with the output for the
            training loader, which samples kinds by them (the build itself keeps every sample).
        filters, quality, assembly, minhash, decontamination: the stages' settings.
        run: how to run.
        seed: seeds the tie-breaking of the dependency order (per repository).
    """

    sources: list[SourceConfig] = field(default_factory=list)
    mixture: dict[str, float] = field(
        default_factory=lambda: {KIND_CODE: 0.87, KIND_CODE_TEXT: 0.10, KIND_OTHER_TEXT: 0.03}
    )
    filters: FilterConfig = field(default_factory=FilterConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0

    def validate(self, where: str = "config") -> None:
        """Checks values that types alone do not: kinds, shares, executor, counts."""
        for kind, share in self.mixture.items():
            if kind not in KINDS:
                raise RepolmError(f"{where}: mixture.{kind}: unknown kind (known: {', '.join(KINDS)})")
            if share < 0:
                raise RepolmError(f"{where}: mixture.{kind}: a share must be >= 0, got {share}")
        if sum(self.mixture.values()) <= 0:
            raise RepolmError(f"{where}: mixture: the shares sum to 0")
        if self.run.executor not in EXECUTORS:
            raise RepolmError(f"{where}: run.executor: {self.run.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.run.executor == "slurm" and not {"partition", "time"} <= set(self.run.slurm):
            raise RepolmError(f"{where}: run.slurm: executor slurm needs at least partition and time")
        if self.run.tasks < 1:
            raise RepolmError(f"{where}: run.tasks: must be >= 1, got {self.run.tasks}")
        if self.run.workers < 0:
            raise RepolmError(f"{where}: run.workers: must be >= 0 (0 = one per CPU core), got {self.run.workers}")
        names = [source.name for source in self.sources]
        for name in names:
            if names.count(name) > 1:
                raise RepolmError(f"{where}: sources: the name {name!r} is used twice")
        for source in self.sources:
            if source.kind not in KINDS:
                raise RepolmError(f"{where}: sources.{source.name}.kind: {source.kind!r} is not one of {KINDS}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (for `build.json` and for comparing a resumed build with the first run)."""
        return dataclasses.asdict(self)


def load_build_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Reads a YAML build config (None: all defaults), applies `overrides` (dotted keys), validates it."""
    where = str(path) if path is not None else "config"
    mapping: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RepolmError(f"--config {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RepolmError(f"--config {path}: cannot read it ({error})") from None
        try:
            mapping = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise RepolmError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
        if not isinstance(mapping, dict):
            raise RepolmError(f"{path}: the top level must be a mapping of sections, got {type(mapping).__name__}")
    for dotted, value in (overrides or {}).items():
        target = mapping
        *parents, last = dotted.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    config = from_mapping(BuildConfig, mapping, where, "")
    config.validate(where)
    return config


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
