"""The machine a benchmark ran on, in one line: CPU model, cores, Python and the versions of the packages compared.

Imported by the benchmark scripts (`python benchmarks/bench_*.py` puts this folder on the path)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path


def machine_description(packages: Sequence[str] = ()) -> str:
    """e.g. "AMD EPYC 9B14, 2 cores; Python 3.11.7; numpy 2.3.1, bm25s 0.3.16"."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    description = f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}"
    if packages:
        description += "; " + ", ".join(f"{name} {version(name)}" for name in packages)
    return description
