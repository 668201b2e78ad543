"""Decontamination against the shared benchmark sets: planted benchmark text is found, ordinary code is kept.

Tests that read the real sets skip when the benchmarks folder is absent (REPOLM_BENCHMARKS, else
<repo>/../shared/benchmarks). The rules themselves are also tested on small hand-made strings.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from repolm.data.decontamination import (
    MAX_FAMILIES,
    BenchmarkIndex,
    BenchmarkString,
    is_informative,
    read_benchmark_strings,
    screen_contamination,
    words,
)
from repolm.data.records import CodeFile
from repolm.errors import RepolmError

logger = logging.getLogger(__name__)


def benchmarks_folder() -> Path:
    configured = os.environ.get("REPOLM_BENCHMARKS")
    return Path(configured) if configured else Path(__file__).parents[2] / ".." / "shared" / "benchmarks"


@pytest.fixture(scope="module")
def folder() -> Path:
    path = benchmarks_folder()
    if not (path / "humaneval").is_dir():
        pytest.skip(f"benchmark data not found at {path} (set REPOLM_BENCHMARKS)")
    return path


@pytest.fixture(scope="module")
def index(folder: Path) -> BenchmarkIndex:
    started = time.perf_counter()
    built = BenchmarkIndex.from_folder(folder)
    logger.info("index build: %.2f s, %d sequences", time.perf_counter() - started, built.kept_count)
    return built


def benchmark_group(benchmark: str) -> str:
    if benchmark.startswith("humaneval"):
        return "humaneval"
    return "math" if benchmark in ("gsm8k", "gsm-hard", "svamp", "asdiv") else benchmark


def rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_words_are_lowercased_ascii_runs():
    assert words("def hasClose(x_1, y):  # Ünïcode’s 3.5") == [
        "def",
        "hasclose",
        "x_1",
        "y",
        "n",
        "code",
        "s",
        "3",
        "5",
    ]
    assert not is_informative("return") and not is_informative("42abc") and not is_informative("ab")
    assert is_informative("threshold")


def test_every_set_is_read(folder: Path, index: BenchmarkIndex):
    strings, notes = read_benchmark_strings(folder)
    assert notes == []
    assert index.item_counts["humaneval"] == 164
    assert index.item_counts["mbpp"] == 974  # mbpp_test.jsonl is a subset of mbpp.jsonl
    assert index.item_counts["leetcode"] == 180 and index.item_counts["gsm8k"] == 1319
    assert {name for name in index.item_counts if name.startswith("humaneval-")} == {
        f"humaneval-{language}" for language in ("cpp", "cs", "go", "java", "js", "php", "rs", "sh", "ts")
    }
    assert {"svamp", "asdiv", "gsm-hard"} <= set(index.item_counts)
    fields = {string.field for string in strings if string.benchmark == "humaneval"}
    assert fields == {"prompt", "canonical_solution", "declaration+canonical_solution"}


def test_humaneval_solution_with_prompt_is_found(folder: Path, index: BenchmarkIndex):
    problem = rows(folder / "humaneval" / "HumanEval.jsonl.gz")[10]
    text = (
        "import os\n\n\ndef helper():\n    return os.getcwd()\n\n" + problem["prompt"] + problem["canonical_solution"]
    )
    found = index.find_contamination(text)
    assert found is not None and found.benchmark == "humaneval" and found.item_id == problem["task_id"]
    assert found.match == "10-gram" and len(found.ngram.split()) == 10


def test_solution_alone_and_reformatted_is_found(folder: Path, index: BenchmarkIndex):
    problem = rows(folder / "humaneval" / "HumanEval.jsonl.gz")[0]
    solution = problem["canonical_solution"]
    reformatted = "\t".join(solution.split()).upper().replace("(", " ( ")  # whitespace, case and spacing changed
    for text in (solution, reformatted):
        found = index.find_contamination("x = 1\n" + text)
        assert found is not None and (found.item_id, found.field) == ("HumanEval/0", "canonical_solution")


def test_mbpp_solution_and_problem_text_are_found(folder: Path, index: BenchmarkIndex):
    problem = next(row for row in rows(folder / "mbpp" / "mbpp.jsonl") if row["task_id"] == 2)
    found = index.find_contamination("# utilities\n" + problem["code"])
    assert found is not None and (found.benchmark, found.item_id, found.field) == ("mbpp", "MBPP/2", "code")
    docstring = f'def solve(cost):\n    """{problem["text"]}\n    """\n    return None\n'
    found = index.find_contamination(docstring)
    assert found is not None and (found.item_id, found.field) == ("MBPP/2", "text")


def test_gsm8k_question_in_comments_is_found(folder: Path, index: BenchmarkIndex):
    question = rows(folder / "pal-math" / "gsm8k.json")[5]["question"]
    commented = "\n".join("// " + question[start : start + 40] for start in range(0, len(question), 40))
    found = index.find_contamination(f"{commented}\nint main() {{ return 0; }}\n")
    assert found is not None and (found.benchmark, found.item_id) == ("gsm8k", "gsm8k/5")


def test_short_string_is_matched_only_whole(index: BenchmarkIndex):
    found = index.find_contamination("# Write a function to merge two dictionaries.\ndef merge(a, b): ...\n")
    assert found is not None and (found.item_id, found.match) == ("MBPP/263", "exact")
    assert index.find_contamination("# Write a function to merge two sorted dictionaries.\n") is None
    assert index.find_contamination("# merge two dictionaries\n") is None


def test_boilerplate_is_not_contamination(index: BenchmarkIndex):
    boilerplate = [
        "for i in range(len(arr)):\n    for j in range(i + 1, len(arr)):\n        if arr[i] > arr[j]:\n"
        "            pass\n",
        'if __name__ == "__main__":\n    main()\n',
        "digits = '0123456789abcdef'\nvalues = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n",
        "import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\n"
        "import java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\nclass Problem {\n}\n",
        "using System;\nusing System.Numerics;\nusing System.Diagnostics;\nusing System.Collections.Generic;\n"
        "using System.Linq;\nusing System.Text;\nusing System.Security.Cryptography;\nclass Problem {\n}\n",
        "def add(x, y):\n    return x + y\n",
        "def __init__(self, a, b):\n    self.a = a\n    self.b = b\n",
    ]
    for text in boilerplate:
        assert index.find_contamination(text) is None, text


def test_stdlib_modules_are_kept(index: BenchmarkIndex):
    modules = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    if len(modules) < 50:
        pytest.skip("Python standard library not found")
    flagged = [(path.name, index.find_contamination(path.read_text("utf-8", "replace"))) for path in modules]
    flagged = [(name, found) for name, found in flagged if found is not None]
    assert len(flagged) <= len(modules) // 100, flagged


def test_infilling_tasks_are_caught_as_humaneval(folder: Path, index: BenchmarkIndex):
    tasks = rows(folder / "humaneval-infilling" / "HumanEval-RandomSpanInfillingLight.jsonl.gz")
    caught = same_problem = 0
    for task in tasks:
        found = index.find_contamination(task["prompt"] + task["canonical_solution"] + task["suffix"])
        if found is not None:
            assert found.benchmark == "humaneval"
            caught += 1
            same_problem += found.item_id == re.search(r"HumanEval/\d+", task["task_id"]).group(0)
    assert caught >= len(tasks) - 5  # e.g. HumanEval/47 (median), /53 (add), /55 (fib): too generic to index
    assert same_problem >= caught - 5  # HumanEval/37's docstring opens like /33's, which is credited


def test_almost_every_item_finds_itself(folder: Path, index: BenchmarkIndex):
    strings, _ = read_benchmark_strings(folder)
    texts: dict[tuple[str, str], list[str]] = {}
    for string in strings:
        texts.setdefault((string.benchmark, string.item_id), []).append(string.text)
    missed = []
    for (benchmark, item_id), parts in texts.items():
        found = index.find_contamination("\n\n".join(parts))
        if found is None:
            missed.append(item_id)
        else:  # a translation or variant may be credited to the set it was made from (SVAMP reuses ASDiv)
            assert benchmark_group(found.benchmark) == benchmark_group(benchmark), (item_id, found)
    assert len(missed) <= len(texts) // 200, missed  # measured: 30 of 8,597


def test_screen_contamination_gives_an_exclusion(folder: Path, index: BenchmarkIndex):
    problem = rows(folder / "humaneval" / "HumanEval.jsonl.gz")[3]
    dirty = CodeFile("pkg/below_zero.py", problem["prompt"] + problem["canonical_solution"], "Python")
    exclusion = screen_contamination("user/repo", dirty, index)
    assert exclusion is not None
    assert (exclusion.repo, exclusion.path, exclusion.stage, exclusion.reason) == (
        "user/repo",
        "pkg/below_zero.py",
        "decontamination",
        "humaneval",
    )
    assert exclusion.detail.startswith("HumanEval/3 ")
    assert screen_contamination("user/repo", CodeFile("a.py", "print('hello world')\n", "Python"), index) is None


def test_rules_on_hand_made_strings():
    sentence = "the quick brown fox jumps over the lazy sleeping dog tonight"
    template = "template words shared across many different problems always appear here verbatim"
    strings = [BenchmarkString("toy", "toy/1", "prompt", sentence, "toy/1")]
    strings += [BenchmarkString("toy", f"toy/{n}", "prompt", template, f"toy/{n}") for n in range(2, 3 + MAX_FAMILIES)]
    strings += [
        BenchmarkString("toy", "toy/9", "code", "return x + y", "toy/9"),  # no informative word
        BenchmarkString("toy", "toy/10", "text", "compute the harmonic mean quickly", "toy/10"),  # 5 words: exact
        BenchmarkString("toy-copy", "copy/1", "prompt", sentence, "toy/1"),  # same family: not template text
    ]
    index = BenchmarkIndex(strings)
    assert index.item_counts == {"toy": 2 + MAX_FAMILIES + 2, "toy-copy": 1}
    found = index.find_contamination("Note: THE quick-brown fox jumps over the lazy, sleeping dog tonight!")
    assert found is not None and (found.benchmark, found.item_id) == ("toy", "toy/1")
    assert index.find_contamination(template) is None  # in MAX_FAMILIES + 1 problems
    assert index.find_contamination("return x + y") is None
    found = index.find_contamination("# compute the harmonic mean quickly\n")
    assert found is not None and found.match == "exact"
    assert index.find_contamination("compute the harmonic mean") is None


def test_from_folder_errors_and_partial_folders(tmp_path: Path):
    with pytest.raises(RepolmError, match="does not exist"):
        BenchmarkIndex.from_folder(tmp_path / "absent")
    with pytest.raises(RepolmError, match="holds none"):
        BenchmarkIndex.from_folder(tmp_path)
    (tmp_path / "mbpp").mkdir()
    row = {"task_id": 7, "text": "Write a function to find the longest palindromic subsequence in the given string."}
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text(json.dumps(row | {"code": "pass"}) + "\n")
    index = BenchmarkIndex.from_folder(tmp_path)
    assert index.item_counts == {"mbpp": 1}
    assert any(note.startswith("humaneval/HumanEval.jsonl.gz: absent") for note in index.notes)
    found = index.find_contamination("/* write a function to find the longest palindromic subsequence in the */")
    assert found is not None and found.item_id == "MBPP/7"


@pytest.mark.slow
def test_false_positive_rate_on_stdlib_and_jdk(index: BenchmarkIndex, all_stdlib_files: list[Path]):
    texts = [(str(path), path.read_text("utf-8", "replace")) for path in all_stdlib_files]
    jdk = sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip"))
    jdk = [path for path in jdk if path.is_file()]
    if jdk:
        with zipfile.ZipFile(jdk[-1]) as archive:
            texts += [(name, archive.read(name).decode("utf-8", "replace")) for name in archive.namelist()[:20000]]
            texts = [(name, text) for name, text in texts if name.endswith((".py", ".java"))]
    started = time.perf_counter()
    flagged = [(name, found) for name, text in texts if (found := index.find_contamination(text)) is not None]
    seconds = time.perf_counter() - started
    megabytes = sum(len(text) for _, text in texts) / 1e6
    logger.info("scanned %.1f MB in %.1f s (%.1f MB/s); flagged %s", megabytes, seconds, megabytes / seconds, flagged)
    assert len(flagged) <= len(texts) // 200, flagged
