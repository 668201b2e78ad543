"""Runners for every language, for real: a passing, a failing, a non-compiling and an endless program each (one
parallel batch), MultiPL-E programs from the benchmark data, the "skipped, never failed" rule for missing
toolchains, and execute_all's order, parallelism and error handling.

A language whose toolchain is missing here is skipped with the package to install (`make toolchains`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repolm.eval.records import ExecutionResult, Limits, Program
from repolm.eval.runners import EARLY_EXIT, LANGUAGES, execute, execute_all, find_toolchain, toolchain_status
from repolm.eval.sandbox import Sandbox

ONE_SECOND = Limits(wall_seconds=1.0)
LIMITS = Limits(wall_seconds=20.0)

# language -> (passing, failing, not compiling, endless); None where the language has no compile step
CASES: dict[str, tuple[str, str, str | None, str]] = {
    "python": (
        "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n",
        "def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n",
        None,
        "while True:\n    pass\n",
    ),
    "cpp": (
        "#include <cassert>\nlong add(long a, long b) {\n    return a + b;\n}\n"
        "int main() {\n    assert(add(2, 3) == 5);\n}\n",
        "#include <cassert>\nlong add(long a, long b) {\n    return a - b;\n}\n"
        "int main() {\n    assert(add(2, 3) == 5);\n}\n",
        "int main() {\n    return undeclared;\n}\n",
        "int main() {\n    volatile long i = 0;\n    while (true) { i++; }\n}\n",
    ),
    "java": (
        "class Problem {\n    public static void main(String[] args) {\n        assert(2 + 3 == 5);\n    }\n}\n",
        "class Problem {\n    public static void main(String[] args) {\n        assert(2 - 3 == 5);\n    }\n}\n",
        "class Problem {\n    public static void main(String[] args) {\n        int x = ;\n    }\n}\n",
        "class Problem {\n    public static void main(String[] args) {\n        while (true) {}\n    }\n}\n",
    ),
    "js": (
        "const assert = require('node:assert');\nassert.deepEqual(2 + 3, 5);\n",
        "const assert = require('node:assert');\nassert.deepEqual(2 - 3, 5);\n",
        None,
        "while (true) {}\n",
    ),
    "ts": (
        "declare var require: any;\nconst assert = require('node:assert');\nassert.deepEqual(2 + 3, 5);\n",
        "declare var require: any;\nconst assert = require('node:assert');\nassert.deepEqual(2 - 3, 5);\n",
        "let x: number = 'not a number';\n",
        "while (true) {}\n",
    ),
    "php": (
        "<?php\nif (2 + 3 !== 5) { throw new Exception('Test failed!'); }\n",
        "<?php\nif (2 - 3 !== 5) { throw new Exception('Test failed!'); }\n",
        None,
        "<?php\nwhile (true) {}\n",
    ),
    "sh": (
        "#!/bin/bash\nset -e\n[[ $((2 + 3)) = 5 ]]\n",
        "#!/bin/bash\nset -e\n[[ $((2 - 3)) = 5 ]]\n",
        None,
        "#!/bin/bash\nwhile true; do :; done\n",
    ),
    "go": (
        'package add_test\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n'
        '    if 2+3 != 5 {\n        t.Errorf("expected 5")\n    }\n}\n',
        'package add_test\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n'
        '    if 2-3 != 5 {\n        t.Errorf("expected 5, got %d", 2-3)\n    }\n}\n',
        'package add_test\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n    y :=\n}\n',
        'package add_test\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n    for {\n    }\n}\n',
    ),
    "rs": (
        "fn main() {\n    assert_eq!(2 + 3, 5);\n}\n",
        "fn main() {\n    assert_eq!(2 - 3, 5);\n}\n",
        'fn main() {\n    let x: i32 = "text";\n}\n',
        "fn main() {\n    let mut i: u64 = 0;\n    loop {\n        i = i.wrapping_add(1);\n    }\n}\n",
    ),
    "cs": (
        "using System.Diagnostics;\nclass Problem {\n    public static void Main(string[] args) {\n"
        "        Debug.Assert(2 + 3 == 5);\n    }\n}\n",
        "using System.Diagnostics;\nclass Problem {\n    public static void Main(string[] args) {\n"
        "        Debug.Assert(2 - 3 == 5);\n    }\n}\n",
        "class Problem {\n    public static void Main(string[] args) {\n        int x = ;\n    }\n}\n",
        "class Problem {\n    public static void Main(string[] args) {\n        while (true) {}\n    }\n}\n",
    ),
}
KINDS = ("passing", "failing", "not compiling", "endless")
EXPECTED_FAILURE = {
    "python": "AssertionError",
    "cpp": "Assertion",
    "java": "java.lang.AssertionError",
    "js": "AssertionError",
    "ts": "AssertionError",
    "php": "Test failed!",
    "sh": "exit 1",
    "go": "expected 5, got -1",
    "rs": "assertion",
    "cs": "Debug.Assert failed",
}

# MultiPL-E / DeepSeek-Coder programs: the data's prompt + a correct completion (cut before the stop string, as a
# model's would be) + "\n" + the data's tests. PHP's strlen clashes with a builtin, so PHP takes another problem.
MULTIPL_E_COMPLETIONS = {
    "cpp": ("HumanEval_23_strlen", "    return string.size();"),
    "cs": ("HumanEval_23_strlen", "        return str.Length;"),
    "java": ("HumanEval_23_strlen", "        return string.length();"),
    "js": ("HumanEval_23_strlen", "  return string.length;\n}"),
    "ts": ("HumanEval_23_strlen", "  return string.length;\n}"),
    "php": ("HumanEval_2_truncate_number", "  return $number - floor($number);\n}"),
    "rs": ("HumanEval_23_strlen", "    string.len() as isize"),
    "sh": ("HumanEval_23_strlen", "    echo ${#1}"),
    "go": ("HumanEval_23_strlen", "    return len(myString)\n}\n"),
}


FORGED = "0123456789abcdef0123456789abcdef"
"""A guess at the run's secret (32 hex digits, as the sandbox makes them)."""

