"""HumanEval (Python) and its MultiPL-E translations (C++, Java, JavaScript, TypeScript, PHP, C#, Bash, Go, Rust), as
the DeepSeek-Coder harness runs them (`Evaluation/HumanEval/` of deepseek-ai/DeepSeek-Coder; paper section 4.1).

Base models (`humaneval.py`, `utils/utils.py::cleanup_code`): zero-shot, the prompt `.strip()`ed, at most 500 new
tokens, the continuation cut at the stop words: Python `\\ndef`, `\\nclass`, `\\nif`, `\\n#`, `\\nprint`; the other
languages their MultiPL-E `stop_tokens`, TypeScript plus `\\nexport`, `\\nimport`, `\\nexport default`,
`\\nimport default`, `\\nconsole.log`. The harness executes `prompt + "\\n" + continuation` (the unstripped prompt)
with a 10 s limit. Our completion is the same text measured from the end of the unstripped prompt: the part of the
continuation that only repeats the whitespace `.strip()` removed is dropped; when the continuation does not start
with it, the completion is `"\\n" + continuation`, DeepSeek's join. Either way `prompt + completion` runs as the
harness's program does.

Instruct models (`eval_instruct.py`, `utils/utils.py::extract_generation_code`): one chat turn, exactly

    Please continue to complete the function. You are not allowed to modify the given code and do the completion
    only. Please return all completed function in a codeblock. Here is the given code to do completion:
    ```{language}
    {prompt.strip()}
    ```

(one line up to "completion:"), language python, cpp, java, csharp, php, typescript, javascript or bash (go and rust
for the two sets the paper does not report), at most 1024 new tokens, 3 s limit. Post-processing takes the first
```{language} block, cuts it at the `main` function (C++, Java, C#; we also cut Go's and Rust's), finds the
prompt's function signature in it and keeps the function up to its closing brace at the signature's indentation,
which the tests supply (C++, Java, C#, Bash, Rust) or which is put back (PHP, TypeScript, JavaScript, Go). We turn
that into a completion after the prompt: the function's body after the opening brace of its signature. Where the
signature is not found as written (other spacing, a renamed parameter), we look for a definition of the function
name instead and take its body; the prompt's signature stays, so a body that uses renamed parameters fails, where
DeepSeek keeps the whole block (which for C++ still compiles). With no name either, or no code block at all, the
completion is `"\\n" + output`, as DeepSeek falls back to `prompt + "\\n" + output`. For Python, a block that repeats
the given code gives what follows it; otherwise the block's definition of the function (from `def name`) is placed
after the prompt and redefines the prompt's docstring-only function, which is what DeepSeek's `func_prefix + body`
program runs.

Program assembly follows DeepSeek's `process_humaneval_test`: Python gets the import helper (numpy only when the
program names it, see `python_import_header`), C++ the helper's `#include`s that the prompt lacks, C# its `using`s,
PHP a closing `?>`. The Python data is openai/human-eval's HumanEval.jsonl.gz (task ids "HumanEval/N", tests run as
`check(entry_point)`); DeepSeek's copy (humaneval-python.jsonl) has the same prompts and solutions, and its tests
differ only for HumanEval/76 and /152 (other asserts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from repolm.benchmark_folder import HUMANEVAL, MULTIPL_E
from repolm.eval.records import GenerationRequest, Limits, Program
from repolm.eval.tasks.base import (
    BASE,
    INSTRUCT,
    Problem,
    Record,
    Task,
    first_code_block,
    human_eval_check_source,
    human_eval_problem,
    load_records,
    python_import_header,
    truncate_at_stops,
)

PYTHON_STOPS: tuple[str, ...] = ("\ndef", "\nclass", "\nif", "\n#", "\nprint")
TYPESCRIPT_EXTRA_STOPS: tuple[str, ...] = (
    "\nexport",
    "\nimport",
    "\nexport default",
    "\nimport default",
    "\nconsole.log",
)
BASE_MAX_NEW_TOKENS = 500
INSTRUCT_MAX_NEW_TOKENS = 1024
BASE_TIMEOUT_SECONDS = 10.0
INSTRUCT_TIMEOUT_SECONDS = 3.0

INSTRUCTION_TEMPLATE = (
    "Please continue to complete the function. You are not allowed to modify the given code and do the completion "
    "only. Please return all completed function in a codeblock. Here is the given code to do completion:\n"
    "```{language}\n{code}\n```"
)

CPP_INCLUDE_HELPER: tuple[str, ...] = (
    "#include<stdlib.h>",
    "#include<algorithm>",
    "#include<math.h>",
    "#include<stdio.h>",
    "#include<vector>",
    "#include<string>",
    "#include<climits>",
    "#include<cstring>",
    "#include<iostream>",
    "#include<cassert>",
)
CSHARP_USING_HELPER: tuple[str, ...] = (
    "using System.Numerics;",
    "using System.Diagnostics;",
    "using System.Collections.Generic;",
    "using System.Linq;",
    "using System.Text;",
    "using System.Security.Cryptography;",
    "using System.Collections.Generic;",
)

_FUNCTION_OPENING_BRACE = re.compile(r"\{[ \t]*(?:\n|$)")


@dataclass(frozen=True)
class LanguageSettings:
    """How one HumanEval language is prompted, extracted and run."""

    runner: str
    """The runner name (Program.language)."""
    fence: str
    """The language name of the instruct prompt's code fence and of the block taken from the answer."""
    main_marker: str | None = None
    """The block is cut where this text starts (the model's own main function)."""
    completion_closes_function: bool = False
    """True where the tests do not start with the function's closing brace, so the completion must close it."""
    extra_stops: tuple[str, ...] = ()
    """Base-mode stop words added to the problem's own `stop_tokens` (MultiPL-E records carry some; HumanEval
    Python's records none, so its stop words are all here)."""
    header_lines: tuple[str, ...] = ()
    """Lines put before the program (includes, usings), then an empty line."""
    header_skips_prompt_lines: bool = False
    """Leave out the header lines that the prompt already has."""
    opening_line: str | None = None
    """A first line the program must start with (added when the prompt does not)."""
    closing_text: str = ""
    """Text after the tests (a closing tag)."""

    def program_source(self, prompt: str, completion: str, test: str) -> str:
        """The program that runs `test` against the prompt and its completion, as DeepSeek's MultiPL-E harness
        assembles it for this language."""
        code = prompt + completion
        if self.opening_line is not None and not code.startswith(self.opening_line):
            code = self.opening_line + "\n" + code
        source = code + "\n" + test + self.closing_text
        if self.header_lines:
            header = [line for line in self.header_lines if not (self.header_skips_prompt_lines and line in prompt)]
            source = "".join(line + "\n" for line in header) + "\n" + source
        return source


