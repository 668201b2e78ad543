"""Cross-file code completion, CrossCodeEval-style: built from any repositories, scored as cceval scores it.

Build (`build_crossfile_benchmark`): in every file of a language with dependency parsing
(`repolm.data.import_extraction.DEPENDENCY_LANGUAGES`), a cursor line qualifies when it uses a name that a file it
imports defines (the data pipeline's import resolution, `repolm.data.dependencies.ImportResolver`) and that the file
itself does not define; import lines, comments and lines with fewer than 3 non-space characters are left out. As in
CrossCodeEval the cursor sits after the line's indentation and the target ("groundtruth") is the rest of the line;
the left context is the file up to the cursor, the right context the lines after it. Lines are drawn with a seed,
at most `per_repository` per repository and `max_examples` in all, shared evenly between the languages found.
Each example carries its cross-file contexts, fixed at build time (as CrossCodeEval ships its BM25 contexts):
- "retrieval": the top chunks of `repolm.infer.retrieval.RepositoryRetriever` (the serving code's retriever) for the
  left context; the retriever never returns the current file, so the target cannot leak;
- "oracle": the defining file, in 10-line chunks from the definition's line on (then the lines before it), so that
  the prompt builder fits as much of it as its context budget holds.
The benchmark folder holds `examples.jsonl` and `meta.json` (counts per language, settings).

Run (`run_crossfile`): each example three times, with no cross-file context, with the retrieved chunks and with the
oracle, through the one prompt builder (`repolm.infer.prompt_builder`: CrossCodeEval's comment-rendered context,
at most a quarter of the window) and greedy decoding of at most 50 new tokens (the paper's settings), the first line
of the output being the prediction.

Metrics, exactly as cceval's `compute_metric_stmt` defines them, after comments are removed from prediction and
target: exact match (the non-empty stripped lines equal), edit similarity (`repolm.eval.text_metrics`: fuzz.ratio
of the stripped strings), identifier exact match (the lists of identifiers, keywords left out, equal in order) and
identifier F1 (over the sets of identifiers, per example, then averaged); all as percentages.
"""

from __future__ import annotations

import json
import keyword
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from repolm.errors import RepolmError
from repolm.eval.text_metrics import edit_similarity
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

EXAMPLES_FILE = "examples.jsonl"
META_FILE = "meta.json"
VARIANTS = ("none", "retrieval", "oracle")
MAX_FILE_BYTES = 1 << 20
ORACLE_CHUNK_LINES = 10

# Names a file defines, per language family (group 1 of each pattern, line-anchored with re.M).
_DEFINITIONS = {
    "Python": [r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)", r"^[ \t]*class[ \t]+(\w+)", r"^(\w+)[ \t]*(?::[^=\n]*)?="],
    "Java": [
        r"\b(?:class|interface|enum|record)\s+(\w+)",
        r"^[ \t]*(?:(?:public|protected|private|static|final|abstract|synchronized|native|default)\s+)+"
        r"[\w<>\[\]?,.\s]*?\b(\w+)\s*[(=;]",
    ],
    "C": [
        r"^[ \t]*#[ \t]*define[ \t]+(\w+)",
        r"\b(?:struct|union|enum|class)[ \t]+(\w+)",
        r"\btypedef\b[^;{]*?\b(\w+)[ \t]*;",
        r"^(?:extern[ \t]+|static[ \t]+|inline[ \t]+)*[A-Za-z_][\w \t\*]*?\b(\w+)[ \t]*\([^;{]*\)[ \t\n]*[;{]",
    ],
    "JS": [r"\b(?:function\*?|class)\s+(\w+)", r"\b(?:const|let|var)\s+(\w+)\s*="],
    "Go": [r"^func\s+(?:\([^)]*\)\s*)?(\w+)", r"^type\s+(\w+)", r"^(?:const|var)\s+(\w+)"],
    "Rust": [r"\b(?:fn|struct|enum|trait|type|const|static|mod)\s+(\w+)"],
    "C#": [
        r"\b(?:class|interface|enum|struct|record)\s+(\w+)",
        r"^[ \t]*(?:(?:public|protected|private|internal|static|readonly|virtual|override|abstract|async)\s+)+"
        r"[\w<>\[\]?,.\s]*?\b(\w+)\s*[(=;{]",
    ],  # fmt: skip
    "PHP": [r"\b(?:function|class|interface|trait)\s+(\w+)"],
    "Ruby": [r"^\s*(?:def\s+(?:self\.)?|class\s+|module\s+)(\w+)"],
}
_FAMILY = {"C": "C", "C++": "C", "JavaScript": "JS", "TypeScript": "JS"}
_KEYWORDS = {
    "Python": set(keyword.kwlist) - {"True", "False"},
    "Java": set(
        "abstract assert boolean break byte case catch char class const continue default do double else enum "
        "extends final finally float for goto if implements import instanceof int interface long native new "
        "package private protected public return short static strictfp super switch synchronized this throw "
        "throws transient try void volatile while var record yield true false null".split()
    ),  # fmt: skip
    "C": set(
        "auto break case char const continue default do double else enum extern float for goto if inline int "
        "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
        "volatile while bool true false nullptr class namespace template typename public private protected "
        "virtual operator new delete this using try catch throw define include ifdef ifndef endif".split()
    ),  # fmt: skip
}
_IDENTIFIER = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_IMPORT_LINE = re.compile(r"^\s*(?:import\b|from\s+\S+\s+import\b|#\s*include\b|using\b|package\b|require\b|use\b)")
_COMMENT_LINE = re.compile(r"^\s*(?:#(?!\s*(?:define|if|else|endif|include))|//|/\*|\*|--)")