# language -> (name, program): each exits with status 0 *before* a failing test, so an exit code alone says
# "passed"; every one must be judged "failed" (the early exits each language offers, a top-level return where the
# language allows one, and a forged secret printed and written on the report descriptor)
EARLY_EXITS: dict[str, list[tuple[str, str]]] = {
    "python": [
        ("os._exit", "import os\nos._exit(0)\nassert 1 == 2\n"),
        ("sys.exit", "import sys\nsys.exit(0)\nassert 1 == 2\n"),
        ("exit()", "exit()\nassert 1 == 2\n"),
        ("atexit", "import atexit, os\natexit.register(os._exit, 0)\nassert 1 == 2\n"),
        (
            "main-guard",
            "import sys\ndef main():\n    return 0\nif __name__ == '__main__':\n    sys.exit(main())\nassert 1 == 2\n",
        ),
        (
            "forged",
            f"import os\nprint({FORGED!r})\nfor fd in range(3, 200):\n    try:\n"
            f"        os.write(fd, b{FORGED!r})\n    except OSError:\n        pass\nos._exit(0)\nassert 1 == 2\n",
        ),
    ],
    "cpp": [
        ("exit", "#include <cassert>\n#include <cstdlib>\nint main() {\n    exit(0);\n    assert(1 == 2);\n}\n"),
        ("_exit", "#include <cassert>\n#include <unistd.h>\nint main() {\n    _exit(0);\n    assert(1 == 2);\n}\n"),
        (
            "std::quick_exit",
            "#include <cassert>\n#include <cstdlib>\nint main() {\n    std::quick_exit(0);\n    assert(1 == 2);\n}\n",
        ),
        (
            "forged",
            f"#include <cassert>\n#include <cstdio>\n#include <unistd.h>\nint main() {{\n"
            f'    puts("{FORGED}");\n    write(4, "{FORGED}", 32);\n    _exit(0);\n    assert(1 == 2);\n}}\n',
        ),
    ],
    "java": [
        (
            "System.exit",
            "class Problem {\n    public static void main(String[] args) {\n        if (args.length == 0) "
            "System.exit(0);\n        assert(1 == 2);\n    }\n}\n",
        ),
        (
            "halt",
            "class Problem {\n    public static void main(String[] args) {\n        if (args.length == 0) "
            "Runtime.getRuntime().halt(0);\n        assert(1 == 2);\n    }\n}\n",
        ),
        (
            "forged",
            "class Problem {\n    public static void main(String[] args) {\n"
            f'        System.out.println("{FORGED}");\n        if (args.length == 0) System.exit(0);\n'
            "        assert(1 == 2);\n    }\n}\n",
        ),
    ],
    "js": [
        ("process.exit", "const assert = require('node:assert');\nprocess.exit(0);\nassert.deepEqual(1, 2);\n"),
        ("top-level return", "const assert = require('node:assert');\nreturn;\nassert.deepEqual(1, 2);\n"),
        (
            "forged",
            f"const fs = require('fs');\nconsole.log('{FORGED}');\nfs.writeSync(4, '{FORGED}');\n"
            "process.exit(0);\nrequire('node:assert').deepEqual(1, 2);\n",
        ),
    ],
    "ts": [
        (
            "process.exit",
            "declare var require: any;\ndeclare var process: any;\n"
            "const assert = require('node:assert');\nprocess.exit(0);\nassert.deepEqual(1, 2);\n",
        ),
    ],
    "php": [
        ("exit", "<?php\nexit(0);\nif (1 !== 2) { throw new Exception('Test failed!'); }\n"),
        ("top-level return", "<?php\nreturn;\nif (1 !== 2) { throw new Exception('Test failed!'); }\n"),
        (
            "forged",
            f"<?php\necho '{FORGED}';\nfile_put_contents('php://fd/4', '{FORGED}');\nexit(0);\n"
            "if (1 !== 2) { throw new Exception('Test failed!'); }\n",
        ),
    ],
    "sh": [
        ("exit", "#!/bin/bash\nexit 0\n[[ 1 = 2 ]] || exit 1\n"),
        ("exit in a function", "#!/bin/bash\nrun_test() {\n    exit 0\n}\nrun_test\n[[ 1 = 2 ]] || exit 1\n"),
        ("forged", f"#!/bin/bash\necho {FORGED}\nprintf '%s' {FORGED} >&4\nexit 0\n[[ 1 = 2 ]] || exit 1\n"),
    ],
    "go": [
        (
            "os.Exit",
            'package add_test\n\nimport (\n    "os"\n    "testing"\n)\n\nfunc TestAdd(t *testing.T) {\n'
            '    os.Exit(0)\n    t.Errorf("expected 5")\n}\n',
        ),
        (
            "forged",
            'package add_test\n\nimport (\n    "fmt"\n    "os"\n    "testing"\n)\n\n'
            f'func TestAdd(t *testing.T) {{\n    fmt.Println("{FORGED}")\n'
            f'    os.NewFile(4, "r").Write([]byte("{FORGED}"))\n'
            '    os.Exit(0)\n    t.Errorf("expected 5")\n}\n',
        ),
    ],
    "rs": [
        (
            "process::exit",
            "fn main() {\n    std::process::exit(0);\n    #[allow(unreachable_code)]\n    { assert_eq!(1, 2); }\n}\n",
        ),
        ("forged", f'fn main() {{\n    println!("{FORGED}");\n    std::process::exit(0);\n}}\n'),
    ],
    "cs": [
        (
            "Environment.Exit",
            "using System;\nusing System.Diagnostics;\nclass Problem {\n"
            "    public static void Main(string[] args) {\n        Environment.Exit(0);\n"
            "        Debug.Assert(1 == 2);\n    }\n}\n",
        ),
        (
            "forged",
            f"using System;\nclass Problem {{\n    public static void Main(string[] args) {{\n"
            f'        Console.WriteLine("{FORGED}");\n        Environment.Exit(0);\n    }}\n}}\n',
        ),
    ],
}
EARLY_EXIT_CASES = [(language, name) for language, cases in EARLY_EXITS.items() for name, _source in cases]


