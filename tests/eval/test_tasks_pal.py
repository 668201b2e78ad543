"""PAL math: the prompt, program extraction, answer normalization and math_equal, and real program runs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from repolm.eval.records import ExecutionResult, Limits
from repolm.eval.runners import execute_all
from repolm.eval.tasks import BASE, TASKS
from repolm.eval.tasks.pal import (
    PAL_PROMPT,
    answer_from_output,
    answer_program,
    extract_program,
    math_equal,
    normalize_answer,
)


def test_prompt_layout() -> None:
    assert PAL_PROMPT.startswith("Let's use python to solve math problems.\n\nQuestion: ")
    assert PAL_PROMPT.endswith("    return result\n```\n\n----------------")
    exemplars = PAL_PROMPT.split("\n\n----------------")
    assert len(exemplars) == 4 and exemplars[-1] == ""
    for exemplar in exemplars[:3]:
        match = re.fullmatch(
            r"(?:Let\'s use python to solve math problems\.)?\n\nQuestion: (.+)\n\n```python\ndef solution\(\):\n"
            r'    """(.+)"""\n(?:    .+\n)+    result = \w+\n    return result\n```',
            exemplar,
        )
        assert match is not None and match.group(1) == match.group(2)
    # each exemplar's program returns the right answer
    for question_program, answer in zip(exemplars[:3], (12, 100, 14), strict=True):
        scope: dict = {}
        exec(question_program.split("```python\n")[1].split("```")[0], scope)
        assert scope["solution"]() == answer


def test_request_and_questions(benchmarks_dir: Path) -> None:
    gsm8k = TASKS["pal-gsm8k"].load(benchmarks_dir)
    first = gsm8k[0]
    assert first.task_id == "0"
    assert first.prompt == PAL_PROMPT + "\n\nQuestion: " + first.metadata["question"] + "\n"
    assert first.metadata["question"].startswith("Janet’s ducks lay 16 eggs per day.")
    assert first.metadata["answer"] == "18"
    request = TASKS["pal-gsm8k"].request(first, BASE)
    assert (request.kind, request.prompt, request.stop, request.max_new_tokens) == (
        "completion",
        first.prompt,
        ("Question", "----------------"),
        512,
    )
    svamp = TASKS["pal-svamp"].load(benchmarks_dir)[0]
    assert svamp.metadata["question"] == (
        "There are 87 oranges and 290 bananas in Philip's collection. If the bananas are organized into 2 groups "
        "and oranges are organized into 93 groups. How big is each group of bananas?"
    )
    assert svamp.metadata["answer"] == "145"
    asdiv = TASKS["pal-asdiv"].load(benchmarks_dir)[0]
    assert asdiv.metadata["question"] == (
        "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    )
    assert (asdiv.metadata["raw_answer"], asdiv.metadata["answer"]) == ("9", "9")
    hard = TASKS["pal-gsm-hard"].load(benchmarks_dir)[0]
    assert hard.metadata["answer"] == "-9867630"
    assert hard.reference.startswith("def solution():\n")


def test_extract_program() -> None:
    generation = (
        '\n```python\nimport math\ndef solution():\n    """..."""\n    result = math.sqrt(16)\n    return result\n'
        "```\n\n----------------\n\nQuestion: another one\n```python\ndef solution():\n    return 0\n```"
    )
    assert extract_program(generation) == (
        'import math\ndef solution():\n    """..."""\n    result = math.sqrt(16)\n    return result\n'
    )
    assert extract_program("```python\nprint(1)\n```") == ""
    assert extract_program("```python\ndef solution():\n    return 1\n") == ""  # never closed
    assert extract_program("Question") == ""


def test_normalize_answer() -> None:
    assert normalize_answer(18.0) == "18"
    assert normalize_answer("$1,200.00") == "1,200"
    assert normalize_answer(" 25% \n") == "25"
    assert normalize_answer("x = 5.") == "5"
    assert normalize_answer(".5") == "0.5"
    assert normalize_answer("Mrs. Hilt") == "Mrs.Hilt"
    assert normalize_answer("3:30 p.m.") == "3:30p.m"
    assert normalize_answer("") == ""


def test_math_equal() -> None:
    assert math_equal("18", "18")
    assert math_equal("18.00001", "18")  # relative tolerance 1e-4
    assert not math_equal("18.01", "18")
    assert math_equal("1,000", "1000")
    assert math_equal("0.25", "25")  # the reference as a percentage
    assert math_equal("2500", "25")
    assert not math_equal("", "0")
    assert math_equal("Mrs.Hilt", "Mrs.Hilt")
    assert not math_equal("John", "Jim")
    assert math_equal("(1,2)", "(1,2.00001)")
    assert math_equal("[1,2]", "1,2")
    assert math_equal("3/4", "0.75")
    assert math_equal("0.75", "\\frac{3}{4}")
    assert not math_equal("3/4", "0.7")
    assert not math_equal("[1,2]", "[1,3]")


def test_answer_from_output() -> None:
    assert answer_from_output('noise\n<repolm-pal-answer>"18"\n') == "18"
    assert answer_from_output('<repolm-pal-answer>"1"\nmore\n<repolm-pal-answer>"a\\nb"') == "a\nb"
    assert answer_from_output("no marker") is None
    assert answer_from_output("<repolm-pal-answer>not json") is None


def test_answer_program_literals() -> None:
    assert answer_program("1,200") == "def solution():\n    return 1200\n"
    assert answer_program("Mrs. Hilt") == "def solution():\n    return 'Mrs. Hilt'\n"


@pytest.mark.parametrize("name", ["pal-gsm8k", "pal-gsm-hard"])
def test_reference_programs_of_the_first_twenty_pass(name: str, benchmarks_dir: Path) -> None:
    task = TASKS[name]
    problems = task.load(benchmarks_dir)[:20]
    programs = [task.program(problem, problem.reference) for problem in problems]
    assert all(program.limits.wall_seconds == 5.0 for program in programs)
    results = execute_all(programs, workers=2, progress=False)
    scores = [task.score(problem, problem.reference, result) for problem, result in zip(problems, results, strict=True)]
    assert all(score["passed"] for score in scores), scores
    assert [score["answer"] for score in scores] == [problem.metadata["answer"] for problem in problems]


def test_generated_programs_are_scored_by_their_answer(benchmarks_dir: Path) -> None:
    task = TASKS["pal-gsm8k"]
    problem = task.load(benchmarks_dir)[0]  # Janet's ducks: (16 - 3 - 4) * 2 = 18
    right = (
        "\n```python\ndef solution():\n    eggs = 16 - 3 - 4\n    print('debug', eggs)\n    result = eggs * 2.0\n"
        "    return result\n```\n\n----------------\n\nQuestion: next"
    )
    wrong = "```python\ndef solution():\n    return 16 * 2\n```"
    crash = "```python\ndef solution():\n    return 1 / 0\n```"
    endless = "```python\ndef solution():\n    while True:\n        pass\n```"
    completions = [task.postprocess(problem, generation, BASE) for generation in (right, wrong, crash, endless)]
    programs = [task.program(problem, completion) for completion in completions]
    assert programs[3].limits.wall_seconds == 5.0
    programs[3] = replace(programs[3], limits=Limits(wall_seconds=1.0))  # the same path as 5 s, 4 s sooner
    results = execute_all(programs, workers=2, progress=False)
    scores = [task.score(problem, completion, result) for completion, result in zip(completions, results, strict=True)]
    assert scores[0] == {"passed": True, "answer": "18", "expected": "18", "result": "passed"}
    assert scores[1]["passed"] is False and scores[1]["answer"] == "32"
    assert scores[1]["result"] == "wrong answer: '32', expected '18'"
    assert scores[2] == {"passed": False, "answer": None, "expected": "18"}
    assert results[3].verdict == "timeout" and scores[3]["passed"] is False
    assert task.program(problem, task.postprocess(problem, "no program at all", BASE)) is None
    assert task.score(problem, "", None)["passed"] is False
    unrun = ExecutionResult("skipped", "skipped: python missing", 0.0)
    assert task.score(problem, completions[0], unrun)["passed"] is False