@dataclass
class CrossfileConfig:
    """How the benchmark is drawn.

    Attributes:
        max_examples: examples in all, shared evenly between the languages found (0: no cap).
        per_repository: at most this many examples of one repository.
        seed: seeds which lines are drawn.
        languages: only these languages (names of `repolm.data.languages`); empty: every language with dependency
            parsing.
        retrieved_chunks: chunks the retriever gives each example.
    """

    max_examples: int = 200
    per_repository: int = 20
    seed: int = 0
    languages: tuple[str, ...] = ()
    retrieved_chunks: int = 5

    def __post_init__(self) -> None:
        for name in ("max_examples", "per_repository", "retrieved_chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RepolmError(f"{name}: must be an integer >= 0, got {value!r}")
        self.languages = tuple(self.languages)


# -----------------------------------------------------------------------------
# repositories


def read_repository_folder(folder: Path) -> dict[str, str]:
    """The text files of one repository folder with a known language (hidden folders, files over 1 MB and files
    that are not UTF-8 left out), by POSIX path."""
    from repolm.data.languages import language_of

    files = {}
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith(".") and name != "__pycache__")
        for name in sorted(names):
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            if name.startswith(".") or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if language_of(relative, text[:200]) is not None:
                files[relative] = text
    return files


def repositories_in_folder(folder: str | os.PathLike) -> list[tuple[str, dict[str, str]]]:
    """A folder of repositories (each subfolder one), or one repository when it has no subfolders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RepolmError(f"--repos {folder}: no such folder")
    subfolders = sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not subfolders:
        return [(folder.name, read_repository_folder(folder))]
    return [(entry.name, read_repository_folder(entry)) for entry in subfolders]


def repositories_in_samples(folder: str | os.PathLike) -> list[tuple[str, dict[str, str]]]:
    """The repositories of a data build's sample folder (`heldout/` or `data/`), cut back into their files."""
    from repolm.data.records import read_sample_records, sample_record_files

    repositories: dict[str, dict[str, str]] = {}
    for record in read_sample_records(folder):
        for path, _language, text in sample_record_files(record):
            repositories.setdefault(record["repo"], {})[path] = text
    return sorted(repositories.items())


# -----------------------------------------------------------------------------
# building


def defined_names(text: str, language: str) -> set[str]:
    """The names a file defines (functions, classes, types, constants, macros), as written."""
    family = _FAMILY.get(language, language)
    names = set()
    for pattern in _DEFINITIONS.get(family, ()):
        names.update(match.group(1) for match in re.finditer(pattern, text, re.M) if match.group(1))
    keywords = _KEYWORDS.get(family, set())
    return {name for name in names if len(name) >= 3 and name not in keywords}


def _line_starts(text: str) -> list[int]:
    starts, position = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(position)
        position += len(line)
    return starts


def _oracle_snippets(path: str, text: str, name: str) -> list[dict[str, Any]]:
    """The defining file in 10-line chunks: the chunk at the definition first, then those after it, then before."""
    lines = text.splitlines(keepends=True)
    definition = next((number for number, line in enumerate(lines) if re.search(rf"\b{re.escape(name)}\b", line)), 0)
    starts = list(range(definition, len(lines), ORACLE_CHUNK_LINES))
    starts += list(range(definition - ORACLE_CHUNK_LINES, -ORACLE_CHUNK_LINES, -ORACLE_CHUNK_LINES))
    chunks = []
    for start in (start for start in starts if start + ORACLE_CHUNK_LINES > 0):
        first = max(0, start)
        text = "".join(lines[first : start + ORACLE_CHUNK_LINES])
        chunks.append({"path": path, "text": text, "start_line": first + 1, "score": 0.0, "source": "oracle"})
    return chunks


