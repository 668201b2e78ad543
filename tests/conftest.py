"""Session fixtures shared by all tests: a small tokenizer trained on Python stdlib files, and a tiny model folder.

The tokenizer is trained once per session (well under a second). The model folder holds a `tiny`-preset-shaped model
(vocabulary sized to that tokenizer) saved with `save_pretrained`, plus the tokenizer saved into the same folder, as
`repolm model init --preset tiny --tokenizer ...` would write it; the CLI and the inference tests load it from disk.

Threads: `--torch-threads N` (or the environment variable REPOLM_TEST_THREADS=N) sets torch's intra-op threads of the
test process (`torch.set_num_threads`) and exports OMP_NUM_THREADS=N and REPOLM_TEST_THREADS=N, so that the
subprocesses the tests start (the CLI, a training run killed with -9, evaluation runs) use the same count; the
training-loop tests run their loop with it (1 when unset, for speed on a busy machine). Unset, torch keeps its
default (one thread per core). The suite must pass with 1 and with 2 threads, under AVX-512 and AVX2 dispatch
(`ATEN_CPU_CAPABILITY=avx2`); the header of the run names the thread count and the CPU capability.

With ATEN_CPU_CAPABILITY set (and no TORCHINDUCTOR_CACHE_DIR), compiled code is cached in a folder of its own, e.g.
/tmp/torchinductor_root_avx2: torch 2.13's inductor picks its vector ISA from ATEN_CPU_CAPABILITY but leaves it out
of its cache keys, so a graph cached under AVX-512 dispatch and reused under `avx2` (or the other way round) reads
out of bounds (an index error, a segfault or an abort in the compiled-decoding tests).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import getpass  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from repolm.tokenizer import CodeTokenizer, train_tokenizer  # noqa: E402

THREADS_VARIABLE = "REPOLM_TEST_THREADS"

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


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--torch-threads N` (see the module doc)."""
    parser.addoption(
        "--torch-threads",
        type=int,
        default=None,
        help=f"torch intra-op threads for the tests and the subprocesses they start (default: ${THREADS_VARIABLE}, "
        "else torch's default)",
    )


def requested_threads(config: pytest.Config) -> int | None:
    """The thread count asked for by --torch-threads or $REPOLM_TEST_THREADS; None when neither is given."""
    value = config.getoption("--torch-threads")
    if value is None:
        text = os.environ.get(THREADS_VARIABLE, "").strip()
        if not text:
            return None
        if not text.isdigit():
            raise pytest.UsageError(f"{THREADS_VARIABLE} must be a positive integer, got {text!r}")
        value = int(text)
    if value < 1:
        raise pytest.UsageError(f"--torch-threads / {THREADS_VARIABLE} must be >= 1, got {value}")
    return value


def inductor_cache_per_capability() -> None:
    """Points torch.compile's cache at a folder of the dispatched capability when ATEN_CPU_CAPABILITY is set (see the
    module doc); exported, so the subprocesses use it too. A TORCHINDUCTOR_CACHE_DIR given by the user is kept."""
    capability = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if capability and "TORCHINDUCTOR_CACHE_DIR" not in os.environ and capability.isalnum():
        folder = Path(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{capability}")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)


def pytest_configure(config: pytest.Config) -> None:
    """Keeps compiled code apart per CPU capability; applies the requested thread count to this process and, through
    the environment, to its subprocesses."""
    inductor_cache_per_capability()
    threads = requested_threads(config)
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when a subprocess starts
    os.environ[THREADS_VARIABLE] = str(threads)  # tests/train/test_loop.py runs the training loop with it


def pytest_report_header(config: pytest.Config) -> str:
    """The settings that decide the last bits of float results: torch, its CPU kernels, the thread count."""
    import torch

    source = "torch's default" if requested_threads(config) is None else f"--torch-threads / {THREADS_VARIABLE}"
    inductor_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default")
    return (
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} intra-op threads ({source}), inductor cache {inductor_cache}"
    )


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
