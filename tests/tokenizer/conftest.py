"""Shared fixtures for the tokenizer tests: one small tokenizer trained once per session on Python stdlib files."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from repolm.tokenizer import CodeTokenizer, train_tokenizer

SMALL_VOCAB_SIZE = 1000  # BPE ids 0..999, leftovers 1000..1012, special tokens 1013..1021


@pytest.fixture(scope="session")
def stdlib_files() -> list[Path]:
    """The top-level .py files of the running Python's stdlib (present on every machine), in a fixed order."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    assert len(files) > 50, "Python stdlib not found"
    return files


@pytest.fixture(scope="session")
def all_stdlib_files() -> list[Path]:
    """Every .py file of the stdlib, packages included (~30 MB), without site-packages."""
    files = []
    for root, dir_names, file_names in os.walk(sysconfig.get_paths()["stdlib"]):
        dir_names[:] = sorted(name for name in dir_names if name not in {"site-packages", "dist-packages"})
        files.extend(Path(root, name) for name in sorted(file_names) if name.endswith(".py"))
    return files


@pytest.fixture(scope="session")
def small_vocab_size() -> int:
    return SMALL_VOCAB_SIZE


@pytest.fixture(scope="session")
def small_tokenizer(stdlib_files: list[Path]) -> CodeTokenizer:
    """A 1000-BPE-token tokenizer trained on 25 stdlib modules (well under a second)."""
    return train_tokenizer(stdlib_files[:25], vocab_size=SMALL_VOCAB_SIZE)


@pytest.fixture(scope="session")
def saved_small_tokenizer(small_tokenizer: CodeTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_tokenizer.save(tmp_path_factory.mktemp("tokenizer") / "small")