def skip_if_missing(language: str) -> None:
    reason = toolchain_status(language)
    if reason is not None:
        pytest.skip(f"{reason}; install it with `make toolchains`")


@pytest.fixture(scope="module")
def batch(sandbox: Sandbox) -> dict[tuple[str, str], ExecutionResult]:
    """Every case of every available language, executed once in parallel."""
    keys, programs = [], []
    for language, sources in CASES.items():
        if toolchain_status(language) is not None:
            continue
        for kind, source in zip(KINDS, sources, strict=True):
            if source is not None:
                keys.append((language, kind))
                programs.append(Program(language, source, ONE_SECOND if kind == "endless" else LIMITS))
    return dict(zip(keys, execute_all(programs, sandbox, workers=2, progress=False), strict=True))


def test_every_language_has_cases() -> None:
    assert set(CASES) == set(LANGUAGES) and set(EXPECTED_FAILURE) == set(LANGUAGES) == set(EARLY_EXITS)


@pytest.fixture(scope="module")
def early_exits(sandbox: Sandbox) -> dict[tuple[str, str], ExecutionResult]:
    """Every early-exit program of every available language, executed once in parallel."""
    keys = [(language, name) for language, name in EARLY_EXIT_CASES if toolchain_status(language) is None]
    sources = {(language, name): source for language, cases in EARLY_EXITS.items() for name, source in cases}
    programs = [Program(language, sources[(language, name)], LIMITS) for language, name in keys]
    return dict(zip(keys, execute_all(programs, sandbox, workers=2, progress=False), strict=True))


