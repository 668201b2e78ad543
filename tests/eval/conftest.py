"""Fixtures of the evaluation tests: the shared benchmark folder (tests that need it skip when it is absent) and the
sandbox that the hostile-program tests run in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from repolm.eval.sandbox import Sandbox, SandboxError

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
    """A sandbox for the tests that run hostile programs. It refuses, rather than weakens, where it cannot isolate
    programs: where namespaces work but the sandbox refused anyway (its forkserver broken, say), the whole test
    session stops; where this machine has no namespaces at all, the tests that need one are skipped (hostile programs
    such as `kill -9 -1` and fork bombs never run unconfined)."""
    try:
        shared = Sandbox()
    except SandboxError as error:
        if namespaces_work_here():
            pytest.exit(f"the sandbox refused to start on a machine where namespaces work: {error}", returncode=3)
        pytest.skip(f"no isolation for hostile programs on this machine: {error}")
    with shared:
        yield shared
