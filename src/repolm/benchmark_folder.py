"""Where the benchmark sets live: the folder laid out as `shared/benchmarks` (see its README).

Decontamination (`repolm.data`) and evaluation (`repolm.eval`) both read it. The data is never copied into the
repository: it is found at run time from an explicit option, `$REPOLM_BENCHMARKS`, or `../shared/benchmarks`
(next to the working directory, then next to the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

from repolm.errors import RepolmError


def find_benchmarks(configured: str | Path | None, option: str = "--benchmarks") -> Path | None:
    """The benchmark folder: `configured` (which must exist; `option` names it in the error), else the first of
    $REPOLM_BENCHMARKS, ../shared/benchmarks and <repository>/../shared/benchmarks that exists; None if none does."""
    if configured is not None:
        if not Path(configured).is_dir():
            raise RepolmError(f"{option}: {configured}: no such folder")
        return Path(configured).resolve()
    candidates = [os.environ.get("REPOLM_BENCHMARKS"), "../shared/benchmarks"]
    candidates.append(str(Path(__file__).resolve().parents[3] / "shared" / "benchmarks"))
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None
