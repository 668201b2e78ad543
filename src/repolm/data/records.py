"""The records that flow through the data pipeline, from raw repositories to training samples.

A source yields `Repository` objects (one per repository, its files as raw bytes). Per-file screening turns
each `SourceFile` into a `CodeFile` (decoded text plus its language) or an `Exclusion` (the reason it was
dropped). Assembly orders a repository's code files by their dependencies and concatenates them into
`RepoSample`s, the unit that near-dedup, decontamination reports and the output work on.

These are plain dataclasses: every stage can be used on its own, with or without datatrove.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The three kinds of the pre-training mixture (paper section 2: 87% code, 10% code-related English such as
# GitHub Markdown and StackExchange, 3% code-unrelated natural language).
KIND_CODE = "code"
KIND_CODE_TEXT = "code-text"
KIND_OTHER_TEXT = "other-text"
KINDS = (KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT)


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