@pytest.mark.parametrize(
    ("language", "name"), EARLY_EXIT_CASES, ids=[f"{language}-{name}" for language, name in EARLY_EXIT_CASES]
)
def test_exiting_0_before_the_tests_end_fails(language: str, name: str, early_exits: dict) -> None:
    """Status 0 without the end-of-tests report is a failure: early exits, top-level returns, forged secrets."""
    skip_if_missing(language)
    result = early_exits[(language, name)]
    assert result.verdict == "failed", result
    if name != "top-level return" or language != "php":
        assert result.detail == EARLY_EXIT, result


@pytest.mark.parametrize("language", LANGUAGES)
def test_passing_program_passes(language: str, batch: dict) -> None:
    skip_if_missing(language)
    result = batch[(language, "passing")]
    assert (result.verdict, result.detail) == ("passed", "passed"), result


@pytest.mark.parametrize("language", LANGUAGES)
def test_failing_program_fails_with_its_error(language: str, batch: dict) -> None:
    skip_if_missing(language)
    result = batch[(language, "failing")]
    assert result.verdict == "failed", result
    assert result.detail.startswith("failed: ") and EXPECTED_FAILURE[language] in result.detail, result.detail


@pytest.mark.parametrize("language", [language for language in LANGUAGES if CASES[language][2] is not None])
def test_compile_error_fails_with_the_compiler_message(language: str, batch: dict) -> None:
    skip_if_missing(language)
    result = batch[(language, "not compiling")]
    assert result.verdict == "failed", result
    assert result.detail.startswith("compile error: ") and len(result.detail) > len("compile error: ") + 10
    assert "\n" not in result.detail


@pytest.mark.parametrize("language", LANGUAGES)
def test_endless_program_times_out(language: str, batch: dict) -> None:
    skip_if_missing(language)
    result = batch[(language, "endless")]
    assert (result.verdict, result.detail) == ("timeout", "timed out after 1 s"), result


