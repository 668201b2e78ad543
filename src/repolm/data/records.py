"""The records that flow through the data pipeline, from raw repositories to training samples.

A source yields `Repository` objects (one per repository, its files as raw bytes). Per-file screening turns
each `SourceFile` into a `CodeFile` (decoded text plus its language) or an `Exclusion` (the reason it was
dropped). Assembly orders a repository's code files by their dependencies and concatenates them into
`RepoSample`s, the unit that near-dedup, decontamination reports and the output work on.

These are plain dataclasses: every stage can be used on its own, with or without datatrove.

This module also owns the files a build hands to the tokenize stage: the sample records (`data/<kind>/*.jsonl.zst`,
`write_sample_records`) and the build's `mixture.json` (`write_build_mixture`, `read_build_target_shares`):

    {"target_share": {kind: share}, "bytes": {kind: output bytes}, "data": {kind: "data/<kind>"}}
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The three kinds of the pre-training mixture (paper section 2: 87% code, 10% code-related English such as
# GitHub Markdown and StackExchange, 3% code-unrelated natural language).
KIND_CODE = "code"
KIND_CODE_TEXT = "code-text"
KIND_OTHER_TEXT = "other-text"
KINDS = (KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT)
BUILD_MIXTURE_FILE = "mixture.json"


@dataclass
class SourceFile:
    """One file of a repository as a source found it.

    Attributes:
        path: the repository-relative path, POSIX separators, no leading "./" (e.g. "pkg/util.py").
        content: the raw bytes, or None when the source could not or would not read them.
        error: why `content` is None, as "reason: detail" (e.g. "too-large: 52428800 bytes",
            "unreadable: PermissionError", "symlink-loop: a/b"). The pipeline counts and reports it.
    """

    path: str
    content: bytes | None
    error: str | None = None


@dataclass
class Repository:
    """A repository as a source yields it.

    Attributes:
        name: unique name of the repository across all sources (e.g. "stdlib/json", "jdk/java.base").
        source: the name of the source (mixture entry) it came from.
        kind: one of `KINDS`.
        files: its files, sorted by path.
    """

    name: str
    source: str
    kind: str
    files: list[SourceFile] = field(default_factory=list)


@dataclass
class CodeFile:
    """A file that passed screening: decoded text and the language found from its name.

    Attributes:
        path: repository-relative POSIX path.
        text: the decoded content (UTF-8), line endings as in the file.
        language: a language name from `repolm.data.languages` (e.g. "Python", "C++", "Markdown").
    """

    path: str
    text: str
    language: str


@dataclass
class Exclusion:
    """A file (or sample) that a stage dropped, and why.

    Attributes:
        repo: the repository name.
        path: the file path, or "" for a whole repository sample.
        stage: the stage that dropped it: "read", "language", "filter", "quality", "decontamination",
            "exact-dedup", "near-dedup".
        reason: a short stable key that stats count (e.g. "max-line-length", "undecodable", "humaneval").
        detail: free text for people (the measured value, the matched benchmark item and n-gram, ...).
    """

    repo: str
    path: str
    stage: str
    reason: str
    detail: str = ""


@dataclass
class RepoSample:
    """One training sample: a repository's dependency-ordered files (or one part of a long repository).

    Attributes:
        repo: the repository name.
        text: the files concatenated, each headed by a comment with its path.
        files: the paths in the order they appear in `text`.
        languages: the language of each file, parallel to `files`.
        source: the source name.
        kind: one of `KINDS`.
        part: index of this part when a long repository was split at file boundaries (0 otherwise).
        offsets: where each file's block (its path header, then its text) starts in `text`, in characters,
            parallel to `files`: FIM cuts a sample at these boundaries so that no span crosses two files.
    """

    repo: str
    text: str
    files: list[str]
    languages: list[str]
    source: str
    kind: str
    part: int = 0
    offsets: list[int] = field(default_factory=list)

    @property
    def sample_id(self) -> str:
        """A stable id, unique across the corpus: the repository name and the part index."""
        return f"{self.repo}#{self.part}"


# -----------------------------------------------------------------------------
# the samples' file format: one JSON object a line (text, id, repo, files, offsets, languages, source, kind, part),
# zstandard-compressed, in `<folder>/<kind>/NNNNN.jsonl.zst` (written by the pipeline's output stage)


def sample_files(folder: str | os.PathLike) -> list[Path]:
    """The sample shards of a build's `data/` or `heldout/` folder (`<kind>/*.jsonl.zst`), in name order."""
    return sorted(path for path in Path(folder).glob("*/*.jsonl.zst") if path.is_file())


