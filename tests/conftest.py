"""Session fixtures shared by all tests: a small tokenizer trained on Python stdlib files, and a tiny model folder.

The tokenizer is trained once per session (well under a second). The model folder holds a `tiny`-preset-shaped model
(vocabulary sized to that tokenizer) saved with `save_pretrained`, plus the tokenizer saved into the same folder, as
`repolm model init --preset tiny --tokenizer ...` would write it; the CLI and the inference tests load it from disk.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sysconfig  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from repolm.tokenizer import CodeTokenizer, train_tokenizer  # noqa: E402

SMALL_VOCAB_SIZE = 1000  # BPE ids 0..999, leftovers 1000..1012, special tokens 1013..1021

# Weights of the tiny model are drawn with a larger std than the preset's 0.006: the untrained model's greedy output
# then varies from token to token (good for stop-string tests) and its logits are far from ties, so batched and
# single-row runs, and runs in different processes, pick the same tokens.
TINY_INITIALIZER_RANGE = 0.1


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
    """A 1000-BPE-token tokenizer trained on 25 stdlib modules (well under a second). Do not mutate it."""
    return train_tokenizer(stdlib_files[:25], vocab_size=SMALL_VOCAB_SIZE)


@pytest.fixture(scope="session")
def saved_small_tokenizer(small_tokenizer: CodeTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_tokenizer.save(tmp_path_factory.mktemp("tokenizer") / "small")


@pytest.fixture(scope="session")
def tiny_model_dir(small_tokenizer: CodeTokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF model folder: a `tiny`-shaped model (vocab = tokenizer ids rounded up to 64) and the small tokenizer."""
    import torch

    from repolm.hf_folder import save_pretrained
    from repolm.model import build_model, padded_vocab_size, preset_config

    config = preset_config(
        "tiny",
        vocab_size=padded_vocab_size(len(small_tokenizer)),
        bos_token_id=small_tokenizer.bos_id,
        eos_token_id=small_tokenizer.eos_id,
        initializer_range=TINY_INITIALIZER_RANGE,
    )
    model = build_model(config, device="cpu", dtype=torch.float32, seed=0)
    directory = tmp_path_factory.mktemp("model") / "tiny"
    save_pretrained(model, directory)
    small_tokenizer.save(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_generator(tiny_model_dir: Path):
    """A `TextGenerator` over the tiny model folder, loaded from disk the way the CLI loads it (CPU, float32)."""
    from repolm.hf_folder import load_pretrained
    from repolm.infer.engine import Engine
    from repolm.infer.text import TextGenerator

    model = load_pretrained(tiny_model_dir, device="cpu")
    return TextGenerator(Engine(model), CodeTokenizer.load(tiny_model_dir))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `gpu` (a parametrized case included) skips without CUDA, before its fixtures run."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device (run on a GPU machine)")


@pytest.fixture(autouse=True)
def _gpu_tests_in_exact_fp32(request: pytest.FixtureRequest) -> None:
    """Tests marked `gpu` run fp32 matmuls in fp32 (no TF32), as the CPU computes them; restored afterwards."""
    if request.node.get_closest_marker("gpu") is None:
        return
    import torch

    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
