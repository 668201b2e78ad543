"""The task registry, benchmark-file reading errors and the helpers every task shares."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.eval.records import GenerationRequest, Program
from repolm.eval.tasks import BASE, INSTRUCT, TASKS, Problem, get_task
from repolm.eval.tasks.base import PYTHON_IMPORT_HELPER, python_import_header, truncate_at_stops

EXPECTED_TASKS = [
    "humaneval",
    "humaneval-cpp",
    "humaneval-java",
    "humaneval-js",
    "humaneval-ts",
    "humaneval-php",
    "humaneval-cs",
    "humaneval-sh",
    "humaneval-go",
    "humaneval-rs",
    "mbpp",
    "leetcode",
    "leetcode-cot",
    "infilling-single",
    "infilling-multi",
    "infilling-span",
    "infilling-span-light",
    "pal-gsm8k",
    "pal-svamp",
    "pal-asdiv",
    "pal-gsm-hard",
]

EXPECTED_COUNTS = {
    "humaneval": 164,
    "humaneval-cpp": 161,
    "humaneval-java": 158,
    "humaneval-js": 161,
    "humaneval-ts": 159,
    "humaneval-php": 161,
    "humaneval-cs": 158,
    "humaneval-sh": 158,
    "humaneval-go": 154,
    "humaneval-rs": 156,
    "mbpp": 500,
    "leetcode": 180,
    "leetcode-cot": 180,
    "infilling-single": 1033,
    "infilling-multi": 5815,
    "infilling-span": 1640,
    "infilling-span-light": 164,
    "pal-gsm8k": 1319,
    "pal-svamp": 1000,
    "pal-asdiv": 2215,
    "pal-gsm-hard": 1319,
}


def test_registry_names_and_attributes() -> None:
    assert list(TASKS) == EXPECTED_TASKS
    for name, task in TASKS.items():
        assert task.name == name
        assert task.default_mode in task.modes
        assert set(task.modes) <= {BASE, INSTRUCT}
        assert task.metric in ("execution", "exact_match_and_execution", "answer")
        assert task.description and "\n" not in task.description
        assert task.data_files
    assert TASKS["humaneval"].modes == (BASE, INSTRUCT)
    assert TASKS["mbpp"].modes == (BASE, INSTRUCT)
    assert TASKS["leetcode"].modes == (INSTRUCT,)
    assert TASKS["infilling-single"].modes == (BASE,)
    assert TASKS["pal-gsm8k"].modes == (BASE,)


def test_get_task_unknown_lists_known_tasks() -> None:
    assert get_task("mbpp") is TASKS["mbpp"]
    with pytest.raises(RepolmError, match="unknown task 'humaneval-x'.*humaneval, humaneval-cpp.*pal-gsm-hard"):
        get_task("humaneval-x")


def test_unknown_mode_is_a_user_error() -> None:
    task = TASKS["leetcode"]
    problem = Problem("x", "prompt", "python", metadata={"test": ""})
    with pytest.raises(RepolmError, match="--mode base: task leetcode has no such prompt mode \\(it has: instruct\\)"):
        task.request(problem, BASE)
    assert task.check_mode(None) == INSTRUCT


def test_every_task_loads_with_the_expected_counts_and_requests(benchmarks_dir: Path) -> None:
    for name, task in TASKS.items():
        problems = task.load(benchmarks_dir)
        assert len(problems) == EXPECTED_COUNTS[name], name
        assert len({problem.task_id for problem in problems}) == len(problems)
        for mode in task.modes:
            request = task.request(problems[0], mode)
            assert isinstance(request, GenerationRequest)
            assert request.max_new_tokens > 0
        if problems[0].reference is not None:
            assert isinstance(task.program(problems[0], problems[0].reference), Program)


def _copy_set(benchmarks_dir: Path, relative: str, destination: Path) -> Path:
    target = destination / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(benchmarks_dir / relative, target)
    target.chmod(0o644)
    return target


def test_missing_benchmark_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(RepolmError, match=r"benchmark file .*humaneval-multilingual/humaneval-go.jsonl not found"):
        TASKS["humaneval-go"].load(tmp_path)


def test_bad_json_line_names_file_and_line(benchmarks_dir: Path, tmp_path: Path) -> None:
    path = _copy_set(benchmarks_dir, "leetcode/20240121-Jul.jsonl", tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:50]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RepolmError, match=rf"{path}:3: not valid JSON"):
        TASKS["leetcode"].load(tmp_path)


def test_missing_field_names_file_line_and_field(benchmarks_dir: Path, tmp_path: Path) -> None:
    path = _copy_set(benchmarks_dir, "mbpp/mbpp_test.jsonl", tmp_path)
    _copy_set(benchmarks_dir, "mbpp/mbpp.jsonl", tmp_path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    del records[4]["test"]
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    with pytest.raises(RepolmError, match=rf"{path}:5: field 'test' is missing"):
        TASKS["mbpp"].load(tmp_path)


def test_mistyped_field_and_gzip_and_non_object(tmp_path: Path) -> None:
    path = tmp_path / "humaneval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"
    path.parent.mkdir(parents=True)
    record = {"task_id": "x", "prompt": 3, "suffix": "", "canonical_solution": "", "test": "", "entry_point": "f"}
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    with pytest.raises(RepolmError, match=rf"{path}:1: field 'prompt' is int, expected str"):
        TASKS["infilling-single"].load(tmp_path)
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("\n[1, 2]\n")
    with pytest.raises(RepolmError, match=rf"{path}:2: not a JSON object"):
        TASKS["infilling-single"].load(tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(RepolmError, match=rf"{path}: cannot be read"):
        TASKS["infilling-single"].load(tmp_path)


def test_duplicate_task_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pal-math" / "svamp.json"
    path.parent.mkdir(parents=True)
    record = {"Body": "Tom has 3 apples", "Question": "How many?", "Answer": 3.0, "idx": 7}
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(RepolmError, match="task id '7' occurs twice"):
        TASKS["pal-svamp"].load(tmp_path)


def test_truncate_at_stops_takes_the_earliest() -> None:
    assert truncate_at_stops("a\nprint(1)\ndef f", ("\ndef", "\nprint")) == "a"
    assert truncate_at_stops("no stop here", ("\ndef",)) == "no stop here"
    assert truncate_at_stops("\ndef at start", ("\ndef",)) == ""


def test_python_import_header_adds_numpy_only_when_named() -> None:
    without = python_import_header("def f(x):\n    return sorted(x)\n")
    assert "numpy" not in without
    assert without.splitlines() == [line for line in PYTHON_IMPORT_HELPER if "numpy" not in line]
    for source in ("x = np.array([1])", "import numpy\n", "y = numpy.zeros(3)"):
        assert python_import_header(source).splitlines() == list(PYTHON_IMPORT_HELPER)
    assert python_import_header("", ("from functools import *",)).splitlines()[-1] == "from functools import *"
