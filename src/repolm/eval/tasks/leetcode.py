"""The LeetCode contest benchmark of DeepSeek-Coder (paper section 4.1, Table 5; `Evaluation/LeetCode/` of
deepseek-ai/DeepSeek-Coder): 180 problems of weekly and biweekly contests, July 2023 - January 2024, 45 easy,
91 medium and 44 hard, each tested by 100 asserts on `Solution()`.

Instruct only: one chat turn holding the data's `prompt_sft` as it is (the paper prints a slightly different
template; the shipped field reads "...solve above prblem:" and the harness sends it unchanged), greedy, at most 1024
new tokens. `leetcode-cot` appends one sentence. The paper gives it as "You need first to write a step-by-step
outline and then write the code."; `vllm_inference.py` appends "\\nYou need first write a step-by-step outline and
then write the code." (no "to"). We use the paper's sentence, after the same newline, by default;
`LeetCodeTask(chain_of_thought=COT_SENTENCE_CODE)` gives the code's.

Extraction (`evaluate_leetcode.py`): an answer that starts with a newline and eight spaces continues the method, so
the prompt's code template (`class Solution: ... def f(...):`) goes before it; otherwise `[PYTHON]`/`[/PYTHON]` tags
become fences and the first ```python block is the code, or, with no fence, the text up to the first `\\ndef`,
`\\nclass`, `\\nif`, `\\n#` or `\\nprint`; when that fails the whole answer is kept. The program is DeepSeek's LeetCode
import helper (the HumanEval one plus `from functools import *`), the code and the data's tests; 10 s limit.
"""

from __future__ import annotations

import re
from pathlib import Path

from repolm.benchmark_folder import LEETCODE
from repolm.errors import RepolmError
from repolm.eval.records import GenerationRequest, Limits, Program
from repolm.eval.tasks.base import (
    INSTRUCT,
    Problem,
    Record,
    Task,
    load_records,
    python_import_header,
)

COT_SENTENCE_PAPER = "You need first to write a step-by-step outline and then write the code."
COT_SENTENCE_CODE = "You need first write a step-by-step outline and then write the code."
MAX_NEW_TOKENS = 1024
TIMEOUT_SECONDS = 10.0
DIFFICULTIES = ("easy", "medium", "hard")
EXTRA_IMPORTS = ("from functools import *",)

_PYTHON_BLOCK = re.compile(r"```python\n(.*?)\n```", re.DOTALL)
_TOP_LEVEL_STOP = re.compile(r"\ndef|\nclass|\nif|\n#|\nprint")


def extract_python_code(text: str) -> str:
    """DeepSeek's `extract_python_code`: the first ```python block, or the text up to the first top-level stop.

    Raises IndexError when a ```python fence is never closed (the caller then keeps the whole answer)."""
    text = text.replace("[PYTHON]", "```python").replace("[/PYTHON]", "```")
    if "```python" in text:
        return _PYTHON_BLOCK.findall(text)[0]
    return _TOP_LEVEL_STOP.split(text)[0]


def _problem(record: Record) -> Problem:
    """A problem from one record of the contest file (prompt_sft, test, meta.difficulty, title)."""
    meta = record.get("meta", dict)
    difficulty = meta.get("difficulty")
    if not isinstance(difficulty, str) or difficulty.lower() not in DIFFICULTIES:
        raise RepolmError(f"{record.where}: field 'meta.difficulty' must be Easy, Medium or Hard")
    return Problem(
        task_id=record.get("task_id"),
        prompt=record.get("prompt_sft"),
        language="python",
        metadata={
            "test": record.get("test"),
            "difficulty": difficulty.lower(),
            "title": meta.get("title") or record.data.get("title"),
        },
    )


class LeetCodeTask(Task):
    """LeetCode contests July 2023 - January 2024 (180), instruct prompt as shipped, pass@1 per difficulty."""

    modes = (INSTRUCT,)
    default_mode = INSTRUCT
    metric = "execution"
    data_files = (LEETCODE.path,)

    def __init__(self, chain_of_thought: str | None = None, name: str | None = None) -> None:
        self.chain_of_thought = chain_of_thought
        self.name = name or ("leetcode-cot" if chain_of_thought else "leetcode")
        cot = " with the chain-of-thought sentence" if chain_of_thought else ""
        self.description = f"LeetCode contests 2023-07..2024-01 (180), DeepSeek-Coder instruct prompt{cot}, pass@1"

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        return load_records(benchmarks_dir, self, _problem)

    def message(self, problem: Problem) -> str:
        """The user message: the data's prompt_sft, plus the chain-of-thought sentence for leetcode-cot."""
        if self.chain_of_thought:
            return problem.prompt + "\n" + self.chain_of_thought
        return problem.prompt

    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        self.check_mode(mode)
        from repolm.tokenizer.chat_format import user_turn

        messages = user_turn(self.message(problem))  # rendered by repolm.tokenizer.ChatFormat, as SFT trains
        return GenerationRequest(kind="chat", messages=tuple(messages), max_new_tokens=MAX_NEW_TOKENS)

    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        self.check_mode(mode)
        try:
            if generation.startswith("\n        "):
                return extract_python_code(problem.prompt).strip() + "\n" + generation
            return extract_python_code(generation)
        except IndexError:
            return generation

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program:
        self.check_mode(mode)
        body = completion + "\n" + problem.metadata["test"] + "\n"
        return Program("python", python_import_header(body, EXTRA_IMPORTS) + body, Limits(wall_seconds=TIMEOUT_SECONDS))

    def group(self, problem: Problem) -> str:
        return problem.metadata["difficulty"]
