"""HumanEval (Python) and the MultiPL-E sets: prompts, stops, post-processing and programs, run for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from repolm.eval.records import Program
from repolm.eval.runners import execute_all, toolchain_status
from repolm.eval.tasks import BASE, INSTRUCT, TASKS, Problem
from repolm.eval.tasks.humaneval import PYTHON_STOPS, TYPESCRIPT_EXTRA_STOPS, rebase_continuation

INSTRUCTION_START = (
    "Please continue to complete the function. You are not allowed to modify the given code and do the completion "
    "only. Please return all completed function in a codeblock. Here is the given code to do completion:\n"
)


@pytest.fixture(scope="module")
def python_problems(benchmarks_dir: Path) -> dict[str, Problem]:
    return {problem.task_id: problem for problem in TASKS["humaneval"].load(benchmarks_dir)}


def _verdicts(programs: list) -> list[str]:
    return [result.verdict for result in execute_all(programs, workers=2, progress=False)]


def test_canonical_solutions_all_pass_and_wrong_ones_all_fail(python_problems: dict[str, Problem]) -> None:
    task = TASKS["humaneval"]
    problems = list(python_problems.values())
    assert len(problems) == 164
    canonical = _verdicts([task.program(problem, problem.reference) for problem in problems])
    assert canonical.count("passed") == 164, [
        p.task_id for p, v in zip(problems, canonical, strict=True) if v != "passed"
    ]
    wrong = _verdicts([task.program(problem, "    return None\n") for problem in problems])
    assert wrong.count("passed") == 0
    syntax_error = _verdicts([task.program(problems[0], "    return (\n")])
    assert syntax_error == ["failed"]


def test_python_program_is_helper_prompt_completion_test_check(python_problems: dict[str, Problem]) -> None:
    problem = python_problems["HumanEval/0"]
    program = TASKS["humaneval"].program(problem, problem.reference)
    assert program.language == "python"
    assert program.source.startswith("import math\nimport re\nimport sys\n")
    assert "numpy" not in program.source  # no test or solution of HumanEval/0 names numpy
    assert program.source.endswith(
        problem.prompt + problem.reference + "\n" + problem.metadata["test"] + "\ncheck(has_close_elements)\n"
    )
    assert program.limits.wall_seconds == 10.0
    assert TASKS["humaneval"].program(problem, problem.reference, INSTRUCT).limits.wall_seconds == 3.0


def test_base_request_and_postprocess(python_problems: dict[str, Problem]) -> None:
    task = TASKS["humaneval"]
    problem = python_problems["HumanEval/2"]
    request = task.request(problem, BASE)
    assert request.kind == "completion"
    assert request.prompt == problem.prompt.strip()
    assert request.stop == ("\ndef", "\nclass", "\nif", "\n#", "\nprint") == PYTHON_STOPS
    assert request.max_new_tokens == 500
    generation = "\n    return number % 1.0\n\n\ndef main():\n    pass\n"
    completion = task.postprocess(problem, generation, BASE)
    assert completion == "    return number % 1.0\n\n"
    assert problem.prompt.startswith("\n\ndef truncate_number")  # .strip() also drops leading whitespace
    assert problem.prompt + completion == problem.prompt.rstrip() + "\n    return number % 1.0\n\n"
    assert task.postprocess(problem, "\n    return 1\nprint(truncate_number(2.5))", BASE) == "    return 1"
    # a continuation that does not start with the stripped whitespace is joined as DeepSeek does: prompt + "\n"
    assert rebase_continuation("def f():\n    x = 1\n", " + 2\n") == "\n + 2\n"


def test_instruct_request_is_the_exact_user_message(python_problems: dict[str, Problem]) -> None:
    problem = python_problems["HumanEval/0"]
    request = TASKS["humaneval"].request(problem, INSTRUCT)
    assert request.kind == "chat"
    assert request.max_new_tokens == 1024
    assert request.stop == ()
    assert request.messages == (
        {"role": "user", "content": INSTRUCTION_START + "```python\n" + problem.prompt.strip() + "\n```"},
    )
    assert request.messages[0]["content"].startswith(
        "Please continue to complete the function. You are not allowed to modify the given code and do the "
        "completion only. Please return all completed function in a codeblock. Here is the given code to do "
        "completion:\n```python\nfrom typing import List\n\n\ndef has_close_elements("
    )


def test_python_instruct_extraction_runs(python_problems: dict[str, Problem]) -> None:
    task = TASKS["humaneval"]
    problem = python_problems["HumanEval/2"]
    body = "    return number - int(number)\n"
    repeated = f"Here you go:\n```python\n{problem.prompt.strip()}\n{body}```\nIt drops the integer part."
    assert task.postprocess(problem, repeated, INSTRUCT) == body
    redefined = (
        "```Python\nimport math\n\ndef truncate_number(number: float) -> float:\n"
        '    """Decimal part."""\n    return helper(number)\n\ndef helper(x):\n    return x - math.floor(x)\n```'
    )
    completion = task.postprocess(problem, redefined, INSTRUCT)
    assert completion.startswith("\ndef truncate_number(number: float) -> float:\n")
    assert completion.endswith("    return x - math.floor(x)\n")
    wrong = "```python\ndef truncate_number(number: float) -> float:\n    return number\n```"
    no_block = "The answer is to subtract the integer part."
    assert task.postprocess(problem, no_block, INSTRUCT) == "\n" + no_block
    programs = [
        task.program(problem, task.postprocess(problem, answer, INSTRUCT), INSTRUCT)
        for answer in (repeated, redefined, wrong, no_block)
    ]
    assert _verdicts(programs) == ["passed", "passed", "failed", "failed"]


def test_multipl_e_stops_and_instruct_fences(benchmarks_dir: Path) -> None:
    fences = {"cpp": "cpp", "java": "java", "js": "javascript", "ts": "typescript", "php": "php"}
    fences.update({"cs": "csharp", "sh": "bash", "go": "go", "rs": "rust"})
    for suffix, fence in fences.items():
        task = TASKS[f"humaneval-{suffix}"]
        problem = task.load(benchmarks_dir)[0]
        request = task.request(problem, BASE)
        data_stops = tuple(problem.metadata["stop_tokens"])
        assert request.stop == (data_stops + TYPESCRIPT_EXTRA_STOPS if suffix == "ts" else data_stops)
        assert request.prompt == problem.prompt.strip()
        assert request.max_new_tokens == 500
        message = task.request(problem, INSTRUCT).messages[0]["content"]
        assert message == INSTRUCTION_START + f"```{fence}\n{problem.prompt.strip()}\n```"
    assert TASKS["humaneval-ts"].request(problem, BASE).stop[-5:] == (
        "\nexport",
        "\nimport",
        "\nexport default",
        "\nimport default",
        "\nconsole.log",
    )
    assert TASKS["humaneval-cpp"].load(benchmarks_dir)[0].metadata["stop_tokens"] == ("\n}",)


# Base-mode generations (what a model continues after the stripped prompt, with text past the stop words) of two
# problems per language, a wrong one, and an instruct answer for HumanEval_53_add.
STRLEN, ADD, POSITIVE = "HumanEval_23_strlen", "HumanEval_53_add", "HumanEval_30_get_positive"
MULTIPL_E_CASES: dict[str, dict[str, object]] = {
    "cpp": {
        "good": {STRLEN: "\n    return string.size();\n}\nint main() {}", ADD: "\n    return x + y;\n}\n"},
        "wrong": (ADD, "\n    return x - y;\n}\n"),
        "instruct": "Sure:\n```cpp\n#include<bits/stdc++.h>\nlong add(long x,long y) {\n    return x + y;\n}\n\n"
        "int main() {\n    assert(add(1, 2) == 3);\n}\n```\nDone.",
    },
    "java": {
        "good": {
            STRLEN: "\n        return string.length();\n    }\n    public static void main(String[] a) {}",
            ADD: "\n        return x + y;\n    }\n",
        },
        "wrong": (STRLEN, "\n        return 0l;\n    }\n"),
        "instruct": "```java\nimport java.util.*;\nclass Problem {\n    public static long add(long x, long y) {\n"
        "        long sum = x + y;\n        return sum;\n    }\n    public static void main(String[] args) {\n"
        "        System.out.println(add(2, 3));\n    }\n}\n```",
    },
    "js": {
        "good": {STRLEN: "\n  return string.length;\n}\n\nfunction foo(){}", ADD: "\n  return x + y;\n}\n"},
        "wrong": (ADD, "\n  return x * y;\n}\n"),
        "instruct": "```javascript\n//Add two numbers x and y\nfunction add(x, y){\n  if (x === 0) {\n    return y;\n"
        "  }\n  return x + y;\n}\n```",
    },
    "ts": {
        "good": {STRLEN: "\n  return string.length;\n}\nexport default strlen;", ADD: "\n  return x + y;\n}\n"},
        "wrong": (STRLEN, "\n  return string.length + 1;\n}\n"),
        "instruct": "```typescript\nfunction add(x: number, y: number): number {\n    return x + y;\n}\n\n"
        "console.log(add(2, 3));\n```",
    },
    "php": {
        # HumanEval_23 cannot pass in PHP: the prompt declares `strlen`, a PHP built-in (fatal redeclaration)
        "good": {
            POSITIVE: "\n    return array_values(array_filter($l, function ($x) { return $x > 0; }));\n}\n?>",
            ADD: "\n    return $x + $y;\n}\n",
        },
        "wrong": (ADD, "\n    return $x . $y;\n}\n"),
        "instruct": "```php\n<?php\nfunction add($x, $y) {\n    return $x + $y;\n}\n?>\n```",
    },
    "cs": {
        "good": {STRLEN: "\n        return str.Length;\n    }\n", ADD: "\n        return x + y;\n    }\n"},
        "wrong": (ADD, "\n        return x;\n    }\n"),
        "instruct": "```csharp\nusing System;\nclass Problem {\n    public static long Add(long x, long y)\n    {\n"
        "        if (x < 0) {\n            return y + x;\n        }\n        return x + y;\n    }\n\n"
        "    public static void Main(string[] args) {\n        Console.WriteLine(Add(2, 3));\n    }\n}\n```",
    },
    "sh": {
        "good": {STRLEN: "\n    echo ${#1}\n}\n", ADD: "\n    echo $(( $1 + $2 ))\n}\n"},
        "wrong": (STRLEN, "\n    echo 3\n}\n"),
        "instruct": "```bash\n#!/bin/bash\nadd() {\n    echo $(( $1 + $2 ))\n}\n```",
    },
    "go": {
        "good": {STRLEN: "\n    return len(myString)\n}\n\nfunc other() {}", ADD: "\n    return x + y\n}\n"},
        "wrong": (ADD, "\n    return y\n}\n"),
        "instruct": '```go\npackage main\n\nimport "fmt"\n\nfunc add(x int, y int) int {\n    return x + y\n}\n\n'
        "func main() {\n    fmt.Println(add(2, 3))\n}\n```",
    },
    "rs": {
        "good": {STRLEN: "\n    string.len() as isize\n}\n", ADD: "\n    x + y\n}\n"},
        "wrong": (STRLEN, "\n    0\n}\n"),
        "instruct": '```rust\nfn add(x: isize, y: isize) -> isize {\n    x + y\n}\n\nfn main() {\n    println!("{}", '
        "add(2, 3));\n}\n```",
    },
}


@pytest.mark.parametrize("suffix", list(MULTIPL_E_CASES))
def test_multipl_e_hand_written_completions(suffix: str, benchmarks_dir: Path) -> None:
    task = TASKS[f"humaneval-{suffix}"]
    problems = {problem.task_id: problem for problem in task.load(benchmarks_dir)}
    language = problems[ADD].language
    missing = toolchain_status(language)
    if missing is not None:
        pytest.skip(f"{language}: {missing}")
    cases = MULTIPL_E_CASES[suffix]
    programs, expected = [], []
    for task_id, generation in cases["good"].items():
        completion = task.postprocess(problems[task_id], generation, BASE)
        assert not completion.startswith("\n")  # the continuation's leading newline only repeats the prompt's
        programs.append(task.program(problems[task_id], completion))
        expected.append("passed")
    wrong_id, wrong_generation = cases["wrong"]
    programs.append(task.program(problems[wrong_id], task.postprocess(problems[wrong_id], wrong_generation, BASE)))
    expected.append("failed")
    instruct_completion = task.postprocess(problems[ADD], cases["instruct"], INSTRUCT)
    assert "main" not in instruct_completion.lower()
    instruct_program = task.program(problems[ADD], instruct_completion, INSTRUCT)
    assert instruct_program.limits.wall_seconds == 3.0
    programs.append(Program(instruct_program.language, instruct_program.source))  # compilers are slow here: 10 s
    expected.append("passed")
    results = execute_all(programs, workers=2, progress=False)
    assert [result.verdict for result in results] == expected, [result.detail for result in results]


def test_multipl_e_program_assembly(benchmarks_dir: Path) -> None:
    cpp = TASKS["humaneval-cpp"]
    problem = cpp.load(benchmarks_dir)[0]
    source = cpp.program(problem, "    return 0;\n").source
    assert "#include<cassert>\n" in source and "#include<stdlib.h>\n" in source  # helper lines the prompt lacks
    assert source.endswith(problem.prompt + "    return 0;\n" + "\n" + problem.metadata["test"])
    php = TASKS["humaneval-php"]
    problem = php.load(benchmarks_dir)[0]
    assert php.program(problem, "}\n").source == problem.prompt + "}\n" + "\n" + problem.metadata["test"] + "?>"
    cs = TASKS["humaneval-cs"]
    problem = cs.load(benchmarks_dir)[0]
    assert cs.program(problem, "x").source.startswith("using System.Numerics;\nusing System.Diagnostics;\n")
    go = TASKS["humaneval-go"]
    problem = go.load(benchmarks_dir)[0]
    program = go.program(problem, "x", INSTRUCT)
    assert (program.language, program.source, program.limits.wall_seconds) == (
        "go",
        problem.prompt + "x\n" + problem.metadata["test"],
        3.0,
    )


def test_program_sources_follow_each_languages_settings() -> None:
    """Programs are assembled from the language's settings alone (no data files needed): C++ adds the include helper
    lines the prompt lacks, C# every using line, PHP its opening and closing tags, the others prompt + test."""
    from repolm.eval.tasks.humaneval import CPP_INCLUDE_HELPER, CSHARP_USING_HELPER, MULTIPL_E_LANGUAGES

    def source(suffix: str, prompt: str) -> str:
        return MULTIPL_E_LANGUAGES[suffix].program_source(prompt, "BODY", "TEST")

    cpp = source("cpp", "#include<vector>\nint f() {")
    header = [line for line in CPP_INCLUDE_HELPER if line != "#include<vector>"]
    assert cpp == "\n".join(header) + "\n\n#include<vector>\nint f() {BODY\nTEST"
    assert source("cs", "class P {") == "\n".join(CSHARP_USING_HELPER) + "\n\nclass P {BODY\nTEST"
    assert source("php", "function f() {") == "<?php\nfunction f() {BODY\nTEST?>"
    assert source("php", "<?php\nfunction f() {") == "<?php\nfunction f() {BODY\nTEST?>"
    assert source("js", "function f() {") == "function f() {BODY\nTEST"
    assert MULTIPL_E_LANGUAGES["ts"].extra_stops == TYPESCRIPT_EXTRA_STOPS
    assert all(MULTIPL_E_LANGUAGES[suffix].extra_stops == () for suffix in MULTIPL_E_LANGUAGES if suffix != "ts")