@pytest.mark.parametrize("language", sorted(MULTIPL_E_COMPLETIONS))
def test_multipl_e_program_from_the_benchmark_data_passes(
    language: str, sandbox: Sandbox, benchmarks_dir: Path
) -> None:
    skip_if_missing(language)
    name, completion = MULTIPL_E_COMPLETIONS[language]
    data = benchmarks_dir / "humaneval-multilingual" / f"humaneval-{language}.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    problem = next(row for row in rows if row["name"] == name)
    program = Program(language, problem["prompt"] + completion + "\n" + problem["tests"], LIMITS)
    result = execute(program, sandbox)
    assert (result.verdict, result.detail) == ("passed", "passed"), result
    broken = Program(
        language,
        problem["prompt"] + completion.replace("len", "lne").replace("ize", "zie") + "\n" + problem["tests"],
        LIMITS,
    )
    if broken.source != program.source:
        assert execute(broken, sandbox).verdict == "failed"


@pytest.mark.parametrize("language", [language for language in LANGUAGES if language != "python"])
def test_missing_toolchain_is_skipped_never_failed(language: str, sandbox: Sandbox, tmp_path: Path) -> None:
    empty_search_path = str(tmp_path)  # a real, empty folder: nothing to find in it
    reason = toolchain_status(language, search_path=empty_search_path)
    assert reason is not None and "apt-get install" in reason
    result = execute(Program(language, CASES[language][0]), sandbox, search_path=empty_search_path)
    assert result.verdict == "skipped" and result.detail == f"skipped: {reason}"
    results = execute_all([Program(language, CASES[language][0])], sandbox, progress=False, search_path="")
    assert results[0].verdict == "skipped"


def test_python_needs_no_search_path(sandbox: Sandbox) -> None:
    assert toolchain_status("python", search_path="") is None
    assert execute(Program("python", CASES["python"][0]), sandbox, search_path="").verdict == "passed"


def test_python_programs_see_the_harness_packages(sandbox: Sandbox) -> None:
    program = Program("python", "import numpy\nassert numpy.array([1, 2]).sum() == 3\n")
    assert execute(program, sandbox).verdict == "passed"


def test_toolchain_lookup_names_what_it_found() -> None:
    skip_if_missing("java")
    toolchain = find_toolchain("java")
    assert Path(toolchain.programs["compiler"]).name == "javac" and toolchain.details["javatuples"].endswith(".jar")


def test_unknown_language_is_an_error_not_a_crash(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown language"):
        toolchain_status("cobol")
    result = execute_all([Program("cobol", "DISPLAY 'HI'.")], sandbox, progress=False)
    assert result[0].verdict == "error" and "unknown language" in result[0].detail


def test_execute_all_keeps_order_and_runs_in_parallel(sandbox: Sandbox) -> None:
    delays = [0.6, 0.1, 0.4, 0.2, 0.5, 0.3]
    programs = [
        Program("python", f"import time\ntime.sleep({delay})\nprint({index})\nassert {index} % 2 == 0\n", LIMITS)
        for index, delay in enumerate(delays)
    ]
    started = time.monotonic()
    results = execute_all(programs, sandbox, workers=6, progress=False)
    elapsed = time.monotonic() - started
    assert [result.stdout for result in results] == [f"{index}\n" for index in range(len(delays))]
    assert [result.verdict for result in results] == ["passed", "failed"] * 3
    assert elapsed < sum(delays) - 0.5  # not one after another


def test_execute_all_never_raises_for_a_broken_sandbox() -> None:
    broken = Sandbox()
    broken.close()
    results = execute_all([Program("python", "pass\n"), Program("sh", "true\n")], broken, progress=False)
    assert [result.verdict for result in results] == ["error", "error"]
    assert all("sandbox" in result.detail for result in results)
    assert execute_all([], broken, progress=False) == []


def test_execute_all_makes_its_own_sandbox() -> None:
    results = execute_all([Program("python", "print('own')\n")], progress=False)
    assert results[0].verdict == "passed" and results[0].stdout == "own\n"
