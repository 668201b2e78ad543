"""A tiny recipe over real code: a few small Python standard-library packages as repositories, the tiny model
preset, a 300-id tokenizer and a few dozen training steps, so the whole recipe runs in about a minute."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("json", "html", "http", "urllib", "logging", "wsgiref", "sqlite3", "dbm", "zoneinfo", "tomllib")

PRETRAIN = """\
run_dir: runs/tiny
tokenizer: tok
model:
  preset: tiny
data:
  folder: tokens
  sequence_length: 64
optimizer:
  lr: 3.0e-3
schedule:
  warmup_steps: 5
batch:
  micro_batch_size: 4
max_steps: 40
checkpoint:
  every_steps: 4
  keep_last: 2
eval:
  every_steps: 20
  batches: 2
logging:
  every_steps: 2
  progress_bar: false
"""
LONG_CONTEXT = """\
run_dir: runs/tiny-long
tokenizer: tok
model:
  init_from: runs/tiny
  rope_theta: 100000.0
  rope_scaling_factor: 4.0
data:
  folder: tokens
  sequence_length: 256
optimizer:
  lr: 3.0e-4
schedule:
  kind: constant
  warmup_steps: 0
batch:
  micro_batch_size: 1
max_steps: 4
checkpoint:
  every_steps: 2
eval:
  every_steps: 0
logging:
  every_steps: 1
  progress_bar: false
"""
SFT = """\
run_dir: runs/tiny-sft
model:
  init_from: runs/tiny-model
data:
  format: instructions
  folder: instructions.jsonl
  sequence_length: 2048
  validation_share: 0.1
optimizer:
  lr: 1.0e-3
schedule:
  kind: cosine
  warmup_steps: 1
batch:
  micro_batch_size: 1
max_steps: 4
checkpoint:
  every_steps: 2
eval:
  every_steps: 0
logging:
  every_steps: 1
  progress_bar: false
"""


def recipe_text(corpus: Path, **sections: str) -> str:
    parts = {
        "description": '"tiny test recipe"',
        "budget_minutes": "2",
        "device": "cpu",
        "data": (
            f"\n  heldout_fraction: 0.25\n  overrides:\n    run.tasks: 1\n    decontamination.enabled: false\n"
            f"    sources: [{{name: stdlib, path: {corpus}, format: repos}}]"
        ),
        "tokenizer": "\n  vocab_size: 600",
        "pretrain": "\n  config: pretrain.yaml",
        "long_context": "\n  enabled: true\n  config: long_context.yaml",
        "sft": "\n  enabled: true\n  config: sft.yaml\n  instructions: {kinds: [docstring-to-function]}",
        "eval": (
            "\n  heldout_megabytes: 0.05\n  fim_examples: 4\n  infilling_examples: 4\n  crossfile_examples: 4\n"
            "  humaneval_problems: 0\n  mbpp_problems: 0\n  humaneval_infilling_problems: 0\n  instruct_examples: 3\n"
            "  samples: 2\n  max_seq_len: 256\n  batch_size: 4"
        ),
    }
    parts.update(sections)
    return "".join(f"{key}: {value}\n" for key, value in parts.items())


@pytest.fixture(scope="session")
def recipe_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small standard-library packages, each a repository (real code, about 1 MB)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    root = tmp_path_factory.mktemp("recipe-corpus") / "repos"
    for name in PACKAGES:
        if (stdlib / name).is_dir():
            # a repository that keeps its package folder, as the default corpus reads the stdlib (json/decoder.py)
            shutil.copytree(stdlib / name, root / name / name, ignore=shutil.ignore_patterns("__pycache__", "test*"))
    if len(list(root.iterdir())) < 6:
        pytest.skip("fewer than 6 of the standard-library packages are on this machine")
    return root


@pytest.fixture
def recipe_folder(tmp_path: Path, recipe_corpus: Path) -> Path:
    """A folder with recipe.yaml and its three training configs."""
    (tmp_path / "pretrain.yaml").write_text(PRETRAIN)
    (tmp_path / "long_context.yaml").write_text(LONG_CONTEXT)
    (tmp_path / "sft.yaml").write_text(SFT)
    (tmp_path / "recipe.yaml").write_text(recipe_text(recipe_corpus))
    return tmp_path


def run_recipe_cli(*arguments: str, timeout: float = 600, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "repolm", "recipe", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=REPO_ROOT,
    )
