"""MBPP as the DeepSeek-Coder harness runs it (`Evaluation/MBPP/` of deepseek-ai/DeepSeek-Coder; paper section 4.1).

The test split is task ids 11-510 of `mbpp_test.jsonl` (500 problems); the three exemplars are task ids 2, 3 and 4
of `mbpp.jsonl`, their code with `\\r` removed and tabs replaced by four spaces.

Base (`mbpp.py`, `utils/dataset.py`): a 3-shot prompt; each exemplar is
`You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\\n\\n{tests}
\\n[BEGIN]\\n{code}\\n[DONE]\\n` (one string, tests joined by newlines), and the query is the same text up to
`[BEGIN]`, without a newline after it. Greedy, at most 500 new tokens, stop at `[DONE]`; the completion is the text
before `[DONE]`, stripped. DeepSeek drops exemplars when the prompt passes 4096 - 500 tokens; the longest of the 500
prompts is about a quarter of that, so no exemplar is ever dropped and the task needs no tokenizer.

Instruct (`eval_instruct.py`): one chat turn, `Please refer the given examples and generate a python function for my
problem.\\nExamples are listed as follows:\\n{examples}\\n\\nHere is my problem:\\n>>> Problem:\\n{text}\\n>>> Test
Cases:\\n{tests}\\n`, each example `- Example {i}:\\n>>> Problem:\\n{text}\\n>>> Test Cases:\\n{tests}\\n\\n>>> Code:
\\n```python\\n{code}\\n```` (joined by a blank line, texts stripped), at most 512 new tokens; the completion is the
first ```python block (the whole answer when there is none).

The program is the completion, a newline and the three asserts, with no import helper (DeepSeek's
`process_humaneval_test` returns before adding one for MBPP), run with a 10 s limit in both modes.
"""

from __future__ import annotations

from pathlib import Path

from repolm.benchmark_folder import MBPP_ALL, MBPP_TEST
from repolm.errors import RepolmError
from repolm.eval.records import GenerationRequest, Limits, Program
from repolm.eval.tasks.base import (
    BASE,
    INSTRUCT,
    Problem,
    Record,
    Task,
    benchmark_file,
    check_unique_ids,
    first_code_block,
    read_json_lines,
)

EXEMPLAR_TASK_IDS: tuple[int, ...] = (2, 3, 4)
TEST_TASK_IDS = range(11, 511)
STOP = "[DONE]"
BASE_MAX_NEW_TOKENS = 500
INSTRUCT_MAX_NEW_TOKENS = 512
TIMEOUT_SECONDS = 10.0


def clean_exemplar_code(code: str) -> str:
    """An exemplar's code as DeepSeek puts it in prompts: no carriage returns, tabs as four spaces."""
    return code.replace("\r", "").replace("\t", "    ")


def base_exemplar(text: str, tests: list[str], code: str) -> str:
    return (
        f"You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n"
        f"{chr(10).join(tests)}\n[BEGIN]\n{clean_exemplar_code(code)}\n[DONE]\n"
    )


def base_query(text: str, tests: list[str]) -> str:
    return (
        f"You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n"
        f"{chr(10).join(tests)}\n[BEGIN]"
    )


def instruct_example(text: str, tests: list[str], code: str | None = None) -> str:
    example = f">>> Problem:\n{text.strip()}\n>>> Test Cases:\n{chr(10).join(tests)}\n"
    if code:
        example += f"\n>>> Code:\n```python\n{clean_exemplar_code(code)}\n```"
    return example


def instruct_message(exemplars: list[tuple[str, list[str], str]], text: str, tests: list[str]) -> str:
    examples = [
        f"- Example {number}:\n{instruct_example(*exemplar)}" for number, exemplar in enumerate(exemplars, start=1)
    ]
    return (
        "Please refer the given examples and generate a python function for my problem.\n"
        "Examples are listed as follows:\n" + "\n\n".join(examples) + "\n\nHere is my problem:\n"
    ) + instruct_example(text, tests)


class MbppTask(Task):
    """MBPP test split (500), 3-shot base prompt / instruct chat prompt, pass@1."""

    name = "mbpp"
    modes = (BASE, INSTRUCT)
    default_mode = BASE
    metric = "execution"
    description = "MBPP test split (task ids 11-510), DeepSeek-Coder harness: base 3-shot / instruct chat, pass@1"
    data_files = (MBPP_ALL.path, MBPP_TEST.path)

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        full_path = benchmark_file(benchmarks_dir, self.data_files[0], self.name)
        test_path = benchmark_file(benchmarks_dir, self.data_files[1], self.name)
        by_id: dict[int, Record] = {}
        for record in read_json_lines(full_path):
            by_id[record.get("task_id", int)] = record
        exemplars = []
        for task_id in EXEMPLAR_TASK_IDS:
            if task_id not in by_id:
                raise RepolmError(f"{full_path}: exemplar task_id {task_id} is missing")
            record = by_id[task_id]
            exemplars.append((record.get("text"), record.get_string_list("test_list"), record.get("code")))
        base_prefix = "".join(base_exemplar(*exemplar) for exemplar in exemplars)
        problems = []
        for record in read_json_lines(test_path):
            task_id = record.get("task_id", int)
            text, tests = record.get("prompt"), record.get_string_list("test")
            problems.append(
                Problem(
                    task_id=str(task_id),
                    prompt=base_prefix + base_query(text, tests),
                    language="python",
                    reference=record.get("code"),
                    metadata={
                        "text": text,
                        "tests": tests,
                        "instruct_message": instruct_message(exemplars, text, tests),
                    },
                )
            )
        return check_unique_ids(problems, test_path)

    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        mode = self.check_mode(mode)
        if mode == BASE:
            return GenerationRequest(
                kind="completion", prompt=problem.prompt, stop=(STOP,), max_new_tokens=BASE_MAX_NEW_TOKENS
            )
        from repolm.tokenizer.chat_format import user_turn

        messages = user_turn(problem.metadata["instruct_message"])  # rendered by repolm.tokenizer.ChatFormat
        return GenerationRequest(kind="chat", messages=tuple(messages), max_new_tokens=INSTRUCT_MAX_NEW_TOKENS)

    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        mode = self.check_mode(mode)
        if mode == BASE:
            return generation.split(STOP)[0].strip()
        block = first_code_block(generation, "python")
        return generation if block is None else block

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program:
        self.check_mode(mode)
        source = completion + "\n" + "\n".join(problem.metadata["tests"]) + "\n"
        return Program("python", source, Limits(wall_seconds=TIMEOUT_SECONDS))