def _candidates(repository: str, files: dict[str, str], config: CrossfileConfig) -> list[dict[str, Any]]:
    """Every qualifying cursor line of one repository (see the module docstring)."""
    from repolm.data.dependencies import ImportResolver
    from repolm.data.import_extraction import DEPENDENCY_LANGUAGES
    from repolm.data.languages import language_of
    from repolm.data.records import CodeFile

    code_files = []
    for path, text in files.items():
        language = language_of(path, text[:200])
        if language in DEPENDENCY_LANGUAGES and (not config.languages or language in config.languages):
            code_files.append(CodeFile(path, text, language))
    if len(code_files) < 2:
        return []
    resolver = ImportResolver(code_files)
    definitions = {file.path: defined_names(file.text, file.language) for file in code_files}
    found = []
    for file in code_files:
        dependencies = resolver.dependencies(file.path) - {file.path}
        imported: dict[str, str] = {}
        for dependency in sorted(dependencies):
            for name in definitions.get(dependency, ()):
                imported.setdefault(name, dependency)
        usable = set(imported) - definitions[file.path]
        if not usable:
            continue
        starts = _line_starts(file.text)
        for number, line in enumerate(file.text.splitlines()):
            content = line.strip()
            if len(content.replace(" ", "")) < 3 or _IMPORT_LINE.match(line) or _COMMENT_LINE.match(line):
                continue
            used = [name for name in _IDENTIFIER.findall(_STRING.sub('""', line)) if name in usable]
            if not used:
                continue
            cursor = starts[number] + len(line) - len(line.lstrip())
            end = starts[number] + len(line)
            found.append({
                "repository": repository, "path": file.path, "language": file.language, "line": number + 1,
                "prompt": file.text[:cursor], "groundtruth": line.strip(), "right_context": file.text[end:],
                "cross_file_names": sorted(set(used)), "defining_files": sorted({imported[name] for name in used}),
            })  # fmt: skip
    return found


