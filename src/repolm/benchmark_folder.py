"""Where the benchmark sets live and which files they are: the folder laid out as `shared/benchmarks` (its README).

Decontamination (`repolm.data`) and evaluation (`repolm.eval`) both read it, through the one registry here: each
file as a `BenchmarkFile` (its path in the folder, the set it belongs to, the language of its problems). The data is
never copied into the repository: it is found at run time from an explicit option, `$REPOLM_BENCHMARKS`, or
`../shared/benchmarks` (next to the working directory, then next to the repository).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BenchmarkFile:
    """One file of the benchmark folder.

    Attributes:
        path: relative to the benchmark folder ("humaneval/HumanEval.jsonl.gz").
        benchmark: the set it belongs to ("humaneval", "humaneval-java", "mbpp", "gsm8k", ...).
        language: the language of its problems' code ("python", "java", ...); "english" for math word problems.
    """

    path: str
    benchmark: str
    language: str


HUMANEVAL = BenchmarkFile("humaneval/HumanEval.jsonl.gz", "humaneval", "python")
HUMANEVAL_DEEPSEEK = BenchmarkFile("humaneval/humaneval-python.jsonl", "humaneval", "python")  # the same 164 problems
MULTIPL_E_LANGUAGES = {
    "cpp": "cpp", "cs": "csharp", "go": "go", "java": "java", "js": "javascript", "php": "php", "rs": "rust",
    "sh": "bash", "ts": "typescript",
}  # fmt: skip
"""The MultiPL-E translations of HumanEval in DeepSeek-Coder's evaluation data: file suffix -> language."""
MULTIPL_E = {
    suffix: BenchmarkFile(f"humaneval-multilingual/humaneval-{suffix}.jsonl", f"humaneval-{suffix}", language)
    for suffix, language in MULTIPL_E_LANGUAGES.items()
}
MBPP_ALL = BenchmarkFile("mbpp/mbpp.jsonl", "mbpp", "python")  # all 974 (the 3-shot exemplars are ids 2-4)
MBPP_TEST = BenchmarkFile("mbpp/mbpp_test.jsonl", "mbpp", "python")  # the test split, ids 11-510
LEETCODE = BenchmarkFile("leetcode/20240121-Jul.jsonl", "leetcode", "python")
HUMANEVAL_INFILLING = {
    kind: BenchmarkFile(f"humaneval-infilling/HumanEval-{name}.jsonl.gz", "humaneval-infilling", "python")
    for kind, name in (("single-line", "SingleLineInfilling"), ("multi-line", "MultiLineInfilling"),
                       ("random-span", "RandomSpanInfilling"), ("random-span light", "RandomSpanInfillingLight"))
}  # fmt: skip
PAL_MATH = {
    name: BenchmarkFile(f"pal-math/{name}.json", name, "english") for name in ("gsm8k", "gsm-hard", "svamp", "asdiv")
}
BENCHMARK_FILES: tuple[BenchmarkFile, ...] = (
    HUMANEVAL, HUMANEVAL_DEEPSEEK, *MULTIPL_E.values(), MBPP_ALL, MBPP_TEST, LEETCODE, *HUMANEVAL_INFILLING.values(),
    *PAL_MATH.values(),
)  # fmt: skip
"""Every file of the benchmark folder that repolm reads."""
