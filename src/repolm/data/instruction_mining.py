"""`repolm data instructions`: instruction pairs mined from source code, deduplicated, decontaminated and counted.

Inputs (`--input`, repeatable): a `repolm data build` output folder (its `data/<kind>/*.jsonl.zst` samples, cut back
into files at their `offsets`, each file's path-comment header removed; also a build's `data/` or `heldout/` folder
itself), or a source folder or file (walked in name
order; hidden and vendored folders, files over 1 MB, files that are not UTF-8 and files of languages that are not
mined are skipped and counted).

Kinds (`KINDS`), from each documented function that `repolm.data.instruction_extractors` finds (Python with `ast`;
Java, C, C++, C#, JavaScript, TypeScript, Go, Rust, PHP and Ruby with tree-sitter):
- "docstring-to-function": the documentation as the request, the whole function (in a fenced code block) as the
  answer;
- "function-to-docstring": the function without its documentation as the request, the documentation as the answer;
- "signature-to-body": the header with its documentation to complete (Python: header + docstring, HumanEval's
  layout; other languages: the doc comment + the header), the whole function as the answer;
- "tests-to-implementation": the doctest examples in a Python docstring that call the function, and the function
  without its docstring as the answer.
Each kind has a few phrasings; a function gets the one picked by a hash of its code, so the output is stable.

Deduplication: exact, on (kind, instruction, output) with whitespace runs collapsed; the first pair in input order
stays (copies of one function in several files give one pair per kind). Decontamination: each function as written
(documentation included) and each pair's instruction and output are screened by the data pipeline's
`repolm.data.decontamination.BenchmarkIndex` (10-grams of benchmark prompts and solutions, exact 3..9-word strings;
`--benchmarks`, else $REPOLM_BENCHMARKS or ../shared/benchmarks); a pair with a hit is dropped and counted under the
benchmark. Screening the whole function matters: a doctest pair leaves out the docstring, and a HumanEval problem's
examples and short solution alone are too generic for the index's boilerplate rules.

Output: FILE in the instruction JSONL format (`repolm.data.instruction_records`: id, kind, language, source,
instruction, output), written atomically, and `<FILE stem>.summary.json` (files read and skipped per reason,
functions, pairs per kind and per language and kind, duplicates, contaminated pairs per benchmark, seconds). A
killed run leaves no partial output; running it again redoes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from tqdm import tqdm

from repolm.benchmark_folder import find_benchmarks
from repolm.data.decontamination import BenchmarkIndex
from repolm.data.filters import FilterConfig, check_vendored
from repolm.data.instruction_extractors import (
    MINED_LANGUAGES,
    DocumentedFunction,
    ParseFailure,
    documented_functions,
)
from repolm.data.instruction_records import write_instructions
from repolm.data.languages import get_language, language_of, path_header
from repolm.errors import RepolmError, one_line
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

KINDS = ("docstring-to-function", "function-to-docstring", "signature-to-body", "tests-to-implementation")
MAX_FILE_BYTES = 1 << 20
FENCES = {
    "Python": "python", "Java": "java", "C": "c", "C++": "cpp", "C#": "csharp", "JavaScript": "javascript",
    "TypeScript": "typescript", "Go": "go", "Rust": "rust", "PHP": "php", "Ruby": "ruby",
}  # fmt: skip

_PHRASINGS: dict[str, tuple[str, ...]] = {
    "docstring-to-function": (
        "Write a {language} function `{name}` that does the following:\n\n{doc}",
        "Implement `{name}` in {language}.\n\n{doc}",
        "{doc}\n\nWrite this as a {language} function named `{name}`.",
    ),
    "function-to-docstring": (
        "Write the {doc_name} of this {language} function:\n```{fence}\n{code_without_doc}\n```",
        "What does this {language} function do? Answer with its {doc_name}.\n```{fence}\n{code_without_doc}\n```",
    ),
    "signature-to-body": (
        "Complete this {language} function:\n```{fence}\n{signature_with_doc}\n```",
        "Write the body of the following {language} function.\n```{fence}\n{signature_with_doc}\n```",
    ),
    "tests-to-implementation": (
        "Write a {language} function `{name}` that passes these doctests:\n```{fence}\n{tests}\n```",
        "Implement `{name}` in {language} so that these examples hold:\n```{fence}\n{tests}\n```",
    ),
}


@dataclass
class SourceText:
    """One file to mine: its text, language and where it comes from ("repo/path" or the path under the input)."""

    source: str
    text: str
    language: str


@dataclass
class MiningReport:
    """What a mining run read, found, dropped and kept (the summary file)."""

    inputs: list[str] = field(default_factory=list)
    files_read: int = 0
    files_skipped: Counter = field(default_factory=Counter)
    functions: int = 0
    functions_by_language: Counter = field(default_factory=Counter)
    pairs_found: int = 0
    duplicates: int = 0
    contaminated: Counter = field(default_factory=Counter)
    kept_by_kind: Counter = field(default_factory=Counter)
    kept_by_language: dict[str, Counter] = field(default_factory=dict)
    decontamination: str = ""
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return sum(self.kept_by_kind.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "files": {"read": self.files_read, "skipped": dict(sorted(self.files_skipped.items()))},
            "functions": {"total": self.functions, "by_language": dict(sorted(self.functions_by_language.items()))},
            "pairs": {
                "found": self.pairs_found,
                "duplicates": self.duplicates,
                "contaminated": dict(sorted(self.contaminated.items())),
                "kept": self.kept,
                "by_kind": {kind: self.kept_by_kind.get(kind, 0) for kind in KINDS},
                "by_language": {
                    language: {kind: counts.get(kind, 0) for kind in KINDS}
                    for language, counts in sorted(self.kept_by_language.items())
                },
            },
            "decontamination": self.decontamination,
            "seconds": round(self.seconds, 2),
        }

    def table(self) -> str:
        """Pairs kept per language and kind, as a Markdown table, then the drop counts."""
        header = "| language | " + " | ".join(KINDS) + " | total |"
        rows = [header, "|---" * (len(KINDS) + 2) + "|"]
        for language, counts in sorted(self.kept_by_language.items()):
            values = [counts.get(kind, 0) for kind in KINDS]
            rows.append(f"| {language} | " + " | ".join(f"{value:,}" for value in values) + f" | {sum(values):,} |")
        totals = [self.kept_by_kind.get(kind, 0) for kind in KINDS]
        rows.append("| all | " + " | ".join(f"{value:,}" for value in totals) + f" | {sum(totals):,} |")
        contaminated = ", ".join(f"{name} {count}" for name, count in sorted(self.contaminated.items())) or "none"
        skipped = ", ".join(f"{name} {count}" for name, count in sorted(self.files_skipped.items())) or "none"
        rows.append("")
        rows.append(
            f"{self.files_read:,} files read (skipped: {skipped}); {self.functions:,} documented functions; "
            f"{self.pairs_found:,} pairs, {self.duplicates:,} duplicates and {sum(self.contaminated.values()):,} "
            f"contaminated dropped ({contaminated}); {self.seconds:.1f} s"
        )
        return "\n".join(rows)


# -----------------------------------------------------------------------------
# inputs


def _build_output_files(folder: Path) -> list[Path]:
    """A build folder's training samples (`data/<kind>/`), or the samples of a folder of kinds (a build's `data/`
    or `heldout/` itself)."""
    data = folder / "data" if (folder / "data").is_dir() else folder
    return sorted(path for path in data.glob("*/*.jsonl.zst") if path.is_file())


def _read_build_output(files: list[Path]) -> Iterator[SourceText]:
    """The files of a data build's samples (path headers removed)."""
    for path in files:
        with path.open("rb") as raw:
            lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
            try:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        yield from _sample_files(json.loads(line), f"{path}:{number}")
            except (UnicodeDecodeError, zstandard.ZstdError, json.JSONDecodeError) as error:
                raise RepolmError(f"{path}: cannot read it as a data build shard ({one_line(error)})") from None


