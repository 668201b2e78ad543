"""Mined instruction pairs: documented functions in 11 languages, the four kinds, deduplication, decontamination
against the real benchmark sets (planted HumanEval and MBPP problems are removed; no kept pair shares a 10-gram with a
benchmark prompt or solution), data build outputs as input, the summary and the command line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from repolm.benchmark_folder import find_benchmarks as find_benchmarks_folder
from repolm.data.decontamination import words
from repolm.data.instruction_extractors import ParseFailure, clean_comment, documented_functions
from repolm.data.instruction_mining import KINDS, mine_instructions, pairs_of, summary_path
from repolm.data.instruction_records import read_instructions
from repolm.errors import RepolmError

PYTHON = '''
import math


def circle_area(radius):
    """Return the area of a circle with the given radius.

    >>> round(circle_area(1.0), 2)
    3.14
    """
    area = math.pi * radius ** 2
    return area


class Shape:
    def scaled(self, factor):
        """Return a copy of this shape scaled by a factor."""
        copy = Shape()
        copy.size = self.size * factor
        return copy

    def __repr__(self):
        """Return the representation of this shape object."""
        name = type(self).__name__
        return name

    def abstract_area(self):
        """Compute the area of the shape in square units."""
        raise NotImplementedError

    def undocumented(self):
        value = 1
        return value


def test_circle_area_for_a_unit_circle():
    """Check the area of the unit circle against pi."""
    value = circle_area(1)
    assert value == math.pi
'''

SOURCES = {
    "Java": (
        "A.java",
        "class A {\n  /**\n   * Adds two numbers together and returns their sum.\n"
        "   * @param a the first number\n   */\n"
        "  public int add(int a, int b) {\n    int c = a + b;\n    return c;\n  }\n\n"
        "  // A comment separated by a blank line from its method is no documentation.\n\n"
        "  int lonely(int x) {\n    int y = x;\n    return y;\n  }\n}\n",
        "add",
        "Adds two numbers together and returns their sum.\n@param a the first number",
    ),
    "C": (
        "a.c",
        "/* Copyright 2020 Somebody. All rights reserved by the owners. */\nint licensed(int a) {\n  int b = a;\n"
        "  return b;\n}\n\n// Return the larger of two integers given as arguments.\nint max2(int a, int b) {\n"
        "  if (a > b) return a;\n  return b;\n}\n",
        "max2",
        "Return the larger of two integers given as arguments.",
    ),
    "C++": (
        "a.cpp",
        "/// Swap the two values given by reference in place.\ntemplate <typename T>\nvoid swap2(T& a, T& b) {\n"
        "  T c = a;\n  a = b;\n  b = c;\n}\n",
        "swap2",
        "Swap the two values given by reference in place.",
    ),
    "C#": (
        "A.cs",
        "class A {\n  /// <summary>Doubles the given number and returns it.</summary>\n  public int Twice(int x) {\n"
        "    int y = x * 2;\n    return y;\n  }\n}\n",
        "Twice",
        "<summary>Doubles the given number and returns it.</summary>",
    ),
    "JavaScript": (
        "a.js",
        "/**\n * Join the words of a list with single spaces between them.\n */\nexport function joinWords(words) {\n"
        "  const text = words.join(' ');\n  return text;\n}\n",
        "joinWords",
        "Join the words of a list with single spaces between them.",
    ),
    "TypeScript": (
        "a.ts",
        "/** Count the vowels that occur in a string of text. */\nfunction vowels(text: string): number {\n"
        "  const found = text.match(/[aeiou]/g);\n  return found ? found.length : 0;\n}\n",
        "vowels",
        "Count the vowels that occur in a string of text.",
    ),
    "Go": (
        "a.go",
        "package a\n\n// Clamp limits a value to the range between lo and hi.\nfunc Clamp(v, lo, hi int) int {\n"
        "\tif v < lo {\n\t\treturn lo\n\t}\n\treturn min(v, hi)\n}\n",
        "Clamp",
        "Clamp limits a value to the range between lo and hi.",
    ),
    "Rust": (
        "a.rs",
        "/// Returns the square of the number given as input.\npub fn square(x: i64) -> i64 {\n    let y = x * x;\n"
        "    y\n}\n",
        "square",
        "Returns the square of the number given as input.",
    ),
    "PHP": (
        "a.php",
        "<?php\n/**\n * Build a greeting for the person with this name.\n */\nfunction greet($name) {\n"
        '    $text = "Hello " . $name;\n    return $text;\n}\n',
        "greet",
        "Build a greeting for the person with this name.",
    ),
    "Ruby": (
        "a.rb",
        "# Returns the first element of the list or nil when empty.\ndef first_of(list)\n  item = list[0]\n"
        "  item\nend\n",
        "first_of",
        "Returns the first element of the list or nil when empty.",
    ),
}


def test_python_functions_with_docstrings_and_their_doctests() -> None:
    found = {function.name: function for function in documented_functions(PYTHON, "Python")}
    # no dunder methods (but __init__), no stubs, no undocumented functions, no tests
    assert sorted(found) == ["circle_area", "scaled"]
    area = found["circle_area"]
    assert area.doc.startswith("Return the area of a circle with the given radius.")
    assert area.tests == [">>> round(circle_area(1.0), 2)", "3.14"]
    assert area.signature_with_doc.startswith('def circle_area(radius):\n    """Return the area')
    assert area.signature_with_doc.endswith('3.14\n    """')
    assert area.code_without_doc == "def circle_area(radius):\n    area = math.pi * radius ** 2\n    return area"
    assert found["scaled"].code.startswith("def scaled(self, factor):\n")  # a method, dedented
    assert found["scaled"].tests == []
    with pytest.raises(ParseFailure):
        documented_functions("def broken(:\n", "Python")