PYTHON = LanguageSettings("python", "python", extra_stops=PYTHON_STOPS)
MULTIPL_E_LANGUAGES: dict[str, LanguageSettings] = {
    "cpp": LanguageSettings(
        "cpp", "cpp", main_marker="int main()", header_lines=CPP_INCLUDE_HELPER, header_skips_prompt_lines=True
    ),
    "java": LanguageSettings("java", "java", main_marker="public static void main"),
    "js": LanguageSettings("js", "javascript", completion_closes_function=True),
    "ts": LanguageSettings("ts", "typescript", completion_closes_function=True, extra_stops=TYPESCRIPT_EXTRA_STOPS),
    "php": LanguageSettings("php", "php", completion_closes_function=True, opening_line="<?php", closing_text="?>"),
    "cs": LanguageSettings("cs", "csharp", main_marker="public static void Main", header_lines=CSHARP_USING_HELPER),
    "sh": LanguageSettings("sh", "bash"),
    "go": LanguageSettings("go", "go", main_marker="func main(", completion_closes_function=True),
    "rs": LanguageSettings("rs", "rust", main_marker="fn main("),
}
"""The MultiPL-E sets under humaneval-multilingual/, by file suffix (humaneval-{suffix}.jsonl)."""


def instruction(prompt: str, settings: LanguageSettings) -> str:
    """The instruct user message of DeepSeek's `eval_instruct.py` (build_deepseekcoder_instruction)."""
    return INSTRUCTION_TEMPLATE.format(language=settings.fence, code=prompt.strip())


def rebase_continuation(prompt: str, continuation: str) -> str:
    """The completion after the unstripped `prompt` of a `continuation` generated after `prompt.strip()`."""
    stripped = prompt.strip()
    leading = prompt[: len(prompt) - len(prompt.lstrip())]
    full = leading + stripped + continuation
    if full.startswith(prompt):
        return full[len(prompt) :]
    return "\n" + continuation


def base_completion(prompt: str, generation: str, stops: tuple[str, ...]) -> str:
    """Base mode: the continuation cut at the stop words, as a completion after the unstripped prompt."""
    return rebase_continuation(prompt, truncate_at_stops(generation, stops))


def _python_instruct_completion(prompt: str, block: str) -> str:
    question = prompt.strip()
    index = block.find(question)
    if index != -1:  # the model repeated the given code: what follows it is the completion
        return rebase_continuation(prompt, block[index + len(question) :])
    definitions = [line for line in question.split("\n") if line.startswith("def ")]
    start = -1
    if definitions:
        function = definitions[-1].split("(")[0].strip()  # "def name", DeepSeek's get_function_name
        start = block.lower().find(function.lower())
    body = block[max(start, 0) :]
    return "\n" + body.rstrip() + "\n"