def _sample_files(sample: Any, where: str) -> Iterator[SourceText]:
    try:
        text, files, languages = sample["text"], sample["files"], sample["languages"]
        offsets = sample.get("offsets") or [0]
        repo = sample.get("repo", "")
    except (KeyError, TypeError):
        raise RepolmError(f"{where}: not a data build sample (text, files, languages, offsets)") from None
    if not (len(files) == len(languages) == len(offsets)):
        raise RepolmError(f"{where}: files, languages and offsets differ in length")
    bounds = [*offsets, len(text)]
    for index, (path, language) in enumerate(zip(files, languages, strict=True)):
        block = text[bounds[index] : bounds[index + 1]]
        header = path_header(language, path) if _known_language(language) else ""
        if header and block.startswith(header):
            block = block[len(header) :]
        if language in MINED_LANGUAGES:
            yield SourceText(f"{repo}/{path}" if repo else path, block, language)


def _known_language(name: str) -> bool:
    try:
        get_language(name)
    except ValueError:
        return False
    return True


def _read_source_tree(root: Path, report: MiningReport) -> Iterator[SourceText]:
    """The mined-language files under a folder (or the one file), in name order."""
    filters = FilterConfig()
    if root.is_file():
        paths = [(root, root.name)]
    else:
        paths = []
        for folder, folder_names, file_names in os.walk(root):
            relative_folder = Path(folder).relative_to(root)
            folder_names[:] = sorted(
                name
                for name in folder_names
                if not name.startswith(".")
                and check_vendored((relative_folder / name).as_posix() + "/", filters) is None
            )
            paths.extend((Path(folder, name), (relative_folder / name).as_posix()) for name in sorted(file_names))
    prefix = root.name
    for path, relative in paths:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(200)
        except OSError:
            report.files_skipped["unreadable"] += 1
            continue
        language = language_of(relative, head.decode("utf-8", "replace"))
        if language not in MINED_LANGUAGES:
            continue
        if size > MAX_FILE_BYTES:
            report.files_skipped["too-large"] += 1
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            report.files_skipped["not-utf8"] += 1
            continue
        except OSError:
            report.files_skipped["unreadable"] += 1
            continue
        yield SourceText(f"{prefix}/{relative}", text, language)


