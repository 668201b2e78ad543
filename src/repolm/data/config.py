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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repolm.data.assembly import AssemblyConfig
from repolm.data.filters import FilterConfig
from repolm.data.minhash import MinHashConfig
from repolm.data.quality import QualityConfig
from repolm.data.records import KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT, KINDS
from repolm.data.sources import SourceConfig
from repolm.data.split import SplitConfig
from repolm.errors import RepolmError
from repolm.yaml_config import apply_overrides, from_mapping, read_yaml_mapping

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
        split: the held-out repositories (`repolm.data.split`): none by default.
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
    split: SplitConfig = field(default_factory=SplitConfig)
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
    mapping = read_yaml_mapping(path, "--config") if path is not None else {}
    apply_overrides(mapping, overrides or {})
    config = from_mapping(BuildConfig, mapping, where, "")
    config.validate(where)
    return config
