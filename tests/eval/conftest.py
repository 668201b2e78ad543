"""Fixtures of the evaluation tests: the shared benchmark folder (tests that need it skip when it is absent) and the
sandbox that the hostile-program tests run in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from repolm.eval.sandbox import ISOLATION_RLIMITS, Sandbox

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


def namespaces_work_here() -> bool:
    """Whether this machine lets a process create user, pid, network and mount namespaces (util-linux `unshare`),
    checked apart from the sandbox's own start-up probe."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    command = [unshare, "--user", "--map-root-user", "--pid", "--net", "--mount", "--fork", "true"]
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    """A sandbox for the tests that run hostile programs. Where namespaces work but the sandbox fell back to rlimits
    only (its forkserver broken, say), the whole test session stops: the hostile programs (writing outside, kill -9
    -1, fork bombs) must never run unconfined."""
    with Sandbox() as shared:
        if shared.isolation == ISOLATION_RLIMITS and namespaces_work_here():
            pytest.exit(
                "the sandbox fell back to rlimits-only isolation on a machine where namespaces work; refusing to run "
                "hostile programs unconfined (see the sandbox warning above)",
                returncode=3,
            )
        yield shared