def _function_start(block: str, question: str) -> int:
    """Where the prompt's function starts in `block`: its signature as written, else a definition of its name."""
    lines = [line for line in question.split("\n") if line.strip()]
    signature = lines[-1].split("{")[0].strip()
    start = block.lower().find(signature.lower())
    if start != -1:
        return start
    name = re.search(r"([A-Za-z_$][\w$]*)\s*\(", signature)
    if name is None:
        return -1
    pattern = re.compile(rf"^[^\n]*?\b{re.escape(name.group(1))}\s*\([^\n]*$", re.MULTILINE)
    for match in pattern.finditer(block):
        rest = block[match.start() :]
        brace = _FUNCTION_OPENING_BRACE.search(rest)
        # a definition: an opening brace ends its line or the next one, before any ";" (a call ends with one)
        if brace is not None and ";" not in rest[: brace.start()] and rest[: brace.start()].count("\n") <= 1:
            return match.start() + len(match.group(0)) - len(match.group(0).lstrip())
    return -1


def instruct_completion(prompt: str, output: str, settings: LanguageSettings) -> str:
    """Instruct mode: DeepSeek's `extract_generation_code`, as a completion after the prompt."""
    block = first_code_block(output, settings.fence)
    if block is None:
        return "\n" + output
    if settings.main_marker and settings.main_marker in block:
        block = block[: block.index(settings.main_marker)]
    if settings.runner == "python":
        return _python_instruct_completion(prompt, block)
    start = _function_start(block, prompt.strip())
    if start == -1:
        return "\n" + block
    indent = 0
    while start - indent - 1 >= 0 and block[start - indent - 1] == " ":
        indent += 1
    end = block.rfind("\n" + " " * indent + "}")
    if end < start:
        end = len(block)
    function = block[start:end]
    brace = _FUNCTION_OPENING_BRACE.search(function)
    if brace is not None:
        body = function[brace.end() :]
    elif "{" in function:
        body = function[function.index("{") + 1 :]
    else:
        body = function
    if settings.completion_closes_function:
        body += "\n" + " " * indent + "}"
    return body + "\n"


class _HumanEvalFamily(Task):
    """What the Python set and the MultiPL-E sets share."""

    settings: LanguageSettings
    modes = (BASE, INSTRUCT)
    default_mode = BASE
    metric = "execution"

    def stops(self, problem: Problem) -> tuple[str, ...]:
        """Base-mode stop words: the problem's own, then the language's."""
        return tuple(problem.metadata.get("stop_tokens", ())) + self.settings.extra_stops

    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        mode = self.check_mode(mode)
        if mode == BASE:
            return GenerationRequest(
                kind="completion",
                prompt=problem.prompt.strip(),
                stop=self.stops(problem),
                max_new_tokens=BASE_MAX_NEW_TOKENS,
            )
        from repolm.tokenizer.chat_format import user_turn

        messages = user_turn(instruction(problem.prompt, self.settings))  # rendered by repolm.tokenizer.ChatFormat
        return GenerationRequest(kind="chat", messages=tuple(messages), max_new_tokens=INSTRUCT_MAX_NEW_TOKENS)

    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        mode = self.check_mode(mode)
        if mode == BASE:
            return base_completion(problem.prompt, generation, self.stops(problem))
        return instruct_completion(problem.prompt, generation, self.settings)

    def limits(self, mode: str | None) -> Limits:
        mode = self.check_mode(mode)
        return Limits(wall_seconds=BASE_TIMEOUT_SECONDS if mode == BASE else INSTRUCT_TIMEOUT_SECONDS)


class HumanEvalTask(_HumanEvalFamily):
    """HumanEval, Python: openai/human-eval's 164 problems with DeepSeek-Coder's prompts and import helper."""

    name = "humaneval"
    description = "HumanEval Python (164), DeepSeek-Coder harness: base zero-shot / instruct chat, pass@1"
    data_files = (HUMANEVAL.path,)
    settings = PYTHON

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        return load_records(benchmarks_dir, self, human_eval_problem)

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program:
        body = human_eval_check_source(problem, completion)
        return Program("python", python_import_header(body) + body, self.limits(mode))


class MultiplETask(_HumanEvalFamily):
    """One MultiPL-E translation of HumanEval, from DeepSeek-Coder's `Evaluation/HumanEval/data`."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.settings = MULTIPL_E_LANGUAGES[suffix]
        self.name = f"humaneval-{suffix}"
        self.description = f"HumanEval {self.settings.fence} (MultiPL-E), DeepSeek-Coder harness, pass@1"
        self.data_files = (MULTIPL_E[suffix].path,)

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        return load_records(benchmarks_dir, self, self._problem)

    def _problem(self, record: Record) -> Problem:
        """A problem from a MultiPL-E record: task_id, prompt, test and the language's stop_tokens."""
        return Problem(
            task_id=record.get("task_id"),
            prompt=record.get("prompt"),
            language=self.settings.runner,
            metadata={"test": record.get("test"), "stop_tokens": tuple(record.get_string_list("stop_tokens"))},
        )

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program:
        source = self.settings.program_source(problem.prompt, completion, problem.metadata["test"])
        return Program(self.settings.runner, source, self.limits(mode))


def multipl_e_tasks() -> list[MultiplETask]:
    """One task per MultiPL-E language."""
    return [MultiplETask(suffix) for suffix in MULTIPL_E_LANGUAGES]
