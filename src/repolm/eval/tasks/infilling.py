"""HumanEval-infilling (Bavarian et al. 2022, openai/human-eval-infilling): fill the hole of a HumanEval solution.

Four sets: single-line (1033 holes of one whole line), multi-line (5815 holes of whole lines), random-span (1640
holes at any character) and random-span-light (164, one per problem). DeepSeek-Coder reports single-line infilling
with line exact match (paper section 4.2, Table 6, on SantaCoder's benchmark) and ships no script for it, so the
generation settings are ours: a FIM request (prefix = the data's `prompt`, suffix = its `suffix`; the generator
builds DeepSeek's `<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>` prompt), no stop string (the model
ends the middle with its end-of-sequence token, as SantaCoder's FIM task stops only at end of text), at most 128 new
tokens for single lines (the longest canonical line is 141 characters) and 512 otherwise (the longest canonical
middle is 859 characters). Base models only: DeepSeek's instruct models are not trained for FIM (issue #80).

Scores: "passed" is human-eval-infilling's execution check, program = prompt + middle + suffix + "\\n" + test +
"\\n" + f"check({entry_point})" with no import helper (as that harness runs it) and its 3 s limit doubled to 6 s (the
limit is for runaway programs; on a loaded two-core machine 3 s cut a few correct ones). "exact_match" is line exact
match: the middle and the canonical middle, split into lines with trailing whitespace removed from each line and
blank lines dropped at both ends, are equal. Indentation is kept (it is Python syntax); SantaCoder's task compares
the raw strings, which would count a missing final newline as a miss.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from repolm.benchmark_folder import HUMANEVAL_INFILLING
from repolm.eval.records import ExecutionResult, GenerationRequest, Limits, Program
from repolm.eval.tasks.base import BASE, Problem, Task, human_eval_check_source, human_eval_problem, load_records

TIMEOUT_SECONDS = 3.0
SINGLE_LINE_MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS = 512

INFILLING_SETS: dict[str, tuple[str, int]] = {
    "infilling-single": ("single-line", SINGLE_LINE_MAX_NEW_TOKENS),
    "infilling-multi": ("multi-line", MAX_NEW_TOKENS),
    "infilling-span": ("random-span", MAX_NEW_TOKENS),
    "infilling-span-light": ("random-span light", MAX_NEW_TOKENS),
}
"""Task name -> (what it is: its key in `repolm.benchmark_folder.HUMANEVAL_INFILLING`, maximum new tokens)."""


def normalized_lines(text: str) -> list[str]:
    """The lines of `text` with trailing whitespace removed, without blank lines at the start or the end."""
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def line_exact_match(middle: str, reference: str) -> bool:
    """Line exact match of an infilled middle against the canonical middle (see the module docstring)."""
    return normalized_lines(middle) == normalized_lines(reference)


class InfillingTask(Task):
    """One HumanEval-infilling set."""

    modes = (BASE,)
    default_mode = BASE
    metric = "exact_match_and_execution"

    def __init__(self, name: str) -> None:
        kind, max_new_tokens = INFILLING_SETS[name]
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.description = f"HumanEval {kind} infilling (FIM), line exact match and pass@1"
        self.data_files = (HUMANEVAL_INFILLING[kind].path,)

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        return load_records(benchmarks_dir, self, partial(human_eval_problem, infilling=True))

    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        self.check_mode(mode)
        return GenerationRequest(
            kind="infill", prefix=problem.prompt, suffix=problem.suffix, max_new_tokens=self.max_new_tokens
        )

    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        self.check_mode(mode)
        return generation

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program:
        self.check_mode(mode)
        return Program("python", human_eval_check_source(problem, completion), Limits(wall_seconds=TIMEOUT_SECONDS))

    def score(self, problem: Problem, completion: str, execution: ExecutionResult | None) -> dict[str, Any]:
        return {
            "passed": execution is not None and execution.passed,
            "exact_match": problem.reference is not None and line_exact_match(completion, problem.reference),
        }


def infilling_tasks() -> list[InfillingTask]:
    return [InfillingTask(name) for name in INFILLING_SETS]