@pytest.mark.parametrize("language", list(SOURCES))
def test_documented_functions_in_other_languages(language: str) -> None:
    _, text, name, doc = SOURCES[language]
    found = documented_functions(text, language)
    assert [function.name for function in found] == [name]
    function = found[0]
    assert function.doc == doc
    assert function.code.endswith(function.code_without_doc)
    comment = function.code[: -len(function.code_without_doc)].strip()
    assert all(line.lstrip().startswith(("/", "*", "#")) for line in comment.splitlines())  # the doc comment only
    assert function.code_without_doc.split("\n")[0] in text and function.code_without_doc.endswith(("}", "end"))
    assert function.code.startswith(function.signature_with_doc)
    rest = function.code[len(function.signature_with_doc) :]
    assert rest.startswith((" {", "\n")) and name not in rest.split("\n")[0]  # the header ends where the body begins


def test_clean_comment_removes_markers() -> None:
    assert clean_comment("/**\n * One.\n *   Two.\n */") == "One.\n  Two."
    assert clean_comment("/// One\n/// two") == "One\ntwo"
    assert clean_comment("# a\n# b") == "a\nb"
    assert clean_comment("/* a */") == "a"


def test_every_kind_has_its_parts() -> None:
    function = documented_functions(PYTHON, "Python")[0]
    pairs = {kind: (instruction, output) for kind, instruction, output in pairs_of(function)}
    assert list(pairs) == list(KINDS)
    assert pairs["docstring-to-function"][1] == f"```python\n{function.code}\n```"
    assert "Return the area of a circle" in pairs["docstring-to-function"][0]
    assert function.code_without_doc in pairs["function-to-docstring"][0]
    assert pairs["function-to-docstring"][1] == function.doc
    assert function.signature_with_doc in pairs["signature-to-body"][0]
    assert ">>> round(circle_area(1.0), 2)\n3.14" in pairs["tests-to-implementation"][0]
    assert pairs["tests-to-implementation"][1] == f"```python\n{function.code_without_doc}\n```"
    assert pairs_of(function) == pairs_of(function)  # the phrasing is picked by the code, not at random


# -----------------------------------------------------------------------------
# mining a corpus


