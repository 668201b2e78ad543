"""Program-aided math reasoning (PAL) as DeepSeek-Coder runs it (paper section 4.4, Table 8;
`Evaluation/PAL-Math/` of deepseek-ai/DeepSeek-Coder): the model writes `def solution(): ... return result`, the
program runs, and the value of `solution()` is compared with the answer.

Prompt: DeepSeek uses `prompts/gsm8k.md` (3-shot) for every set but MATH. That file is not in the shared benchmark
folder, so `PAL_PROMPT` rebuilds it in the same layout: the line "Let's use python to solve math problems.", then
three exemplars, each a blank line, `Question: ...`, a blank line and a ```python block holding `def solution():`
with the question as docstring, one named variable per quantity, `result = ...` and `return result`, then a blank
line and `----------------`. The three questions and programs are our own, written for this file, not the
originals. The query is `{prompt}\\n\\nQuestion: {question}\\n`. Greedy, at most 512 new tokens, stop at `Question`
or `----------------`; the completion is the first ```python block that contains `def solution():` (the text before
it in the block plus the function), or "" when there is none.

Questions and answers (DeepSeek's `utils/parser.py`): GSM8K `question`, answer after `####`; GSM-Hard `input`,
`target`; SVAMP `Body` (a full stop added when missing) + " " + `Question`, `Answer`; ASDiv `body` + " " +
`question`, `answer` without its parenthesised unit. Both sides are normalized like the harness's `strip_string`
(its rules for plain answers; its LaTeX rules, written for MATH, are left out) and compared with `math_equal`:
numerically with relative tolerance 1e-4, the reference also tried as a percentage (x/100, x*100); otherwise as
strings after bracket removal, element by element for lists and tuples, and as fractions `a/b` numerically (where
DeepSeek calls sympy; these four sets have no symbolic answers, so sympy is not needed).

Execution: the program runs in the sandbox (5 s, ToRA's executor limit that DeepSeek uses) and prints the value of
`solution()` after a marker line; DeepSeek's executor gives its `str()`, and so do we. References: GSM-Hard ships a
PAL program per problem (`code`, whose output is the target), used as is; the other sets have answers only, so
their reference is `def solution():\\n    return <answer>` - a fair check of the execution and scoring path, not of
a solution.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repolm.benchmark_folder import PAL_MATH, BenchmarkFile
from repolm.eval.records import ExecutionResult, GenerationRequest, Limits, Program
from repolm.eval.tasks.base import BASE, Problem, Record, Task, load_records, truncate_at_stops

PAL_PROMPT = '''Let's use python to solve math problems.

Question: A baker made 48 muffins. She sold 29 of them in the morning and gave 7 to her neighbours. How many muffins does she have left?

```python
def solution():
    """A baker made 48 muffins. She sold 29 of them in the morning and gave 7 to her neighbours. How many muffins does she have left?"""
    muffins_made = 48
    muffins_sold = 29
    muffins_given = 7
    muffins_left = muffins_made - muffins_sold - muffins_given
    result = muffins_left
    return result
```

----------------

Question: Tom reads 12 pages of a book on every weekday and 20 pages on each day of the weekend. How many pages does he read in one week?

```python
def solution():
    """Tom reads 12 pages of a book on every weekday and 20 pages on each day of the weekend. How many pages does he read in one week?"""
    pages_per_weekday = 12
    weekdays = 5  # Monday to Friday
    pages_per_weekend_day = 20
    weekend_days = 2
    pages_total = pages_per_weekday * weekdays + pages_per_weekend_day * weekend_days
    result = pages_total
    return result
```

----------------

Question: Sara had $50. She bought 3 notebooks for $4 each and a backpack that cost twice as much as all the notebooks together. How much money does Sara have left?

```python
def solution():
    """Sara had $50. She bought 3 notebooks for $4 each and a backpack that cost twice as much as all the notebooks together. How much money does Sara have left?"""
    money_initial = 50
    notebooks = 3
    notebook_cost = 4
    notebooks_cost = notebooks * notebook_cost
    backpack_cost = 2 * notebooks_cost
    money_spent = notebooks_cost + backpack_cost
    money_left = money_initial - money_spent
    result = money_left
    return result
```

----------------'''  # noqa: E501 (the exemplar questions are single lines, as in the prompt file)
"""The 3-shot PAL prompt, in the layout of DeepSeek's prompts/gsm8k.md, with our own exemplars."""