def read_sample_records(folder: str | os.PathLike) -> Iterator[dict]:
    """Every sample record of a `data/` or `heldout/` folder, as the JSON objects the build wrote."""
    import zstandard

    for path in sample_files(folder):
        with path.open("rb") as raw:
            for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8"):
                if line.strip():
                    yield json.loads(line)


def write_sample_records(path: str | os.PathLike, records: list[dict]) -> None:
    """Writes records in the samples' format to one shard `path` (atomically)."""
    import zstandard

    from repolm.folder_writer import write_file_atomically

    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(Path(path), zstandard.ZstdCompressor(level=3).compress(lines.encode("utf-8")))


def sample_record_blocks(record: dict) -> list[str]:
    """Each file's block of a sample record as the assembly wrote it (path header, text), without the one separator
    the assembly puts after every file but the last."""
    text, offsets = record["text"], record.get("offsets") or [0]
    ends = [*offsets[1:], len(text)]
    return [text[start : end - 1 if end != len(text) else end] for start, end in zip(offsets, ends, strict=True)]


def first_lines(text: str, max_chars: int) -> str:
    """The lines of `text` that fit in `max_chars` characters, cut after the last line break that fits ("" when the
    first line does not fit); `text` itself when it fits."""
    return text if len(text) <= max_chars else text[: text.rfind("\n", 0, max_chars) + 1]


def select_sample_record_files(record: dict, indices: list[int], max_chars: dict[int, int] | None = None) -> dict:
    """The record with only the files at `indices` (in the record's order), their blocks (`sample_record_blocks`)
    joined again with the assembly's separator; `files`, `offsets` and `languages` to match. `max_chars`: file
    index -> most characters of its block kept (`first_lines`)."""
    all_blocks = sample_record_blocks(record)
    chosen = sorted(set(indices))
    if not chosen or chosen[0] < 0 or chosen[-1] >= len(all_blocks):
        raise ValueError(f"file indices {indices!r} out of range for a record of {len(all_blocks)} files")
    limits = max_chars or {}
    blocks = [first_lines(all_blocks[index], limits.get(index, len(all_blocks[index]))) for index in chosen]
    offsets, position = [], 0
    for block in blocks:
        offsets.append(position)
        position += len(block) + 1
    return {
        **record,
        "text": "\n".join(blocks),
        "files": [record["files"][index] for index in chosen],
        "offsets": offsets,
        "languages": [record["languages"][index] for index in chosen],
    }


def sample_record_files(record: dict) -> list[tuple[str, str, str]]:
    """(path, language, text) of each file of a sample record: its block cut at `offsets`, without the path header
    the assembly put in front of it and the separator after it."""
    from repolm.data.languages import path_header

    text, offsets = record["text"], record.get("offsets") or [0]
    ends = [*offsets[1:], len(text)]
    files = []
    for path, language, start, end in zip(record["files"], record["languages"], offsets, ends, strict=True):
        block = text[start:end]
        header = path_header(language, path)
        if header and block.startswith(header):
            block = block[len(header) :]
        if end != len(text) and block.endswith("\n\n"):
            block = block[:-1]
        files.append((path, language, block))
    return files


def write_build_mixture(output: str | Path, mixture: dict[str, float], bytes_per_kind: dict[str, int]) -> dict:
    """Writes the build's `mixture.json` (atomically): the configured mixture as shares of every kind, the output
    bytes per kind and each kind's sample folder; returns it."""
    from repolm.folder_writer import write_file_atomically

    total = sum(mixture.values())
    written = {
        "target_share": {kind: mixture.get(kind, 0) / total for kind in KINDS},
        "bytes": {kind: bytes_per_kind.get(kind, 0) for kind in KINDS},
        "data": {kind: f"data/{kind}" for kind in KINDS},
    }
    write_file_atomically(Path(output) / BUILD_MIXTURE_FILE, json.dumps(written, indent=1) + "\n")
    return written


def read_build_target_shares(folder: str | Path) -> dict[str, float] | None:
    """`target_share` of a build's `mixture.json`: in `folder` (a build), or beside it when `folder` is a build's
    `data/`; None when there is none. `RepolmError` names a file that is there but unreadable."""
    from repolm.errors import RepolmError, one_line

    folder = Path(folder)
    candidates = [folder / BUILD_MIXTURE_FILE] + ([folder.parent / BUILD_MIXTURE_FILE] if folder.name == "data" else [])
    for candidate in candidates:
        if candidate.is_file():
            try:
                shares = json.loads(candidate.read_text(encoding="utf-8")).get("target_share")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
                raise RepolmError(f"{candidate}: cannot read its target_share ({one_line(error)})") from None
            if not isinstance(shares, dict) or not all(isinstance(v, int | float) for v in shares.values()):
                raise RepolmError(f"{candidate}: target_share must map kinds to numbers")
            return {str(kind): float(share) for kind, share in shares.items()}
    return None