def build_crossfile_benchmark(
    repositories: Iterable[tuple[str, dict[str, str]]], output: str | os.PathLike, config: CrossfileConfig | None = None
) -> dict[str, Any]:
    """Draws the examples of `repositories` ((name, {path: text}) pairs), adds their retrieved and oracle contexts,
    writes `examples.jsonl` and `meta.json` to `output`; returns the meta. RepolmError when nothing qualifies."""
    from repolm.infer.retrieval import RepositoryRetriever, RetrievalConfig

    config = config or CrossfileConfig()
    started = time.perf_counter()
    rng = random.Random(config.seed)
    drawn: dict[str, list[dict[str, Any]]] = {}
    repositories = list(repositories)
    for name, files in tqdm(repositories, desc="cross-file examples", unit="repo"):
        candidates = _candidates(name, files, config)
        rng.shuffle(candidates)
        for example in candidates[: config.per_repository or None]:
            drawn.setdefault(example["language"], []).append(example)
    if not drawn:
        raise RepolmError("no cross-file examples: no line uses a name that another file of its repository defines")
    per_language = -(-config.max_examples // len(drawn)) if config.max_examples else None
    examples = [example for language in sorted(drawn) for example in drawn[language][:per_language]]
    by_repository = {name: files for name, files in repositories}
    retrievers: dict[str, RepositoryRetriever] = {}
    for number, example in enumerate(tqdm(examples, desc="cross-file contexts", unit="example")):
        repository = example["repository"]
        if repository not in retrievers:
            retrievers = {repository: RepositoryRetriever.from_files(
                by_repository[repository], RetrievalConfig(top_k=config.retrieved_chunks))}  # fmt: skip
        snippets = retrievers[repository].retrieve(example["path"], example["prompt"])
        example["task_id"] = f"{example['language']}/{number}"
        example["retrieval"] = [asdict(snippet) for snippet in snippets]
        files = by_repository[repository]
        example["oracle"] = [
            chunk
            for path in example["defining_files"]
            for chunk in _oracle_snippets(path, files[path], example["cross_file_names"][0])
        ]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_file_atomically(output / EXAMPLES_FILE, "".join(json.dumps(example) + "\n" for example in examples))
    counts: dict[str, int] = {}
    for example in examples:
        counts[example["language"]] = counts.get(example["language"], 0) + 1
    meta = {
        "examples": len(examples),
        "languages": counts,
        "repositories": len({example["repository"] for example in examples}),
        "settings": asdict(config),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_file_atomically(output / META_FILE, json.dumps(meta, indent=1))
    return meta


# -----------------------------------------------------------------------------
# metrics (cceval's compute_metric_stmt)


def remove_comments(code: str, language: str) -> str:
    """The code without its comments, as cceval removes them before scoring."""
    if _FAMILY.get(language, language) in ("Python", "Ruby"):
        return re.sub(r"#.*", "", code)
    return re.sub(r"//.*|/\*.*?\*/", "", code, flags=re.S)


def identifiers(code: str, language: str) -> list[str]:
    """The identifiers of a code fragment in order, keywords and the contents of strings left out."""
    keywords = _KEYWORDS.get(_FAMILY.get(language, language), _KEYWORDS["C"])
    return [name for name in _IDENTIFIER.findall(_STRING.sub('""', code)) if name not in keywords]


def score_prediction(prediction: str, target: str, language: str) -> dict[str, float]:
    """cceval's per-example scores: em (0/1), es (0-100), id_em (0/1), id_f1 (0-1)."""
    prediction, target = remove_comments(prediction, language), remove_comments(target, language)
    prediction_lines = [line.strip() for line in prediction.split("\n") if line.strip()]
    target_lines = [line.strip() for line in target.split("\n") if line.strip()]
    predicted, wanted = identifiers(prediction, language), identifiers(target, language)
    true_positives = len(set(predicted) & set(wanted))
    false_positives, false_negatives = len(set(predicted) - set(wanted)), len(set(wanted) - set(predicted))
    denominator = 2 * true_positives + false_positives + false_negatives
    return {
        "em": float(prediction_lines == target_lines),
        "es": edit_similarity(prediction, target),
        "id_em": float(predicted == wanted),
        "id_f1": 2 * true_positives / denominator if denominator else 0.0,
    }


def summarize(scores: Sequence[dict[str, float]]) -> dict[str, float]:
    """Percentages over examples, as cceval reports them."""
    count = len(scores)
    if not count:
        return {"count": 0}
    return {
        "count": count,
        "exact_match": 100 * sum(score["em"] for score in scores) / count,
        "edit_similarity": sum(score["es"] for score in scores) / count,
        "identifier_exact_match": 100 * sum(score["id_em"] for score in scores) / count,
        "identifier_f1": 100 * sum(score["id_f1"] for score in scores) / count,
    }


# -----------------------------------------------------------------------------
# running


def read_benchmark(bench: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(bench) / EXAMPLES_FILE
    if not path.is_file():
        raise RepolmError(f"--bench {bench}: no {EXAMPLES_FILE} (build it with `repolm eval crossfile build`)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_crossfile(
    bench: str | os.PathLike,
    generator,
    output: str | os.PathLike,
    max_seq_len: int = 2048,
    max_new_tokens: int = 50,
    batch_size: int = 8,
    limit: int | None = None,
) -> dict[str, Any]:
    """Scores `generator` (a `repolm.infer.text.TextGenerator`) on a benchmark with each context variant; writes
    `results.jsonl` (every prediction) and `summary.json` to `output`; returns the summary."""
    from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
    from repolm.infer.retrieval import ContextSnippet
    from repolm.infer.sampling import SamplingParams

    examples = read_benchmark(bench)[:limit]
    if not examples:
        raise RepolmError(f"--bench {bench}: no examples")
    builder = PromptBuilder(generator.tokenizer)
    budget = PromptBudget(max_prompt_tokens=max_seq_len - max_new_tokens)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    started = time.perf_counter()
    results = []
    for variant in VARIANTS:
        prompts = []
        for example in examples:
            snippets = [ContextSnippet(**snippet) for snippet in example.get(variant, [])] if variant != "none" else []
            built = builder.completion(example["prompt"], budget=budget, context=snippets, path=example["path"])
            prompts.append(built.ids)
        outputs: list[str] = []
        for first in tqdm(range(0, len(prompts), batch_size), desc=f"cross-file ({variant})", unit="batch"):
            outputs += generator.generate_ids(prompts[first : first + batch_size], params, stop_strings=["\n"])
        for example, output_text in zip(examples, outputs, strict=True):
            prediction = next((line for line in output_text.split("\n") if line.strip()), "")
            results.append({
                "task_id": example["task_id"], "language": example["language"], "variant": variant,
                "prediction": prediction, "target": example["groundtruth"],
                **score_prediction(prediction, example["groundtruth"], example["language"]),
            })  # fmt: skip
    summary: dict[str, Any] = {"examples": len(examples), "variants": {}, "languages": {}}
    for variant in VARIANTS:
        chosen = [result for result in results if result["variant"] == variant]
        summary["variants"][variant] = summarize(chosen)
        for language in sorted({result["language"] for result in chosen}):
            summary["languages"].setdefault(language, {})[variant] = summarize(
                [result for result in chosen if result["language"] == language]
            )
    summary["settings"] = {"max_seq_len": max_seq_len, "max_new_tokens": max_new_tokens, "context_share": 0.25}
    summary["seconds"] = round(time.perf_counter() - started, 2)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_file_atomically(output / "results.jsonl", "".join(json.dumps(result) + "\n" for result in results))
    write_file_atomically(output / "summary.json", json.dumps(summary, indent=1))
    return summary