STOPS: tuple[str, ...] = ("Question", "----------------")
MAX_NEW_TOKENS = 512
TIMEOUT_SECONDS = 5.0
ANSWER_MARKER = "<repolm-pal-answer>"
RELATIVE_TOLERANCE = 1e-4
FRACTION_RELATIVE_TOLERANCE = 1e-3

_SOLUTION_BLOCK = re.compile(r"```python\n(.*?)def solution\(\):\n(.*?)```", re.DOTALL)
_NUMBER_PATTERN = r"(-?\d+(?:\.\d+)?)"
_FRACTION = re.compile(
    rf"^\s*{_NUMBER_PATTERN}\s*/\s*{_NUMBER_PATTERN}\s*$|^\\frac\{{{_NUMBER_PATTERN}\}}\{{{_NUMBER_PATTERN}\}}$"
)
_PROGRAM_TRAILER = f"""

import json as _repolm_json
print({ANSWER_MARKER!r} + _repolm_json.dumps(str(solution())))
"""


# -----------------------------------------------------------------------------
# answers


def normalize_answer(value: object) -> str:
    """An answer as DeepSeek's `strip_string` leaves it, for the rules that apply to plain (non-LaTeX) answers:
    outer whitespace and newlines, a final full stop, dollar and percent signs, " and " (as the original, also
    inside words), a leading "x = ", trailing zero decimals ("18.0" -> "18"), a leading "." and every space."""
    text = str(value).strip().replace("\n", "").rstrip(".")
    text = text.replace("\\$", "").replace("$", "")
    text = text.replace("\\%", "").replace("%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    text = text.replace("and", "")
    if "j" in text and "i" not in text:
        text = text.replace("j", "i")
    text = re.sub(r"(\d+)\.0+([^\d])", r"\1\2", text)
    text = re.sub(r"(\d+)\.0+$", r"\1", text)
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    parts = text.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        text = parts[1]
    return text.replace(" ", "")


def _number(text: str) -> float | None:
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return None


def _fraction(text: str) -> float | None:
    match = _FRACTION.match(text)
    if match is None:
        return None
    numerator, denominator = (float(group) for group in match.groups() if group is not None)
    return numerator / denominator if denominator else None


def math_equal(prediction: object, reference: object) -> bool:
    """DeepSeek's (ToRA's) `math_equal` without sympy: numbers within relative tolerance 1e-4 (the reference also
    as a percentage), else bracket-insensitive string equality, element-wise lists, and numeric fractions."""
    predicted_number, reference_number = _number(str(prediction)), _number(str(reference))
    if predicted_number is not None and reference_number is not None:
        candidates = (reference_number / 100, reference_number, reference_number * 100)
        return any(math.isclose(candidate, predicted_number, rel_tol=RELATIVE_TOLERANCE) for candidate in candidates)
    prediction, reference = str(prediction).strip(), str(reference).strip()
    if not prediction:
        return False
    predicted_text, reference_text = prediction, reference
    if (prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("(")) or (
        prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("[")
    ):
        predicted_text, reference_text = predicted_text.strip("[]()"), reference_text.strip("[]()")
    for bracket in "{}()":
        predicted_text, reference_text = predicted_text.replace(bracket, ""), reference_text.replace(bracket, "")
    if predicted_text == reference_text:
        return True
    both_lists = prediction.startswith("[") and prediction.endswith("]") and reference.startswith("[")
    both_lists = both_lists and reference.endswith("]")
    both_tuples = prediction.startswith("(") and prediction.endswith(")") and reference.startswith("(")
    both_tuples = both_tuples and reference.endswith(")")
    if both_lists or both_tuples:
        predicted_parts, reference_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(predicted_parts) == len(reference_parts) and all(
            math_equal(left, right) for left, right in zip(predicted_parts, reference_parts, strict=True)
        ):
            return True
    predicted_value = _fraction(prediction) if predicted_number is None else predicted_number
    reference_value = _fraction(reference) if reference_number is None else reference_number
    if predicted_value is not None and reference_value is not None:
        return math.isclose(predicted_value, reference_value, rel_tol=FRACTION_RELATIVE_TOLERANCE)
    return False


def extract_program(generation: str) -> str:
    """DeepSeek's `extract_python_block_with_solution`, after cutting the text at the stop words."""
    match = _SOLUTION_BLOCK.search(truncate_at_stops(generation, STOPS))
    if match is None:
        return ""
    return match.group(1) + "def solution():\n" + match.group(2)


def answer_from_output(stdout: str) -> str | None:
    """The `str()` of `solution()` that the program printed after the marker; None when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(ANSWER_MARKER):
            try:
                value = json.loads(line[len(ANSWER_MARKER) :])
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, str) else None
    return None


# -----------------------------------------------------------------------------
# the datasets


@dataclass(frozen=True)
class PalDataset:
    """Where one dataset keeps its question and answer."""

    file: BenchmarkFile
    title: str
    question: Callable[[Record], str]
    answer: Callable[[Record], str]
    """The raw answer text (before normalization)."""
    reference: Callable[[Record], str] | None = None
    """The dataset's own reference program, if it ships one; else the reference returns the answer."""


def _svamp_question(record: Record) -> str:
    body = record.get("Body").strip()
    if not body.endswith("."):
        body += "."
    return f"{body} {record.get('Question').strip()}"


def _float_text(record: Record, name: str) -> str:
    return str(record.get(name, (int, float)))


PAL_DATASETS: dict[str, PalDataset] = {
    "pal-gsm8k": PalDataset(
        PAL_MATH["gsm8k"],
        "GSM8K",
        lambda record: record.get("question").strip(),
        lambda record: record.get("answer").split("####")[-1].strip(),
    ),
    "pal-svamp": PalDataset(PAL_MATH["svamp"], "SVAMP", _svamp_question, lambda record: _float_text(record, "Answer")),
    "pal-asdiv": PalDataset(
        PAL_MATH["asdiv"],
        "ASDiv",
        lambda record: f"{record.get('body').strip()} {record.get('question').strip()}",
        lambda record: re.sub(r"\(.*?\)", "", record.get("answer")).strip(),
    ),
    "pal-gsm-hard": PalDataset(
        PAL_MATH["gsm-hard"],
        "GSM-Hard",
        lambda record: record.get("input").strip(),
        lambda record: _float_text(record, "target"),
        reference=lambda record: record.get("code").strip("\n") + "\n",
    ),
}


def answer_program(answer: str) -> str:
    """`def solution(): return <answer>`: the reference of a dataset that has answers but no programs."""
    literal = answer.replace(",", "") if _number(answer) is not None else repr(answer)
    return f"def solution():\n    return {literal}\n"


class PalTask(Task):
    """One PAL math dataset with the 3-shot PAL prompt."""

    modes = (BASE,)
    default_mode = BASE
    metric = "answer"

    def __init__(self, name: str) -> None:
        self.name = name
        self.dataset = PAL_DATASETS[name]
        self.description = f"{self.dataset.title} with program-aided (PAL) 3-shot prompting, accuracy"
        self.data_files = (self.dataset.file.path,)

    def load(self, benchmarks_dir: Path) -> list[Problem]:
        return load_records(benchmarks_dir, self, self._problem)

    def _problem(self, record: Record) -> Problem:
        question = self.dataset.question(record)
        answer = self.dataset.answer(record)
        reference = self.dataset.reference(record) if self.dataset.reference else answer_program(answer)
        return Problem(
            task_id=str(record.get("idx", int)),
            prompt=f"{PAL_PROMPT}\n\nQuestion: {question}\n",
            language="python",
            reference=reference,
            metadata={"question": question, "answer": normalize_answer(answer), "raw_answer": answer},
        )

    def request(self, problem: Problem, mode: str) -> GenerationRequest:
        self.check_mode(mode)
        return GenerationRequest(kind="completion", prompt=problem.prompt, stop=STOPS, max_new_tokens=MAX_NEW_TOKENS)

    def postprocess(self, problem: Problem, generation: str, mode: str) -> str:
        self.check_mode(mode)
        return extract_program(generation)

    def program(self, problem: Problem, completion: str, mode: str | None = None) -> Program | None:
        self.check_mode(mode)
        if "def solution" not in completion:
            return None
        return Program("python", completion + _PROGRAM_TRAILER, Limits(wall_seconds=TIMEOUT_SECONDS))

    def score(self, problem: Problem, completion: str, execution: ExecutionResult | None) -> dict[str, Any]:
        expected = problem.metadata["answer"]
        if execution is None:
            return {"passed": False, "answer": None, "expected": expected, "result": "no solution() program"}
        raw = answer_from_output(execution.stdout) if execution.passed else None
        if raw is None:
            return {"passed": False, "answer": None, "expected": expected}
        answer = normalize_answer(raw)
        passed = math_equal(answer, expected)
        result = "passed" if passed else f"wrong answer: {answer[:100]!r}, expected {expected!r}"
        return {"passed": passed, "answer": answer, "expected": expected, "result": result}


def pal_tasks() -> list[PalTask]:
    return [PalTask(name) for name in PAL_DATASETS]