def benchmark_items(folder: Path) -> tuple[dict, list[dict]]:
    with gzip.open(folder / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as handle:
        humaneval = [json.loads(line) for line in handle]
    mbpp = [json.loads(line) for line in (folder / "mbpp" / "mbpp.jsonl").open(encoding="utf-8")]
    return humaneval, mbpp


def planted_sources(folder: Path, benchmarks: Path) -> int:
    """Python files holding benchmark problems as documented functions; returns how many were planted."""
    humaneval, mbpp = benchmark_items(benchmarks)
    planted = 0
    for problem in humaneval[:20]:
        (folder / f"he_{planted}.py").write_text(problem["prompt"] + problem["canonical_solution"], encoding="utf-8")
        planted += 1
    for problem in mbpp[10:30]:
        code = problem["code"].replace("\r", "").replace("\t", "    ")
        head, _, body = code.partition(":\n")
        if not head.startswith("def ") or "\ndef " in body:
            continue
        docstring = f'    """{problem["text"]}"""\n'
        (folder / f"mbpp_{planted}.py").write_text(f"{head}:\n{docstring}{body}\n", encoding="utf-8")
        planted += 1
    return planted


def raw_benchmark_ngrams(folder: Path) -> set[tuple[str, ...]]:
    """Every word 10-gram of the HumanEval and MBPP prompts and solutions (no boilerplate rule)."""
    humaneval, mbpp = benchmark_items(folder)
    texts = [problem[key] for problem in humaneval for key in ("prompt", "canonical_solution")]
    texts += [problem[key] for problem in mbpp for key in ("text", "code")]
    grams = set()
    for text in texts:
        tokens = words(text)
        grams.update(tuple(tokens[i : i + 10]) for i in range(len(tokens) - 9))
    return grams


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sources") / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "geometry.py").write_text(PYTHON, encoding="utf-8")
    (root / "pkg" / "copy_of_geometry.py").write_text(PYTHON, encoding="utf-8")  # duplicates
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "geometry.py").write_text(PYTHON.replace("circle", "disc"), encoding="utf-8")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "geometry.py").write_text(PYTHON.replace("circle", "ring"), encoding="utf-8")
    (root / "pkg" / "latin1.py").write_bytes(b'def f():\n    """\xe9t\xe9 summer time in french"""\n')
    (root / "pkg" / "broken.py").write_text("def broken(:\n", encoding="utf-8")
    for _language, (name, text, _, _) in SOURCES.items():
        (root / "src").mkdir(exist_ok=True)
        (root / "src" / name).write_text(text, encoding="utf-8")
    return root


def test_mining_a_source_folder(corpus: Path, tmp_path: Path) -> None:
    output = tmp_path / "mined.jsonl"
    report = mine_instructions([corpus], output, decontaminate=False)
    samples, skipped = read_instructions(output)
    assert skipped.skipped == 0 and len(samples) == report.kept
    kinds = report.kept_by_kind
    # Python: circle_area (4 kinds) and scaled (3 kinds, no doctest); 10 other languages x 3 kinds
    assert kinds == {"docstring-to-function": 12, "function-to-docstring": 12, "signature-to-body": 12,
                     "tests-to-implementation": 1}  # fmt: skip
    assert report.duplicates == 7  # the copy of geometry.py
    assert report.files_skipped == {"not-utf8": 1, "syntax-error": 1}  # node_modules and .hidden are not read
    assert sorted(report.kept_by_language) == sorted(["Python", *SOURCES])
    first = json.loads(output.read_text().splitlines()[0])
    assert set(first) == {"id", "kind", "language", "source", "instruction", "output"}
    assert first["source"].startswith("project/")
    summary = json.loads(summary_path(output).read_text())
    assert summary["pairs"]["by_kind"] == dict(kinds) and summary["pairs"]["duplicates"] == 7
    assert "| all | 12 | 12 | 12 | 1 | 37 |" in report.table()