def read_inputs(inputs: list[str | Path], report: MiningReport) -> Iterator[SourceText]:
    """Every file to mine from the inputs, in order (see the module docstring)."""
    for entry in inputs:
        path = Path(entry)
        if not path.exists():
            raise RepolmError(f"--input {path}: no such file or folder")
        build_files = _build_output_files(path) if path.is_dir() else []
        if build_files:
            yield from _read_build_output(build_files)
        else:
            yield from _read_source_tree(path, report)


# -----------------------------------------------------------------------------
# pairs


def _pick(options: tuple[str, ...], function: DocumentedFunction) -> str:
    digest = hashlib.sha256(function.code.encode("utf-8")).digest()
    return options[digest[0] % len(options)]


def pairs_of(function: DocumentedFunction) -> list[tuple[str, str, str]]:
    """(kind, instruction, output) of every kind a documented function gives."""
    fence = FENCES.get(function.language, "")
    values = {
        "language": function.language,
        "name": function.name,
        "fence": fence,
        "doc": function.doc,
        "doc_name": "docstring" if function.language == "Python" else "documentation comment",
        "code_without_doc": function.code_without_doc,
        "signature_with_doc": function.signature_with_doc,
        "tests": "\n".join(function.tests),
    }
    code_answer = f"```{fence}\n{function.code}\n```"
    pairs = [
        ("docstring-to-function", code_answer),
        ("function-to-docstring", function.doc),
        ("signature-to-body", code_answer),
    ]
    if function.tests:
        pairs.append(("tests-to-implementation", f"```{fence}\n{function.code_without_doc}\n```"))
    return [(kind, _pick(_PHRASINGS[kind], function).format(**values), output) for kind, output in pairs]


