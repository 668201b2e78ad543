"""MBPP: the exact 3-shot and instruct prompts, post-processing, and the reference codes run for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from repolm.eval.runners import execute_all
from repolm.eval.tasks import BASE, INSTRUCT, TASKS, Problem

EXEMPLAR_2 = (
    "You are an expert Python programmer, and here is your task: Write a function to find the similar elements from "
    "the given two tuple lists. Your code should pass these tests:\n\n"
    "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
    "[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\n"
    "  res = tuple(set(test_tup1) & set(test_tup2))\n"
    "  return (res) \n"
    "[DONE]\n"
)
EXEMPLAR_3 = (
    "You are an expert Python programmer, and here is your task: Write a python function to identify non-prime "
    "numbers. Your code should pass these tests:\n\n"
    "assert is_not_prime(2) == False\n"
    "assert is_not_prime(10) == True\n"
    "assert is_not_prime(35) == True\n"
    "[BEGIN]\n"
    "import math\n"
    "def is_not_prime(n):\n"
    "    result = False\n"
    "    for i in range(2,int(math.sqrt(n)) + 1):\n"
    "        if n % i == 0:\n"
    "            result = True\n"
    "    return result\n"
    "[DONE]\n"
)
EXEMPLAR_4 = (
    "You are an expert Python programmer, and here is your task: Write a function to find the largest integers from "
    "a given list of numbers using heap queue algorithm. Your code should pass these tests:\n\n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n"
    "[BEGIN]\n"
    "import heapq as hq\n"
    "def heap_queue_largest(nums,n):\n"
    "  largest_nums = hq.nlargest(n, nums)\n"
    "  return largest_nums\n"
    "[DONE]\n"
)
QUERY_11 = (
    "You are an expert Python programmer, and here is your task: Write a python function to remove first and last "
    "occurrence of a given character from the string. Your code should pass these tests:\n\n"
    'assert remove_Occ("hello","l") == "heo"\n'
    'assert remove_Occ("abcda","a") == "bcd"\n'
    'assert remove_Occ("PHP","P") == "H"\n'
    "[BEGIN]"
)

KNOWN_BROKEN = {
    # the asserts use `root`, `root1`, `root2`, which only mbpp.jsonl's `test_setup_code` builds; DeepSeek's
    # program (completion + asserts, from mbpp_test.jsonl) leaves them out, so no completion can pass
    "367": "NameError: name 'root' is not defined",
}
SLOW = {
    # the reference sums amicable numbers below 9999 by trial division: about 5.4 s on an idle core, of the 10 s
    # limit; on a loaded machine it may time out
    "123",
}


@pytest.fixture(scope="module")
def problems(benchmarks_dir: Path) -> list[Problem]:
    return TASKS["mbpp"].load(benchmarks_dir)


def test_base_prompt_of_task_11_is_exact(problems: list[Problem]) -> None:
    problem = problems[0]
    assert problem.task_id == "11"
    assert problem.prompt == EXEMPLAR_2 + EXEMPLAR_3 + EXEMPLAR_4 + QUERY_11
    request = TASKS["mbpp"].request(problem, BASE)
    assert (request.kind, request.prompt, request.stop, request.max_new_tokens) == (
        "completion",
        problem.prompt,
        ("[DONE]",),
        500,
    )
    assert [problem.task_id for problem in problems] == [str(task_id) for task_id in range(11, 511)]


def test_instruct_message_of_task_11_is_exact(problems: list[Problem]) -> None:
    message = (
        "Please refer the given examples and generate a python function for my problem.\n"
        "Examples are listed as follows:\n"
        "- Example 1:\n>>> Problem:\nWrite a function to find the similar elements from the given two tuple lists.\n"
        ">>> Test Cases:\n"
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
        "\n>>> Code:\n```python\n"
        "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n  return (res) \n"
        "```\n\n"
        "- Example 2:\n>>> Problem:\nWrite a python function to identify non-prime numbers.\n>>> Test Cases:\n"
        "assert is_not_prime(2) == False\nassert is_not_prime(10) == True\nassert is_not_prime(35) == True\n"
        "\n>>> Code:\n```python\n"
        "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,int(math.sqrt(n)) + 1):\n"
        "        if n % i == 0:\n            result = True\n    return result\n"
        "```\n\n"
        "- Example 3:\n>>> Problem:\nWrite a function to find the largest integers from a given list of numbers "
        "using heap queue algorithm.\n>>> Test Cases:\n"
        "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n"
        "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n"
        "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n"
        "\n>>> Code:\n```python\n"
        "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, nums)\n"
        "  return largest_nums\n"
        "```\n\n"
        "Here is my problem:\n"
        ">>> Problem:\nWrite a python function to remove first and last occurrence of a given character from the "
        "string.\n>>> Test Cases:\n"
        'assert remove_Occ("hello","l") == "heo"\nassert remove_Occ("abcda","a") == "bcd"\n'
        'assert remove_Occ("PHP","P") == "H"\n'
    )
    request = TASKS["mbpp"].request(problems[0], INSTRUCT)
    assert request.kind == "chat"
    assert request.max_new_tokens == 512
    assert request.messages == ({"role": "user", "content": message},)


def test_postprocess_both_modes(problems: list[Problem]) -> None:
    task = TASKS["mbpp"]
    problem = problems[0]
    generation = "\ndef remove_Occ(s, ch):\n    return s\n[DONE]\nYou are an expert"
    assert task.postprocess(problem, generation, BASE) == "def remove_Occ(s, ch):\n    return s"
    assert task.postprocess(problem, "  x = 1  \n", BASE) == "x = 1"
    answer = "Here:\n```python\ndef remove_Occ(s, ch):\n    return s\n```\nand\n```python\nprint(1)\n```"
    assert task.postprocess(problem, answer, INSTRUCT) == "def remove_Occ(s, ch):\n    return s\n"
    assert task.postprocess(problem, "no code", INSTRUCT) == "no code"


def test_reference_codes_pass(problems: list[Problem]) -> None:
    task = TASKS["mbpp"]
    program = task.program(problems[0], problems[0].reference)
    assert program.source == problems[0].reference + "\n" + "\n".join(problems[0].metadata["tests"]) + "\n"
    assert "import math" not in program.source  # MBPP programs get no import helper
    assert program.limits.wall_seconds == 10.0
    results = execute_all([task.program(problem, problem.reference) for problem in problems], workers=2, progress=False)
    failures = {problem.task_id: result for problem, result in zip(problems, results, strict=True) if not result.passed}
    for task_id, why in KNOWN_BROKEN.items():
        assert task_id in failures and why in failures[task_id].detail
    unexpected = {
        task_id: result.detail
        for task_id, result in failures.items()
        if task_id not in KNOWN_BROKEN and not (task_id in SLOW and result.verdict == "timeout")
    }
    assert unexpected == {}
    assert sum(result.passed for result in results) >= 495  # >= 99% of 500
    wrong = [task.program(problem, "def unrelated():\n    pass\n") for problem in problems[:20]]
    assert not any(result.passed for result in execute_all(wrong, workers=2, progress=False))
