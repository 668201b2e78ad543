"""Fixtures of the evaluation tests: the shared benchmark folder (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_benchmarks() -> Path | None:
    """The benchmark folder: $REPOLM_BENCHMARKS or ../shared/benchmarks next to the repository; None if absent."""
    candidate = Path(os.environ.get("REPOLM_BENCHMARKS", REPO_ROOT.parent / "shared" / "benchmarks"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The shared benchmark folder; skips the test when it is absent."""
    found = find_benchmarks()
    if found is None:
        pytest.skip("benchmark data absent: set REPOLM_BENCHMARKS or place shared/benchmarks next to the repository")
    return found