def _pair_key(kind: str, instruction: str, output: str) -> bytes:
    normalized = "\0".join((kind, " ".join(instruction.split()), " ".join(output.split())))
    return hashlib.sha256(normalized.encode("utf-8")).digest()


def mine_instructions(
    inputs: list[str | Path],
    output: str | Path,
    benchmarks: str | Path | None = None,
    decontaminate: bool = True,
    kinds: tuple[str, ...] = KINDS,
) -> MiningReport:
    """Mines `inputs` into the instruction file `output` and its summary (see the module docstring)."""
    started = time.perf_counter()
    output = Path(output)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise RepolmError(f"--kind {unknown[0]}: not one of {', '.join(KINDS)}")
    if output.is_dir():
        raise RepolmError(f"--output {output}: is a folder, expected a file name (e.g. instructions.jsonl)")
    report = MiningReport(inputs=[str(entry) for entry in inputs])
    index = None
    if decontaminate:
        folder = find_benchmarks(benchmarks)
        if folder is None:
            raise RepolmError(
                "no benchmark folder to decontaminate against: give --benchmarks DIR (layout of shared/benchmarks), "
                "set REPOLM_BENCHMARKS, or pass --no-decontamination"
            )
        index = BenchmarkIndex.from_folder(folder)
        report.decontamination = f"{folder} ({sum(index.item_counts.values())} items)"
    else:
        report.decontamination = "off"
    seen: set[bytes] = set()
    records: list[dict[str, Any]] = []
    for source in tqdm(read_inputs(list(inputs), report), desc="mining", unit=" files", disable=None):
        report.files_read += 1
        try:
            functions = documented_functions(source.text, source.language)
        except ParseFailure:
            report.files_skipped["syntax-error"] += 1
            continue
        for function in functions:
            report.functions += 1
            report.functions_by_language[function.language] += 1
            # the whole function as written is screened too: a pair can leave out the part that quotes a benchmark
            # (a doctest pair drops the docstring whose text is a HumanEval prompt)
            function_hit = index.find_contamination(function.code) if index is not None else None
            for kind, instruction, answer in pairs_of(function):
                if kind not in kinds:
                    continue
                report.pairs_found += 1
                key = _pair_key(kind, instruction, answer)
                if key in seen:
                    report.duplicates += 1
                    continue
                seen.add(key)
                if index is not None:
                    found = function_hit or index.find_contamination(instruction + "\n" + answer)
                    if found is not None:
                        report.contaminated[found.benchmark] += 1
                        logger.debug("dropped a %s pair of %s: %s %s", kind, source.source, found.item_id, found.ngram)
                        continue
                report.kept_by_kind[kind] += 1
                report.kept_by_language.setdefault(function.language, Counter())[kind] += 1
                records.append(
                    {
                        "id": f"{kind}:{key.hex()[:16]}",
                        "kind": kind,
                        "language": function.language,
                        "source": f"{source.source}:{function.line}",
                        "instruction": instruction,
                        "output": answer,
                    }
                )
    if not records:
        raise RepolmError(
            f"--input {', '.join(map(str, inputs))}: no instruction pair found ({report.files_read} files)"
        )
    write_instructions(output, records)
    report.seconds = time.perf_counter() - started
    write_file_atomically(summary_path(output), json.dumps(report.to_dict(), indent=1) + "\n")
    logger.info("wrote %d pairs to %s", len(records), output)
    return report


def summary_path(output: str | Path) -> Path:
    """Where the summary of an instruction file goes: `<stem>.summary.json` beside it."""
    output = Path(output)
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".summary.json")
