"""Repository retrieval: the chunks of other files of a repository most useful to show the model before the cursor.

CrossCodeEval's sparse retrieval (`../shared/docs/peers.md` section 4.4), plus definitions and the import graph:

- **Chunks.** The repository's source files are cut into non-overlapping chunks of `chunk_lines` lines (lines 1-10,
  11-20, ...). Source files: a language of `repolm.data.languages` other than prose; hidden folders, vendored
  folders (`skipped_directories`) and binary, undecodable or huge files are left out.
- **Tokens.** A chunk's tokens are its identifiers, lower-cased, plus their camelCase/snake_case sub-tokens
  (`HTTPServer_error` -> `httpserver_error`, `http`, `server`, `error`: `identifier_tokens`), plus one
  definition token `def:<name>` for each name the chunk defines after a keyword (`def`, `class`, `function`,
  `func`, `fn`, `struct`, `interface`, `enum`, `type`, `#define`, ...: `definition_names`). The query's
  identifiers add the definition tokens of their names, so the chunk that defines a name the cursor uses scores
  high; definition columns count `definition_weight` times and the line being typed `cursor_line_weight` times.
- **Scores.** BM25 in bm25s's "lucene" variant (k1 1.5, b 0.75), held in a `bm25s.BM25` (its CSC score matrix,
  one column per token). bm25s has no incremental add and its `index()` loops over documents in Python, so each
  file keeps its own (token, chunk, count) triples and the matrix is rebuilt from those cached triples with a few
  vectorised numpy passes (the same arrays as `bm25s.BM25.index` to float32 precision, several times faster; the
  benchmark prints both). A query sums its tokens' columns with one weighted `bincount`; the top rows come from a
  subsample threshold (exact: no true top-k score lies below the k-th best of a 1/16 subsample) rather than a
  partition of the whole score vector.
- **Imports.** Chunks of the files the current file imports (resolved by the data pipeline's
  `repolm.data.dependencies.ImportResolver`) are multiplied by `direct_import_boost`, those of the files they
  import (up to `max_import_depth` steps) by `transitive_import_boost`. The graph is computed once per index and
  updated on refresh (only for the changed files when no file was added or removed and their languages resolve
  imports from paths alone).
- **Filters.** Chunks of the current file are never returned: the model sees the text around the cursor, the rest
  of the file on disk is stale against the editor's buffer, and in an evaluation it may hold the very line to be
  completed. Chunks whose non-blank lines all appear in the local window (`window_lines` lines each side of the
  cursor) are dropped, and identical chunks (same stripped non-blank lines) are kept once, at their best rank.

Measured on stdlib packages (`benchmarks/bench_retrieval.py --hit-rate`; figures in the README): identifiers plus
sub-tokens beat either alone; definition tokens and the cursor-line weight lift the rate at which the defining
chunk is in the top 5 the most; import boosts of 2 and 1.5 help where the cursor's line is still to write and keep
the rate where the name is typed, while strict tiers (boosts of 1000 and 100) lost 5 points there.

Refresh re-reads only files whose mtime or size changed, and re-tokenizes only those whose content hash changed.
Thread safety: `retrieve` may run in several threads while `refresh` runs in another; a refresh builds a new
immutable snapshot and swaps it in under a lock, and each query works on the snapshot it started with.
Rendering snippets into a prompt (path-headed comments, token budget) is `repolm.infer.prompt_builder`'s job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import threading
import time
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path

import bm25s
import numpy as np

from repolm.data.dependencies import ImportResolver, resolve_dependencies
from repolm.data.import_extraction import DEPENDENCY_LANGUAGES, extract_imports
from repolm.data.languages import LANGUAGE_NAMES, get_language, language_of
from repolm.data.records import CodeFile
from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

TOKENIZATIONS = ("identifiers", "subtokens", "both")
DEFINITION_PREFIX = "def:"  # a definition token: "def:" + the defined name, lower-cased (":" is in no identifier)

# Languages whose files' imports resolve against what other files declare (Java packages, C# and PHP namespaces,
# and a go.mod for Go): a change to one of those files, or an added or removed file, resolves the whole graph again;
# other changes only the changed files' imports.
_OTHERS_RESOLVED_LANGUAGES = frozenset({"Java", "C#", "PHP"})
_GO_MODULE_FILE = "go.mod"  # no language of the table, but it gives Go imports their module path
_BINARY_PROBE_BYTES = 8192
_HEAD_CHARACTERS = 256
_IN_MEMORY = object()  # the root of a retriever built by `from_files`


@dataclass(frozen=True)
class ContextSnippet:
    """A piece of another file of the repository to show the model before the cursor.

    Attributes:
        path: the file's path, relative to the repository root, POSIX separators (rendered in the prompt).
        text: the fragment's code (a retrieved chunk: its lines as in the file).
        start_line: the 1-based line of the file where `text` starts.
        score: the retriever's score (BM25, boosted; higher is more relevant); 0.0 when not scored.
        source: where it came from: "import" (a file the current file imports, directly or transitively), "bm25"
            (lexical search) or "client" (sent by the editor, e.g. llama.cpp's `input_extra`).
    """

    path: str
    text: str
    start_line: int = 1
    score: float = 0.0
    source: str = "bm25"  # "import" | "bm25" | "client"


@dataclass
class RetrievalConfig:
    """How the repository is indexed and queried.

    Attributes:
        chunk_lines: lines per chunk; chunks do not overlap (CrossCodeEval: 10).
        query_lines: the query is the last this many lines of the prefix, the line being typed included.
        top_k: snippets returned by `retrieve` when it is not given `top_k`.
        use_imports: rank chunks of files the current file imports (and their imports) above the rest.
        direct_import_boost: factor on the score of chunks of files the current file imports.
        transitive_import_boost: factor on the score of chunks of files imported by those.
        max_import_depth: import steps from the current file that are boosted (1: direct imports only).
        definition_weight: weight of definition tokens (`def:<name>`); 0 leaves them out of index and query.
        cursor_line_weight: weight of the tokens of the line being typed (the others weigh 1).
        window_lines: lines of the local window on each side of the cursor; chunks whose lines all lie in it
            are dropped (the model already sees them).
        tokenization: "both" (identifiers and their sub-tokens), "identifiers" or "subtokens".
        max_file_bytes: larger files are not indexed.
        languages: languages to index (names of `repolm.data.languages`); None: every language of the table
            except prose (Markdown, reStructuredText, Text).
        skipped_directories: folder names never entered, besides hidden folders (names starting with ".").
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
    """

    chunk_lines: int = 10
    query_lines: int = 10
    top_k: int = 5
    use_imports: bool = True
    direct_import_boost: float = 2.0
    transitive_import_boost: float = 1.5
    max_import_depth: int = 2
    definition_weight: float = 3.0
    cursor_line_weight: float = 2.0
    window_lines: int = 64
    tokenization: str = "both"
    max_file_bytes: int = 1_000_000
    languages: frozenset[str] | None = None
    skipped_directories: frozenset[str] = frozenset(
        {"__pycache__", "node_modules", "venv", "site-packages", "dist-packages", "bower_components"}
    )
    k1: float = 1.5
    b: float = 0.75

    def __post_init__(self) -> None:
        for name in ("chunk_lines", "query_lines", "top_k", "max_import_depth", "max_file_bytes", "window_lines"):
            value, least = getattr(self, name), 0 if name == "window_lines" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise RepolmError(f"retrieval option {name} must be an integer >= {least}, got {value!r}")
        for name in ("direct_import_boost", "transitive_import_boost", "cursor_line_weight", "k1", "definition_weight"):
            value, zero_allowed = getattr(self, name), name == "definition_weight"
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not (value > 0 or zero_allowed and value == 0)
            ):
                raise RepolmError(
                    f"retrieval option {name} must be a number {'>= 0' if zero_allowed else '> 0'}, got {value!r}"
                )
        if not isinstance(self.b, int | float) or not 0 <= self.b <= 1:
            raise RepolmError(f"retrieval option b must be in [0, 1], got {self.b!r}")
        if self.tokenization not in TOKENIZATIONS:
            raise RepolmError(
                f"retrieval option tokenization must be one of {TOKENIZATIONS}, got {self.tokenization!r}"
            )
        if self.languages is not None:
            self.languages = frozenset(self.languages)
            unknown = sorted(self.languages - set(LANGUAGE_NAMES))
            if unknown:
                raise RepolmError(f"retrieval option languages: unknown language(s) {', '.join(unknown)}")

    def indexes(self, language: str | None) -> bool:
        """Whether files of `language` are indexed."""
        if language is None:
            return False
        return language in self.languages if self.languages is not None else not get_language(language).is_text


# --- tokens ----------------------------------------------------------------------------------------------------------
_IDENTIFIER = re.compile(r"[^\W\d]\w*")
_SUBTOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[^\W\dA-Za-z_]+")
_DEFINITION = re.compile(
    r"\b(?:(?:def|class|function|func|fn|fun|struct|interface|enum|trait|type|typedef|module|record|object|union"
    r"|macro|sub)[ \t]+)+(?:\([^)\n]*\)[ \t]*)?([^\W\d]\w*)|#[ \t]*define[ \t]+([^\W\d]\w*)"
)


def identifier_tokens(identifier: str, tokenization: str = "both") -> tuple[str, ...]:
    """The BM25 tokens of one identifier: itself lower-cased ("identifiers"), its camelCase/snake_case sub-tokens of
    two characters or more, lower-cased ("subtokens"; the identifier itself when it has none), or both, without
    repeats ("both")."""
    whole = identifier.lower()
    if tokenization == "identifiers":
        return (whole,)
    parts = [part.lower() for part in _SUBTOKEN.findall(identifier) if len(part) > 1]
    if tokenization == "subtokens":
        return tuple(parts) if parts else (whole,)
    return (whole, *(part for part in dict.fromkeys(parts) if part != whole))


def definition_names(text: str) -> list[str]:
    """The names a text defines after a definition keyword (`def f`, `class C`, `func (r T) M`, `#define X`, ...),
    lower-cased. Definitions without a keyword (C and Java functions and methods) are not found."""
    return [(match.group(1) or match.group(2)).lower() for match in _DEFINITION.finditer(text)]


def code_tokens(text: str, tokenization: str = "both", definitions: bool = True) -> list[str]:
    """The BM25 tokens of a text: `identifier_tokens` of each identifier in order (numbers, operators and
    punctuation are left out), then a definition token per `definition_names` entry when `definitions`."""
    tokens = [token for name in _IDENTIFIER.findall(text) for token in identifier_tokens(name, tokenization)]
    return tokens + [DEFINITION_PREFIX + name for name in definition_names(text)] if definitions else tokens


class _IdentifierIds(dict):
    """identifier -> its token ids, filled on first sight (a dict read at C speed by `map`)."""

    def __init__(self, vocabulary: _Vocabulary) -> None:
        super().__init__()
        self.vocabulary = vocabulary

    def __missing__(self, identifier: str) -> tuple[int, ...]:
        tokens = identifier_tokens(identifier, self.vocabulary.tokenization)
        ids = self[identifier] = tuple(map(self.vocabulary.add, tokens))
        return ids


class _Vocabulary:
    """Token -> id, append-only and shared by all snapshots (ids >= a snapshot's size are newer than it). Grown only
    under the refresh lock; queries only read it."""

    def __init__(self, tokenization: str, definitions: bool) -> None:
        self.ids: dict[str, int] = {}
        self.definition_ids: list[int] = []
        self.tokenization, self.definitions = tokenization, definitions
        self._memo = _IdentifierIds(self)

    def add(self, token: str) -> int:
        token_id = self.ids.get(token)
        if token_id is None:
            token_id = self.ids[token] = len(self.ids)
            if token.startswith(DEFINITION_PREFIX):
                self.definition_ids.append(token_id)
        return token_id

    def file_ids(self, text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
        """The token ids of each chunk (character spans) of a text, adding new tokens."""
        lookup = self._memo.__getitem__
        chunks = [list(chain.from_iterable(map(lookup, _IDENTIFIER.findall(text, *span)))) for span in spans]
        if self.definitions and spans:
            starts = [start for start, _ in spans]
            for match in _DEFINITION.finditer(text):
                name = match.group(1) or match.group(2)
                chunk = bisect_right(starts, match.start(1 if match.group(1) else 2)) - 1
                chunks[chunk].append(self.add(DEFINITION_PREFIX + name.lower()))
        return chunks

    def query(self, text: str, size: int, weight: float) -> dict[int, float]:
        """Known token ids (< size) of a query text (definition tokens of its identifiers included) -> weight."""
        found: dict[int, float] = {}
        for identifier in _IDENTIFIER.findall(text):
            ids = self._memo.get(identifier)
            if ids is None:
                ids = tuple(self.ids.get(token, size) for token in identifier_tokens(identifier, self.tokenization))
            if self.definitions:
                ids = (*ids, self.ids.get(DEFINITION_PREFIX + identifier.lower(), size))
            found.update((token_id, weight) for token_id in ids if token_id < size)
        return found


# --- per-file entries and the BM25 matrix ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _FileEntry:
    """One indexed file: its text, chunk layout and cached (chunk, token, count) triples."""

    path: str
    language: str  # "" for a go.mod (kept for import resolution, no chunks)
    text: str
    mtime_ns: int
    size: int
    digest: bytes
    chunk_spans: np.ndarray  # (chunks, 2) character offsets of each chunk in `text`
    chunk_lengths: np.ndarray  # tokens per chunk (BM25 document length)
    pair_tokens: np.ndarray  # token id of each (chunk, token) pair; pairs sorted by chunk, then token
    pair_chunks: np.ndarray  # chunk index within the file
    pair_counts: np.ndarray  # occurrences of the token in the chunk

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_lengths)


def _chunk_spans(text: str, chunk_lines: int) -> list[tuple[int, int]]:
    """Character spans of the consecutive `chunk_lines`-line chunks of a text (lines end at "\\n")."""
    spans, start, length = [], 0, len(text)
    while start < length:
        end = start
        for _ in range(chunk_lines):
            end = text.find("\n", end) + 1
            if end == 0:
                end = length
                break
        spans.append((start, end))
        start = end
    return spans


def _file_entry(
    path: str, language: str, text: str, stat: tuple[int, int], digest: bytes, vocabulary: _Vocabulary, lines: int
) -> _FileEntry:
    spans = _chunk_spans(text, lines) if language else []
    chunks = vocabulary.file_ids(text, spans)
    lengths = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks))
    flat = np.fromiter(chain.from_iterable(chunks), dtype=np.int64, count=int(lengths.sum()))
    keys = (np.repeat(np.arange(len(spans), dtype=np.int64), lengths) << 32) | flat
    unique, counts = np.unique(keys, return_counts=True)
    return _FileEntry(
        path=path,
        language=language,
        text=text,
        mtime_ns=stat[0],
        size=stat[1],
        digest=digest,
        chunk_spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        chunk_lengths=lengths.astype(np.int32),
        pair_tokens=(unique & 0xFFFFFFFF).astype(np.int32),
        pair_chunks=(unique >> 32).astype(np.int32),
        pair_counts=counts.astype(np.int32),
    )


def _build_bm25_index(
    entries: list[_FileEntry], vocabulary_size: int, k1: float, b: float, column_weights: np.ndarray | None = None
) -> tuple[bm25s.BM25, np.ndarray]:
    """bm25s's "lucene" BM25 index of the chunks of `entries` (rows in entry order), from their cached triples;
    `column_weights` (one per token id) scales each token's column.

    Returns the `bm25s.BM25` (its `scores` hold the CSC matrix) and the first row of each entry followed by the
    number of rows.
    """
    offsets = np.zeros(len(entries) + 1, dtype=np.int64)
    np.cumsum([entry.chunk_count for entry in entries], out=offsets[1:])
    documents = int(offsets[-1])
    empty = np.zeros(0, dtype=np.int32)
    tokens = np.concatenate([empty, *(entry.pair_tokens for entry in entries)])
    rows = np.concatenate([empty, *(entry.pair_chunks + np.int32(offsets[i]) for i, entry in enumerate(entries))])
    term_counts = np.concatenate([empty, *(entry.pair_counts for entry in entries)]).astype(np.float32)
    lengths = np.concatenate([empty, *(entry.chunk_lengths for entry in entries)]).astype(np.float32)
    order = np.argsort((tokens.astype(np.int64) << 32) | rows)  # column (token) major, then row: CSC order
    tokens, rows, term_counts = tokens[order], rows[order], term_counts[order]
    frequencies = np.bincount(tokens, minlength=vocabulary_size)
    idf = np.log1p((documents - frequencies + 0.5) / (frequencies + 0.5)).astype(np.float32)
    if column_weights is not None:
        idf *= column_weights
    norms = (k1 * ((1 - b) + b * lengths / max(float(lengths.mean()) if documents else 1.0, 1e-9))).astype(np.float32)
    data = idf[tokens] * term_counts / (norms[rows] + term_counts)
    indptr = np.zeros(vocabulary_size + 1, dtype=np.int64)
    np.cumsum(frequencies, out=indptr[1:])
    index = bm25s.BM25(k1=k1, b=b, method="lucene")
    index.scores = {"data": data.astype(np.float32), "indices": rows, "indptr": indptr, "num_docs": documents}
    index.nonoccurrence_array = None
    return index, offsets


@dataclass
class _Snapshot:
    """An immutable view of the index that queries run on (a refresh swaps in a new one)."""

    entries: list[_FileEntry]  # by path
    index: bm25s.BM25
    offsets: np.ndarray  # first chunk row of each entry, then the number of rows
    vocabulary_size: int
    dependencies: dict[str, frozenset[str]]
    positions: dict[str, int] = field(init=False)  # path -> position in `entries`
    row_entry: np.ndarray = field(init=False)  # entry position of each row
    # import boosts per path (for a file not in the index: per path and imports)
    boosted: dict[str | tuple[str, ...], tuple[np.ndarray, np.ndarray, frozenset[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = {entry.path: position for position, entry in enumerate(self.entries)}
        self.row_entry = np.repeat(np.arange(len(self.entries)), np.diff(self.offsets))

    def rows_of(self, paths: set[str]) -> np.ndarray:
        spans = [(self.offsets[self.positions[path]], self.offsets[self.positions[path] + 1]) for path in paths]
        return np.concatenate([np.zeros(0, dtype=np.int64), *(np.arange(start, end) for start, end in spans)])


def _ranked_rows(scores: np.ndarray, count: int) -> Iterator[int]:
    """Rows of positive scores, best first (ties: lower row first). The first batch needs no sort of the whole
    vector and is exact: every row at or above the `count`-th best score of a 1/16 subsample (no true top-`count`
    score is below it); the other positive rows follow, sorted, only if the caller reads past that batch."""
    rest = scores > 0
    if len(scores) > 32 * count:
        sample = scores[::16]
        threshold = float(np.partition(sample, len(sample) - count)[len(sample) - count])
        if threshold > 0:
            rows = np.flatnonzero(scores >= threshold)
            yield from rows[np.lexsort((rows, -scores[rows]))].tolist()
            rest &= scores < threshold
    rows = np.flatnonzero(rest)
    yield from rows[np.lexsort((rows, -scores[rows]))].tolist()


def _line_key(text: str) -> tuple[str, ...]:
    """A text's non-blank lines, stripped: what deduplication and the local-window check compare."""
    return tuple(line for line in map(str.strip, text.split("\n")) if line)


def _normalized(path: str) -> str | None:
    """A repository-relative POSIX path without "." and ".." steps; None when empty or outside the repository."""
    normalized = posixpath.normpath(path.replace("\\", "/"))
    return None if normalized in (".", "..") or normalized.startswith(("../", "/")) else normalized


class RepositoryRetriever:
    """Indexes one repository's source files and returns the chunks most relevant to a cursor (see the module doc).

    Built on a folder (`RepositoryRetriever(root)`: indexed at once, `refresh()` updates it) or on files in memory
    (`RepositoryRetriever.from_files({...})`: benchmarks, tests, evaluation).
    """

    def __init__(self, root: str | os.PathLike, config: RetrievalConfig | None = None) -> None:
        self.config = config if config is not None else RetrievalConfig()
        self.root: Path | None = None
        self._vocabulary = _Vocabulary(self.config.tokenization, self.config.definition_weight > 0)
        self._entries: dict[str, _FileEntry] = {}
        self._skipped: dict[str, tuple[int, int]] = {}  # path -> (mtime_ns, size) of a file read and not indexed
        self._dependencies: dict[str, frozenset[str]] = {}
        self._snapshot_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._snapshot = self._build_snapshot()
        if root is _IN_MEMORY:
            return
        if not isinstance(root, str | os.PathLike) or not Path(root).is_dir():
            raise RepolmError(f"repository folder {root} does not exist or is not a folder")
        self.root = Path(root)
        self.refresh()

    @classmethod
    def from_files(cls, files: Mapping[str, str], config: RetrievalConfig | None = None) -> RepositoryRetriever:
        """A retriever over files in memory (repository-relative path -> text); files whose language is not indexed
        are left out. `refresh` has nothing to re-read and returns 0."""
        retriever = cls(_IN_MEMORY, config)  # type: ignore[arg-type]
        with retriever._refresh_lock:
            for raw_path, text in files.items():
                path = _normalized(raw_path) if isinstance(raw_path, str) else None
                if path is None or not isinstance(text, str):
                    raise RepolmError(f"from_files: {raw_path!r} must be a repository-relative path mapped to a text")
                language = retriever._language(path, text[:_HEAD_CHARACTERS])
                if language is not None:
                    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                    retriever._entries[path] = retriever._entry(path, language, text, (0, len(text)), digest)
            retriever._publish(set(retriever._entries), paths_changed=True)
        return retriever

    # --- indexing ------------------------------------------------------------------------------------------------
    def _language(self, path: str, head: str | None) -> str | None:
        """The language a file is indexed as ("" for a go.mod), or None when it is not indexed."""
        if posixpath.basename(path) == _GO_MODULE_FILE:
            return ""
        language = language_of(path, head)
        return language if self.config.indexes(language) else None

    def _entry(self, path: str, language: str, text: str, stat: tuple[int, int], digest: bytes) -> _FileEntry:
        return _file_entry(path, language, text, stat, digest, self._vocabulary, self.config.chunk_lines)

    def _scan(self) -> dict[str, tuple[str, int, int]]:
        """Every candidate file under the root: relative path -> (absolute path, mtime_ns, size). Symlinks are not
        followed; files whose name rules them out are not listed."""
        assert self.root is not None
        found: dict[str, tuple[str, int, int]] = {}
        pending = [(str(self.root), "")]
        while pending:
            folder, prefix = pending.pop()
            try:
                with os.scandir(folder) as scan:
                    listing = list(scan)
            except OSError as error:
                logger.warning("retrieval: cannot list %s: %s", folder, error)
                continue
            for item in listing:
                try:
                    if item.is_symlink():
                        continue
                    if item.is_dir(follow_symlinks=False):
                        if not item.name.startswith(".") and item.name not in self.config.skipped_directories:
                            pending.append((item.path, f"{prefix}{item.name}/"))
                        continue
                    by_name = language_of(item.name)
                    if by_name is None and "." in item.name.lstrip(".") and item.name != _GO_MODULE_FILE:
                        continue  # an unknown extension: no shebang or modeline makes it a source file
                    if by_name is not None and by_name != "C" and not self.config.indexes(by_name):
                        continue  # (a ".h" may still turn out C++)
                    if item.is_file(follow_symlinks=False):
                        status = item.stat(follow_symlinks=False)
                        found[prefix + item.name] = (item.path, status.st_mtime_ns, status.st_size)
                except OSError:
                    continue
        return found

    def _read(self, path: str, absolute: str, size: int) -> tuple[str, str, bytes] | None:
        """(language, text, content hash) of a file to index; None for one that is not (not source, binary,
        undecodable, too large, unreadable)."""
        limit = self.config.max_file_bytes
        if size > limit:
            return None
        try:
            with open(absolute, "rb") as handle:
                data = handle.read(limit + 1)
        except OSError as error:
            logger.debug("retrieval: cannot read %s: %s", absolute, error)
            return None
        if len(data) > limit or b"\0" in data[:_BINARY_PROBE_BYTES]:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        language = self._language(path, text[:_HEAD_CHARACTERS])
        return None if language is None else (language, text, hashlib.blake2b(data, digest_size=16).digest())

    def refresh(self) -> int:
        """Re-index the files added, changed or removed since the last index; returns how many there were.

        A file whose mtime and size are unchanged is not read; one whose content hash is unchanged is not
        re-tokenized and not counted. Later queries see the new index; running ones finish on the old one.
        """
        if self.root is None:
            return 0
        with self._refresh_lock:
            started = time.perf_counter()
            if not self.root.is_dir():
                raise RepolmError(f"repository folder {self.root} does not exist or is not a folder")
            found = self._scan()
            changed: set[str] = set()
            entries: dict[str, _FileEntry] = {}
            for path, (absolute, mtime_ns, size) in found.items():
                old, stat = self._entries.get(path), (mtime_ns, size)
                if old is not None and (old.mtime_ns, old.size) == stat:
                    entries[path] = old
                    continue
                if self._skipped.get(path) == stat:
                    continue
                read = self._read(path, absolute, size)
                if read is None:
                    self._skipped[path] = stat
                    continue
                self._skipped.pop(path, None)
                language, text, digest = read
                if old is not None and (old.digest, old.language) == (digest, language):
                    entries[path] = replace(old, mtime_ns=mtime_ns, size=size)
                else:
                    entries[path] = self._entry(path, language, text, stat, digest)
                    changed.add(path)
            self._skipped = {path: stat for path, stat in self._skipped.items() if path in found}
            changed |= set(self._entries) - set(entries)
            paths_changed = entries.keys() != self._entries.keys()
            self._entries = entries
            if changed:
                self._publish(changed, paths_changed)
            logger.info(
                "retrieval: %d files changed; %d files, %d chunks indexed (%.2f s)",
                len(changed),
                len(entries),
                self._snapshot.offsets[-1],
                time.perf_counter() - started,
            )
            return len(changed)

    def _update_dependencies(self, changed: set[str], paths_changed: bool) -> None:
        """The import graph after a change: only the changed files' imports again when no path was added or removed
        and all of them resolve from paths alone, else the whole graph."""
        files = [
            CodeFile(entry.path, entry.text, entry.language or "Text")
            for entry in self._entries.values()
            if entry.language in DEPENDENCY_LANGUAGES or not entry.language
        ]
        if paths_changed or any(self._entries[path].language in _OTHERS_RESOLVED_LANGUAGES | {""} for path in changed):
            self._dependencies = {path: frozenset(found) for path, found in resolve_dependencies(files).items()}
            return
        resolver = ImportResolver(files)
        for path in changed:
            if self._entries[path].language in DEPENDENCY_LANGUAGES:
                self._dependencies[path] = frozenset(resolver.dependencies(path))

    def _publish(self, changed: set[str], paths_changed: bool) -> None:
        if self.config.use_imports:
            self._update_dependencies(changed, paths_changed)
        snapshot = self._build_snapshot()
        with self._snapshot_lock:
            self._snapshot = snapshot

    def _build_snapshot(self) -> _Snapshot:
        size = len(self._vocabulary.ids)
        weights = np.ones(size, dtype=np.float32)
        weights[self._vocabulary.definition_ids] = self.config.definition_weight
        entries = [self._entries[path] for path in sorted(self._entries)]
        index, offsets = _build_bm25_index(entries, size, self.config.k1, self.config.b, weights)
        index.vocab_dict = self._vocabulary.ids
        return _Snapshot(entries, index, offsets, size, dict(self._dependencies))

    # --- inspection ----------------------------------------------------------------------------------------------
    @property
    def index(self) -> bm25s.BM25:
        """The current bm25s index (rows: the chunks of `chunks()` in that order; columns: token ids)."""
        with self._snapshot_lock:
            return self._snapshot.index

    def chunks(self) -> list[ContextSnippet]:
        """Every indexed chunk, in index row order (files by path, then by line)."""
        with self._snapshot_lock:
            snapshot = self._snapshot
        return [
            ContextSnippet(entry.path, entry.text[start:end], chunk * self.config.chunk_lines + 1)
            for entry in snapshot.entries
            for chunk, (start, end) in enumerate(entry.chunk_spans.tolist())
        ]

    def imports_of(self, path: str) -> frozenset[str]:
        """The indexed files that the indexed file `path` imports (empty when unknown or imports are off)."""
        with self._snapshot_lock:
            return self._snapshot.dependencies.get(self._relative(path), frozenset())

    # --- queries -------------------------------------------------------------------------------------------------
    def _imported(self, snapshot: _Snapshot, path: str, text: str) -> tuple[np.ndarray, np.ndarray, frozenset[str]]:
        """(rows of files `path` imports, rows of files those import, all those paths). A file not in the index (a
        new one) has its imports read from `text`, its text, and resolved against the indexed files."""
        key: str | tuple[str, ...] = path
        graph = snapshot.dependencies
        language = None if path in graph else language_of(path, text[:_HEAD_CHARACTERS])
        if language in DEPENDENCY_LANGUAGES:
            key = (path, *extract_imports(text, language))  # remembered while its imports stay the same
        if key in snapshot.boosted:
            return snapshot.boosted[key]
        direct = set(graph.get(path, ()))
        if language in DEPENDENCY_LANGUAGES:
            files = [CodeFile(entry.path, entry.text, entry.language or "Text") for entry in snapshot.entries]
            direct = ImportResolver([*files, CodeFile(path, text, language)]).dependencies(path)
        seen, frontier, transitive = {path} | direct, set(direct), set()
        for _ in range(self.config.max_import_depth - 1):
            frontier = {found for step in frontier for found in graph.get(step, ())} - seen
            transitive |= frontier
            seen |= frontier
        result = snapshot.boosted[key] = (
            snapshot.rows_of(direct),
            snapshot.rows_of(transitive),
            frozenset(direct | transitive),
        )
        return result

    def retrieve(self, path: str, prefix: str, suffix: str = "", top_k: int | None = None) -> list[ContextSnippet]:
        """The `top_k` (default `config.top_k`) chunks of other files most relevant to a cursor in `path`, best
        first (see the module doc). `path` is repository-relative (or absolute under the root); `prefix` and
        `suffix` are the file's text before and after the cursor."""
        count = self.config.top_k if top_k is None else top_k
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise RepolmError(f"retrieve: top_k must be an integer >= 0, got {top_k!r}")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise RepolmError("retrieve: prefix and suffix must be texts")
        current = self._relative(path)
        with self._snapshot_lock:
            snapshot = self._snapshot
        lines = prefix.rsplit("\n", self.config.query_lines)[-self.config.query_lines :]
        query = self._vocabulary.query("\n".join(lines[:-1]), snapshot.vocabulary_size, 1.0)
        query.update(self._vocabulary.query(lines[-1], snapshot.vocabulary_size, self.config.cursor_line_weight))
        if count == 0 or not query or snapshot.offsets[-1] == 0:
            return []
        matrix = snapshot.index.scores
        indptr, rows, data = matrix["indptr"], matrix["indices"], matrix["data"]
        columns = [(indptr[token], indptr[token + 1], weight) for token, weight in query.items()]
        scores = np.bincount(
            np.concatenate([rows[start:end] for start, end, _ in columns]),
            weights=np.concatenate(
                [data[start:end] * weight if weight != 1 else data[start:end] for start, end, weight in columns]
            ),
            minlength=int(snapshot.offsets[-1]),
        )
        imported: frozenset[str] = frozenset()
        if self.config.use_imports:
            direct, transitive, imported = self._imported(snapshot, current, prefix + suffix)
            scores[transitive] *= self.config.transitive_import_boost
            scores[direct] *= self.config.direct_import_boost
        if (position := snapshot.positions.get(current)) is not None:
            scores[snapshot.offsets[position] : snapshot.offsets[position + 1]] = 0
        window = set(_line_key("\n".join(prefix.rsplit("\n", self.config.window_lines)[-self.config.window_lines :])))
        window.update(_line_key("\n".join(suffix.split("\n", self.config.window_lines)[: self.config.window_lines])))
        snippets: list[ContextSnippet] = []
        seen: set[tuple[str, ...]] = set()
        for row in _ranked_rows(scores, 4 * count + 8):
            entry_position = int(snapshot.row_entry[row])
            entry, chunk = snapshot.entries[entry_position], row - int(snapshot.offsets[entry_position])
            start, end = entry.chunk_spans[chunk].tolist()
            key = _line_key(entry.text[start:end])
            if not key or key in seen or all(line in window for line in key):
                continue
            seen.add(key)
            line = chunk * self.config.chunk_lines + 1
            source = "import" if entry.path in imported else "bm25"
            snippets.append(ContextSnippet(entry.path, entry.text[start:end], line, float(scores[row]), source))
            if len(snippets) == count:
                break
        return snippets

    def _relative(self, path: str | os.PathLike) -> str:
        """`path` as a repository-relative POSIX path (an absolute one must lie under the root)."""
        text = os.fspath(path)
        if os.path.isabs(text) and self.root is not None:
            try:
                text = Path(text).resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError as error:
                raise RepolmError(f"retrieve: {path} is not inside the repository {self.root}") from error
        normalized = _normalized(text)
        if normalized is None:
            raise RepolmError(f"retrieve: {path!r} is not a path inside the repository")
        return normalized
