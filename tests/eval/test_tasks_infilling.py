"""HumanEval infilling: FIM requests, line exact match, and the canonical middles executed for real."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from repolm.eval.runners import execute_all
from repolm.eval.tasks import BASE, TASKS
from repolm.eval.tasks.infilling import line_exact_match

logger = logging.getLogger(__name__)


def _run_canonical(name: str, benchmarks_dir: Path) -> tuple[int, int, int]:
    """(problems, canonical middles that pass, that match exactly)."""
    task = TASKS[name]
    problems = task.load(benchmarks_dir)
    results = execute_all([task.program(problem, problem.reference) for problem in problems], workers=2, progress=False)
    scores = [task.score(problem, problem.reference, result) for problem, result in zip(problems, results, strict=True)]
    failed = [problem.task_id for problem, score in zip(problems, scores, strict=True) if not score["passed"]]
    logger.info("%s: %d problems, failures %s", name, len(problems), failed[:10])
    return len(problems), sum(score["passed"] for score in scores), sum(score["exact_match"] for score in scores)


def test_request_and_program(benchmarks_dir: Path) -> None:
    task = TASKS["infilling-single"]
    problem = task.load(benchmarks_dir)[0]
    assert problem.task_id == "SingleLineInfilling/HumanEval/0/L0"
    request = task.request(problem, BASE)
    assert (request.kind, request.prefix, request.suffix, request.stop, request.max_new_tokens) == (
        "infill",
        problem.prompt,
        problem.suffix,
        (),
        128,
    )
    assert TASKS["infilling-multi"].request(problem, BASE).max_new_tokens == 512
    assert task.postprocess(problem, "    for x in y:\n", BASE) == "    for x in y:\n"
    program = task.program(problem, problem.reference)
    assert program.source == (
        problem.prompt
        + problem.reference
        + problem.suffix
        + "\n"
        + problem.metadata["test"]
        + "\ncheck(has_close_elements)\n"
    )
    assert program.limits.wall_seconds == 3.0


def test_line_exact_match() -> None:
    reference = "        for idx2, elem2 in enumerate(numbers):\n"
    assert line_exact_match(reference, reference)
    assert line_exact_match("        for idx2, elem2 in enumerate(numbers):", reference)  # final newline
    assert line_exact_match("\n        for idx2, elem2 in enumerate(numbers):   \n\n", reference)  # blank lines, spaces
    assert not line_exact_match("    for idx2, elem2 in enumerate(numbers):\n", reference)  # indentation counts
    assert not line_exact_match("        for idx2, elem2 in enumerate(numbers) :\n", reference)
    assert not line_exact_match(reference + "            pass\n", reference)
    assert line_exact_match("a\n  b  \nc\n", "a\n  b\nc")
    assert not line_exact_match("", reference)


def test_single_line_canonical_all_pass_and_match(benchmarks_dir: Path) -> None:
    assert _run_canonical("infilling-single", benchmarks_dir) == (1033, 1033, 1033)


def test_wrong_middles_fail_and_do_not_match(benchmarks_dir: Path) -> None:
    task = TASKS["infilling-single"]
    problems = task.load(benchmarks_dir)[:30]
    middles = [problem.reference.replace(problem.reference.strip(), "pass") for problem in problems]
    results = execute_all(
        [task.program(problem, middle) for problem, middle in zip(problems, middles, strict=True)],
        workers=2,
        progress=False,
    )
    scores = [
        task.score(problem, middle, result) for problem, middle, result in zip(problems, middles, results, strict=True)
    ]
    assert not any(score["exact_match"] for score in scores)
    assert not any(score["passed"] for score in scores)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "count"), [("infilling-multi", 5815), ("infilling-span", 1640), ("infilling-span-light", 164)]
)
def test_other_sets_canonical_all_pass_and_match(name: str, count: int, benchmarks_dir: Path) -> None:
    assert _run_canonical(name, benchmarks_dir) == (count, count, count)