def test_mined_pairs_are_decontaminated(corpus: Path, tmp_path: Path) -> None:
    benchmarks = find_benchmarks_folder(None)
    if benchmarks is None:
        pytest.skip("benchmark data absent")
    source = tmp_path / "with_planted"
    source.mkdir()
    for path in corpus.rglob("*"):
        if path.is_file() and "node_modules" not in path.parts and ".hidden" not in path.parts:
            (source / path.name).write_bytes(path.read_bytes())
    planted = planted_sources(source, benchmarks)
    assert planted >= 30
    output = tmp_path / "mined.jsonl"

    unscreened = mine_instructions([source], tmp_path / "unscreened.jsonl", decontaminate=False)
    report = mine_instructions([source], output, benchmarks=benchmarks)

    def planted_pairs(samples) -> int:
        return sum(sample.metadata["source"].split("/")[-1].startswith(("he_", "mbpp_")) for sample in samples)

    samples, _ = read_instructions(output)
    unscreened_samples, _ = read_instructions(tmp_path / "unscreened.jsonl")
    assert planted_pairs(unscreened_samples) == sum(report.contaminated.values()) > planted  # all of them, no other
    assert report.contaminated["humaneval"] > 20 and report.contaminated["mbpp"] > 0
    assert set(report.contaminated) <= {"humaneval", "mbpp"}
    assert planted_pairs(samples) == 0
    assert report.kept == unscreened.kept - sum(report.contaminated.values()) == 37  # every other pair kept
    grams = raw_benchmark_ngrams(benchmarks)
    for sample in samples:
        tokens = words(sample.messages[0]["content"] + "\n" + sample.messages[1]["content"])
        assert not grams & {tuple(tokens[i : i + 10]) for i in range(len(tokens) - 9)}


def test_mining_a_data_build_output(tmp_path: Path) -> None:
    text = "# pkg/geometry.py\n" + PYTHON + "\n// src/a.go\n" + SOURCES["Go"][1]
    offsets = [0, len("# pkg/geometry.py\n" + PYTHON + "\n")]
    sample = {"text": text, "id": "r#0", "repo": "r", "files": ["pkg/geometry.py", "src/a.go"],
              "languages": ["Python", "Go"], "offsets": offsets, "kind": "code"}  # fmt: skip
    shard = tmp_path / "build" / "data" / "code" / "00000.jsonl.zst"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(zstandard.ZstdCompressor().compress((json.dumps(sample) + "\n").encode()))
    report = mine_instructions([tmp_path / "build"], tmp_path / "mined.jsonl", decontaminate=False)
    assert report.kept == 10 and report.files_read == 2
    sources = {json.loads(line)["source"].rsplit(":", 1)[0] for line in (tmp_path / "mined.jsonl").open()}
    assert sources == {"r/pkg/geometry.py", "r/src/a.go"}


def test_nothing_found_is_an_error_and_no_file_is_written(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(RepolmError, match="no instruction pair found"):
        mine_instructions([tmp_path / "empty.py"], tmp_path / "out.jsonl", decontaminate=False)
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(RepolmError, match="no such file or folder"):
        mine_instructions([tmp_path / "absent"], tmp_path / "out.jsonl", decontaminate=False)


def test_the_command(corpus: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "repolm", "data", "instructions", "--input", str(corpus), "--output"]
    done = subprocess.run([*command, str(tmp_path / "m.jsonl"), "--no-decontamination"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| Python | 2 | 2 | 2 | 1 | 7 |" in done.stdout and "wrote 37 pairs" in done.stdout
    failed = subprocess.run([*command, str(tmp_path), "--no-decontamination"], capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stderr.startswith("error: --output") and "Traceback" not in failed.stderr


def test_tag_only_documentation_is_no_documentation() -> None:
    tags = "/**\n * @param {string} key\n * @param {number} index\n */\n"
    tags += "function f(key, index) {\n  const a = key;\n  return a;\n}\n"
    assert documented_functions(tags, "JavaScript") == []
    brief = tags.replace(" * @param {string} key", " * @brief Look the key up in the index table.")
    assert [function.name for function in documented_functions(brief, "JavaScript")] == ["f"]
