"""LeetCode contests: the shipped instruct prompt, the CoT sentence, DeepSeek's extraction, groups, real tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from repolm.eval.runners import execute_all
from repolm.eval.tasks import INSTRUCT, TASKS, LeetCodeTask, Problem
from repolm.eval.tasks.leetcode import COT_SENTENCE_CODE

GOOD = """class Solution:
    def minimumPushes(self, word: str) -> int:
        # eight keys: the first eight letters cost one push, the next eight two, ...
        return sum(index // 8 + 1 for index in range(len(word)))
"""
WRONG = """class Solution:
    def minimumPushes(self, word: str) -> int:
        return len(word)
"""


@pytest.fixture(scope="module")
def problems(benchmarks_dir: Path) -> list[Problem]:
    return TASKS["leetcode"].load(benchmarks_dir)


def test_difficulty_groups(problems: list[Problem]) -> None:
    counts = Counter(TASKS["leetcode"].group(problem) for problem in problems)
    assert counts == {"easy": 45, "medium": 91, "hard": 44}


def test_prompts_as_shipped_and_with_the_paper_cot_sentence(problems: list[Problem]) -> None:
    problem = problems[0]
    assert problem.task_id == "weekly-contest-381-minimum-number-of-pushes-to-type-word-i"
    assert problem.prompt.endswith(
        "Please complete the code below to solve above prblem:\n```python\nclass Solution:\n"
        "    def minimumPushes(self, word: str) -> int:\n        \n```"
    )
    plain = TASKS["leetcode"].request(problem, INSTRUCT)
    assert plain.kind == "chat" and plain.max_new_tokens == 1024
    assert plain.messages == ({"role": "user", "content": problem.prompt},)
    cot = TASKS["leetcode-cot"].request(problem, INSTRUCT)
    assert cot.messages[0]["content"] == (
        problem.prompt + "\nYou need first to write a step-by-step outline and then write the code."
    )
    as_coded = LeetCodeTask(chain_of_thought=COT_SENTENCE_CODE, name="leetcode-cot-code").request(problem, INSTRUCT)
    assert as_coded.messages[0]["content"].endswith(
        "\nYou need first write a step-by-step outline and then write the code."
    )


def test_extraction_rules(problems: list[Problem]) -> None:
    task = TASKS["leetcode"]
    problem = problems[0]
    continued = "\n        return len(word)\n"
    assert task.postprocess(problem, continued, INSTRUCT) == (
        "class Solution:\n    def minimumPushes(self, word: str) -> int:" + "\n" + continued  # DeepSeek's join
    )
    fenced = "Outline: ...\n```python\nclass Solution:\n    pass\n```\nthen\n```python\nx = 2\n```"
    assert task.postprocess(problem, fenced, INSTRUCT) == "class Solution:\n    pass"
    tagged = "[PYTHON]\nclass Solution:\n    pass\n[/PYTHON]"
    assert task.postprocess(problem, tagged, INSTRUCT) == "class Solution:\n    pass"
    bare = "class Solution:\n    pass\nif __name__ == '__main__':\n    print(1)"
    assert task.postprocess(problem, bare, INSTRUCT) == "class Solution:\n    pass"
    unclosed = "```python\nclass Solution:\n    pass"
    assert task.postprocess(problem, unclosed, INSTRUCT) == unclosed


def test_program_runs_the_hundred_asserts(problems: list[Problem]) -> None:
    task = TASKS["leetcode"]
    problem = problems[0]
    assert task.group(problem) == "easy"
    assert problem.metadata["test"].count("assert my_solution.minimumPushes") == 100
    program = task.program(problem, GOOD)
    assert program.limits.wall_seconds == 10.0
    assert "from functools import *\n" in program.source
    assert program.source.endswith(GOOD + "\n" + problem.metadata["test"] + "\n")
    answer = f"Step 1: count letters.\n```python\n{GOOD}```"
    completion = task.postprocess(problem, answer, INSTRUCT)
    results = execute_all([task.program(problem, completion), task.program(problem, WRONG)], workers=2, progress=False)
    assert [result.verdict for result in results] == ["passed", "failed"]
    assert task.score(problem, completion, results[0]) == {"passed": True}
    assert task.score(problem, WRONG, results[1]) == {"passed": False}
