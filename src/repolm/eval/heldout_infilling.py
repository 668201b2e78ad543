"""Single-line infilling on held-out files, against a BM25 baseline that needs no model; sample generations to read.

Held-out samples and files, model loading and the order files are used in (`spread_files`: code files, one
repository after another) are `repolm.eval.heldout_tasks`'s. Positions are in a file's block (its path comment, text
and separator, as the sample holds it), so a prompt's prefix starts with the path comment, as in training.

`line_infilling`: holes are lines of held-out code files that are worth predicting (`is_hole_line`: at least 8
characters that are not spaces, not a comment line); each file gives up to `lines_per_file` of them, drawn with
`document_rng(seed, "line\\0<sample id>\\0<path>")`. The prefix is the block before the line, the suffix the block
after the line's line break, the real middle the line without it.
- Model: a PSM prompt (`repolm.infer.prompt_builder`, DeepSeek-Coder's sentinels, file text encoded literally,
  cut to `max_seq_len - max_new_tokens` tokens with the suffix keeping at most a quarter), decoded greedily until a
  line break (or end of sentence, `<|EOT|>`, a FIM sentinel, `max_new_tokens`).
- Baseline, "the repository's line with the nearest neighbours": every non-blank line of every file of the hole's
  repository (other files and the rest of the hole's file) is a candidate, indexed by BM25 (bm25s, "lucene": k1 1.5,
  b 0.75) over the identifier tokens (`repolm.infer.retrieval.code_tokens`: identifiers and their camelCase /
  snake_case sub-tokens) of its neighbours, the nearest non-blank line before it and after it in its file. The
  query is the same for the hole: the tokens of the nearest non-blank lines before and after it. The prediction is
  the best-scoring candidate's line; no candidate with a positive score (the neighbours have no identifiers the
  repository shares) predicts "". Not candidates: the hole line itself, and the two neighbours (whose own
  neighbourhood holds the hole line). A repository's index is built once for all its holes, so the hole line's
  tokens stay in the document frequencies (they cannot be retrieved: only other lines are predicted).
- Metrics (`repolm.eval.text_metrics`, CrossCodeEval's): exact match of the stripped strings and edit similarity
  (`fuzz.ratio`, 0-100), per language and in total, exact match as the percentage of holes.

`sample_generations`: a few examples to read in a report: for completion, the file up to a line and the model's next
lines next to the real ones; for infilling, the text around a 1-3 line hole and the model's middle next to the real
one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from repolm.data.languages import get_language
from repolm.errors import RepolmError
from repolm.eval.heldout_tasks import (
    HeldoutFile,
    ModelLike,
    check_positive,
    describe_model,
    first_samples,
    resolve_generator,
    spread_files,
)
from repolm.eval.text_metrics import edit_similarity, exact_match
from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
from repolm.infer.retrieval import code_tokens
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import TextGenerator
from repolm.tokenizer.corpus import document_rng

logger = logging.getLogger(__name__)

MIN_HOLE_CHARACTERS = 8
"""A hole line has at least this many characters that are not whitespace."""
SUFFIX_SHARE = 0.25
"""When a prompt is cut, the suffix keeps at most this share of it (llama.cpp's prefix:suffix 3:1)."""
_C_STYLE_CONTINUATION = ("*",)  # the middle lines of a /* ... */ comment
_UNKNOWN_COMMENT_MARKS = ("#", "//", "/*", "*")


# -----------------------------------------------------------------------------
# Lines and holes


@dataclass(frozen=True)
class Line:
    """One line of a block: `start` and `end` (after its line break, if any) in characters, and its text without
    the line break."""

    start: int
    end: int
    text: str


def block_lines(block: str) -> list[Line]:
    """The lines of a text, split at "\\n" only (a trailing "\\r" stays in the line's text)."""
    lines, start = [], 0
    while start < len(block):
        newline = block.find("\n", start)
        end = len(block) if newline < 0 else newline + 1
        lines.append(Line(start, end, block[start : end - (newline >= 0)]))
        start = end
    return lines


def comment_marks(language: str) -> tuple[str, ...]:
    """The strings a comment line of `language` starts with (its line comment, its block comment's opening and, for
    C-style block comments, the "*" of their middle lines); common marks for a language the table does not know."""
    try:
        entry = get_language(language)
    except ValueError:
        return _UNKNOWN_COMMENT_MARKS
    marks = [mark for mark in (entry.line_comment,) if mark]
    if entry.block_comment is not None:
        marks.append(entry.block_comment[0])
        if entry.block_comment == ("/*", "*/"):
            marks.extend(_C_STYLE_CONTINUATION)
    return tuple(marks)


def is_hole_line(text: str, marks: Sequence[str]) -> bool:
    """Whether a line is worth predicting: at least `MIN_HOLE_CHARACTERS` non-whitespace characters and not a comment
    line (its stripped text does not start with one of `marks`)."""
    stripped = text.strip()
    if sum(not character.isspace() for character in stripped) < MIN_HOLE_CHARACTERS:
        return False
    return not any(stripped.startswith(mark) for mark in marks)


def hole_lines(file: HeldoutFile) -> list[int]:
    """Indices (in `block_lines(file.block)`) of the lines of a file that may be holes; the path comment never is."""
    marks = comment_marks(file.language)
    return [
        index
        for index, line in enumerate(block_lines(file.block))
        if line.start >= file.header_length and is_hole_line(line.text, marks)
    ]


def file_line_number(file: HeldoutFile, line: Line) -> int:
    """The 1-based number of a block's line in the file itself (the path comment's lines not counted)."""
    return file.block.count("\n", file.header_length, line.start) + 1


@dataclass(frozen=True)
class Hole:
    """One line to infill: the file, the line's index in `block_lines(file.block)` and the line."""

    file: HeldoutFile
    index: int
    line: Line

    @property
    def prefix(self) -> str:
        return self.file.block[: self.line.start]

    @property
    def suffix(self) -> str:
        return self.file.block[self.line.end :]

    @property
    def target(self) -> str:
        return self.line.text


def choose_holes(files: Sequence[HeldoutFile], lines_per_file: int, max_examples: int, seed: int) -> list[Hole]:
    """Up to `lines_per_file` holes per file, in the files' order, `max_examples` in all (see the module docstring)."""
    holes: list[Hole] = []
    for file in files:
        candidates = hole_lines(file)
        if not candidates or len(holes) >= max_examples:
            continue
        rng = document_rng(seed, f"line\x00{file.sample}\x00{file.path}")
        count = min(lines_per_file, len(candidates), max_examples - len(holes))
        lines = block_lines(file.block)
        for index in sorted(int(i) for i in rng.choice(candidates, size=count, replace=False)):
            holes.append(Hole(file, index, lines[index]))
    return holes


# -----------------------------------------------------------------------------
# The BM25 baseline


class RepositoryLines:
    """The candidate lines of one repository, indexed by the identifier tokens of their neighbours (module doc)."""

    def __init__(self, files: Sequence[HeldoutFile]) -> None:
        import bm25s

        self.texts: list[str] = []
        self.rows: dict[tuple[str, str, int], int] = {}  # (sample, path, line index) -> candidate row
        self.neighbours: dict[tuple[str, str, int], tuple[str, str]] = {}  # -> (text before, text after)
        contexts: list[list[str]] = []
        for file in files:
            lines = block_lines(file.block)
            filled = [index for index, line in enumerate(lines) if line.text.strip()]
            for position, index in enumerate(filled):
                before = lines[filled[position - 1]].text if position > 0 else ""
                after = lines[filled[position + 1]].text if position + 1 < len(filled) else ""
                key = (file.sample, file.path, index)
                self.rows[key] = len(self.texts)
                self.neighbours[key] = (before, after)
                self.texts.append(lines[index].text)
                contexts.append(code_tokens(f"{before}\n{after}", definitions=False))
        self.index = bm25s.BM25(method="lucene")
        self.index.index(contexts, show_progress=False)

    def predict(self, hole: Hole) -> str:
        """The best-scoring other line for a hole (its neighbours as the query), "" when none scores above 0."""
        key = (hole.file.sample, hole.file.path, hole.index)
        before, after = self.neighbours[key]
        vocabulary = self.index.vocab_dict
        ids = [
            vocabulary[token] for token in code_tokens(f"{before}\n{after}", definitions=False) if token in vocabulary
        ]
        if not ids:
            return ""
        scores = np.asarray(self.index.get_scores_from_ids(ids), dtype=np.float64)
        row = self.rows[key]
        excluded = [row]
        if before:
            excluded.append(row - 1)  # the neighbours are the adjacent candidate rows of the same file
        if after:
            excluded.append(row + 1)
        scores[excluded] = -np.inf
        best = int(np.argmax(scores))
        return self.texts[best] if scores[best] > 0 else ""


def baseline_predictions(
    holes: Sequence[Hole], repositories: dict[str, list[HeldoutFile]], progress: bool
) -> list[str]:
    """The BM25 baseline's line for each hole, one index per repository that has holes."""
    predictions = [""] * len(holes)
    by_repo: dict[str, list[int]] = {}
    for number, hole in enumerate(holes):
        by_repo.setdefault(hole.file.repo, []).append(number)
    with tqdm(total=len(holes), desc="BM25 line baseline", unit="line", disable=not progress) as bar:
        for repo, numbers in by_repo.items():
            lines = RepositoryLines(repositories[repo])
            for number in numbers:
                predictions[number] = lines.predict(holes[number])
            bar.update(len(numbers))
    return predictions


# -----------------------------------------------------------------------------
# Model generations


def stop_ids(generator: TextGenerator) -> tuple[int, ...]:
    """End of sentence, `<|EOT|>` and the FIM sentinels: any of them ends a middle or a completion."""
    tokenizer = generator.tokenizer
    found = (tokenizer.eos_id, tokenizer.eot_id, tokenizer.fim_begin_id, tokenizer.fim_hole_id, tokenizer.fim_end_id)
    return tuple(sorted({token for token in found if token is not None}))


def generate_batched(
    generator: TextGenerator,
    prompts: Sequence[list[int]],
    params: SamplingParams,
    stop_strings: Sequence[str],
    batch_size: int,
    description: str,
    progress: bool,
) -> list[str]:
    """Greedy texts of id prompts, in batches of similar lengths, in the prompts' order."""
    order = sorted(range(len(prompts)), key=lambda number: len(prompts[number]))
    outputs = [""] * len(prompts)
    with tqdm(total=len(prompts), desc=description, unit="prompt", disable=not progress) as bar:
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            texts = generator.generate_ids([prompts[row] for row in rows], params, stop_strings)
            for row, text in zip(rows, texts, strict=True):
                outputs[row] = text
            bar.update(len(rows))
    return outputs


def _builder_and_budget(
    generator: TextGenerator, max_seq_len: int, max_new_tokens: int
) -> tuple[PromptBuilder, PromptBudget]:
    if max_seq_len - max_new_tokens < 8:
        raise RepolmError(f"max_seq_len {max_seq_len} leaves too little room for prompts after {max_new_tokens} tokens")
    builder = PromptBuilder(generator.tokenizer, fim_mode="psm", path_comment=False, literal_special_tokens=True)
    budget = PromptBudget(max_seq_len - max_new_tokens, context_share=0.0, suffix_share=SUFFIX_SHARE)
    return builder, budget


# -----------------------------------------------------------------------------
# Single-line infilling


@dataclass
class _Scores:
    examples: int = 0
    model_exact: int = 0
    model_similarity: float = 0.0
    baseline_exact: int = 0
    baseline_similarity: float = 0.0

    def add(self, target: str, model: str, baseline: str) -> None:
        self.examples += 1
        self.model_exact += exact_match(model, target)
        self.model_similarity += edit_similarity(model, target)
        self.baseline_exact += exact_match(baseline, target)
        self.baseline_similarity += edit_similarity(baseline, target)

    def to_dict(self) -> dict[str, Any]:
        count = max(self.examples, 1)
        return {
            "examples": self.examples,
            "model_exact_match": 100.0 * self.model_exact / count,
            "model_edit_similarity": self.model_similarity / count,
            "baseline_exact_match": 100.0 * self.baseline_exact / count,
            "baseline_edit_similarity": self.baseline_similarity / count,
        }


def line_infilling(
    model: ModelLike,
    data: str | os.PathLike,
    max_examples: int = 256,
    lines_per_file: int = 1,
    max_documents: int | None = None,
    seed: int = 0,
    max_seq_len: int = 2048,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    examples: int = 5,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Single-line infilling on held-out code files by the model and by the BM25 baseline (see the module docstring).

    Holes: up to `lines_per_file` per file in `spread_files` order over the first `max_documents` samples, at most
    `max_examples`. Returns {"examples", "model_exact_match", "model_edit_similarity", "baseline_exact_match",
    "baseline_edit_similarity", "languages": {name: the same five keys}, "samples": the first `examples` holes as
    {"repo", "path", "language", "line" (1-based in the file), "target", "model", "baseline"}, "seed",
    "lines_per_file", "max_seq_len", "max_new_tokens", "max_documents", "model", "device", "dtype", "data",
    "seconds"}; exact match is the percentage of holes (0-100), edit similarity the mean ES (0-100); languages by
    examples, most first.
    """
    check_positive(max_examples=max_examples, lines_per_file=lines_per_file, batch_size=batch_size)
    check_positive(max_new_tokens=max_new_tokens)
    samples = list(first_samples(data, max_documents))
    repositories: dict[str, list[HeldoutFile]] = {}
    for sample in samples:
        repositories.setdefault(sample.repo, []).extend(sample.files)
    holes = choose_holes(spread_files(samples, seed), lines_per_file, max_examples, seed)
    if not holes:
        raise RepolmError(f"held-out data {data}: no code line to infill (none with {MIN_HOLE_CHARACTERS}+ characters)")
    started = time.perf_counter()
    generator = resolve_generator(model, device, dtype)
    builder, budget = _builder_and_budget(generator, max_seq_len, max_new_tokens)
    prompts = [builder.completion(hole.prefix, hole.suffix, budget=budget).ids for hole in holes]
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=stop_ids(generator))
    generated = generate_batched(generator, prompts, params, ["\n"], batch_size, "line infilling", progress)
    predictions = [text.split("\n", 1)[0] for text in generated]
    baselines = baseline_predictions(holes, repositories, progress)

    total = _Scores()
    by_language: dict[str, _Scores] = {}
    for hole, prediction, baseline in zip(holes, predictions, baselines, strict=True):
        for scores in (total, by_language.setdefault(hole.file.language, _Scores())):
            scores.add(hole.target, prediction, baseline)
    shown = [
        {
            "repo": hole.file.repo,
            "path": hole.file.path,
            "language": hole.file.language,
            "line": file_line_number(hole.file, hole.line),
            "target": hole.target,
            "model": prediction,
            "baseline": baseline,
        }
        for hole, prediction, baseline in list(zip(holes, predictions, baselines, strict=True))[:examples]
    ]
    result = {
        **total.to_dict(),
        "languages": {
            name: scores.to_dict() for name, scores in sorted(by_language.items(), key=lambda item: -item[1].examples)
        },
        "samples": shown,
        "seed": seed,
        "lines_per_file": lines_per_file,
        "max_seq_len": max_seq_len,
        "max_new_tokens": max_new_tokens,
        "max_documents": max_documents,
        **describe_model(model, generator),
        "data": str(Path(data)),
        "seconds": time.perf_counter() - started,
    }
    logger.info(
        "line infilling, %d holes: model EM %.1f ES %.1f, BM25 baseline EM %.1f ES %.1f",
        result["examples"],
        result["model_exact_match"],
        result["model_edit_similarity"],
        result["baseline_exact_match"],
        result["baseline_edit_similarity"],
    )
    return result


# -----------------------------------------------------------------------------
# Sample generations for a report


def _tail(text: str, lines: int) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines else ""


def _head(text: str, lines: int) -> str:
    return "".join(text.splitlines(keepends=True)[:lines]) if lines else ""


def sample_generations(
    model: ModelLike,
    data: str | os.PathLike,
    count: int = 3,
    seed: int = 0,
    max_documents: int | None = None,
    completion_lines: int = 3,
    max_infill_lines: int = 3,
    context_lines: int = 6,
    max_seq_len: int = 2048,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """A few greedy completions and infills of held-out code files next to the real text, for people to read.

    The first `count` files (in `spread_files` order over the first `max_documents` samples) that have a hole line
    (`is_hole_line`) give one completion and one infill each, their lines drawn with
    `document_rng(seed, "sample\\0<sample id>\\0<path>")`. Completion: the prompt is the block up to a hole line;
    the model's first `completion_lines` lines (of at most `max_new_tokens` tokens) next to the file's next
    `completion_lines` lines. Infill: the middle is 1 to `max_infill_lines` whole lines from another hole line; the
    PSM prompt is cut as `line_infilling` cuts it; the model's middle runs to end of sentence (or a FIM sentinel,
    `<|EOT|>`, `max_new_tokens`). Texts are shown with `context_lines` lines of context.

    Returns {"completions": [{"repo", "path", "language", "line", "prompt_tail", "model", "real"}],
    "infills": [{"repo", "path", "language", "line", "prefix_tail", "suffix_head", "model", "real"}], "seed",
    "max_new_tokens", "model", "device", "dtype", "data"}; "line" is the 1-based line of the file where the
    generated text starts.
    """
    check_positive(count=count, completion_lines=completion_lines, max_infill_lines=max_infill_lines)
    check_positive(max_new_tokens=max_new_tokens, batch_size=batch_size)
    samples = list(first_samples(data, max_documents))
    picks: list[tuple[HeldoutFile, Hole, Hole, int]] = []
    for file in spread_files(samples, seed):
        if len(picks) >= count:
            break
        candidates = hole_lines(file)
        if not candidates:
            continue
        rng = document_rng(seed, f"sample\x00{file.sample}\x00{file.path}")
        lines = block_lines(file.block)
        completion_index, infill_index = (int(rng.choice(candidates)) for _ in range(2))
        span = int(rng.integers(1, max_infill_lines + 1))
        picks.append(
            (
                file,
                Hole(file, completion_index, lines[completion_index]),
                Hole(file, infill_index, lines[infill_index]),
                span,
            )
        )
    if not picks:
        raise RepolmError(f"held-out data {data}: no code line to complete or infill")
    generator = resolve_generator(model, device, dtype)
    builder, budget = _builder_and_budget(generator, max_seq_len, max_new_tokens)
    prompts: list[list[int]] = []
    infill_texts: list[tuple[str, str, str]] = []  # (prefix, middle, suffix)
    for file, completion, infill, span in picks:
        prompts.append(builder.completion(completion.prefix, None, budget=budget).ids)
        lines = block_lines(file.block)
        end = lines[min(infill.index + span, len(lines)) - 1].end
        prefix, middle, suffix = file.block[: infill.line.start], file.block[infill.line.start : end], file.block[end:]
        infill_texts.append((prefix, middle, suffix))
        prompts.append(builder.completion(prefix, suffix, budget=budget).ids)
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=stop_ids(generator))
    texts = generate_batched(generator, prompts, params, (), batch_size, "sample generations", progress)

    completions, infills = [], []
    for number, (file, completion, infill, _) in enumerate(picks):
        where = {"repo": file.repo, "path": file.path, "language": file.language}
        completions.append(
            {
                **where,
                "line": file_line_number(file, completion.line),
                "prompt_tail": _tail(completion.prefix, context_lines),
                "model": _head(texts[2 * number], completion_lines),
                "real": _head(file.block[completion.line.start :], completion_lines),
            }
        )
        prefix, middle, suffix = infill_texts[number]
        infills.append(
            {
                **where,
                "line": file_line_number(file, infill.line),
                "prefix_tail": _tail(prefix, context_lines),
                "suffix_head": _head(suffix, context_lines),
                "model": texts[2 * number + 1],
                "real": middle,
            }
        )
    return {
        "completions": completions,
        "infills": infills,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        **describe_model(model, generator),
        "data": str(Path(data)),
    }
