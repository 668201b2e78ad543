"""Benchmark decontamination: find files that contain benchmark questions, docstrings or solutions.

The paper's rule (section 2.4): a file that contains a 10-gram identical to one in the test data is excluded; a test
string shorter than 10 grams but of at least 3 grams is matched exactly. The unit is not stated; here a gram is a word:
a maximal run of ASCII letters, digits and "_", lowercased (`words`). Whitespace, punctuation, case and any non-ASCII
character separate words, so reindenting, rewrapping or recasing a copy does not hide it. A test string of 10 or more
words adds all its 10-grams to the index; one of 3..9 words is matched as a whole contiguous word sequence; shorter
strings are ignored. The unit of screening is whatever text the caller passes (`screen_contamination`: one file).

Indexed (`read_benchmark_strings`, from the folder described in shared/benchmarks/README.md): HumanEval prompt,
canonical_solution and declaration + canonical_solution (HumanEval.jsonl.gz and the identical humaneval-python.jsonl),
the prompts of the nine MultiPL-E HumanEval translations, MBPP text and code (mbpp.jsonl and its mbpp_test.jsonl
subset), LeetCode prompts, GSM8K question and answer, GSM-Hard input, SVAMP and ASDiv body + question. Not read:
HumanEval-infilling (its prompt + solution + suffix rebuilds a HumanEval prompt + canonical_solution, already indexed; a
test checks such files are caught), benchmark tests, and MATH (absent from the folder).

False positives, measured on this machine. Indexing every 10-gram (the rule as written) flags 64 of the 1,790 .py
files of the Python 3.11 stdlib (3.6%, test suite included) and 55 of the 15,224 .java files of the JDK 25 src.zip
(0.36%). Inspected, they are all boilerplate: digit runs ("0 1 2 3 4 5 6 7 8 9" in a HumanEval docstring matches every
hex table), "return x + y" (a 3-word HumanEval solution matched exactly), `def __init__(self, a, b): self.a = a ...`,
`for i in range(n): for j in range(n)`, "one 1 two 2 three 3". Two fixed rules take boilerplate out of the index:
- informative words: a sequence must hold at least `MIN_INFORMATIVE_WORDS` = 3 distinct words of 3+ characters that
  do not start with a digit and are not in `COMMON_WORDS` (keywords, common builtins, English function and number
  words);
- template text: a sequence found in more than `MAX_FAMILIES` = 2 different benchmark problems is dropped (the
  MultiPL-E Java import and C# using blocks, "write a python function to ..."). A problem's translations and variants
  (HumanEval/23 and its nine MultiPL-E versions, a GSM8K question and its GSM-Hard copy) are one problem.
With both: 1 stdlib file flagged (0.06%: collections/__init__.py, whose Counter.elements docstring "Iterator over
elements repeating each as many times as its count" is quoted by MBPP/810's text, a genuine 10-gram match kept by
design), 0 JDK files, and 0 of the 7,910 /usr/include, 1,942 npm and 1,193 Perl files. The cost: 30 of the 8,597
benchmark items (0.35%) are no longer found from their own full text, all trivial ones (HumanEval/47 median, /53 add,
/55 fib and their translations; MBPP/93 power, /822; a few one-line ASDiv questions). By field, a text holding only
that field is found for 99% of HumanEval prompts, 100% of GSM8K/SVAMP/LeetCode questions, 96% of MBPP texts, 63% of
HumanEval declaration + solution and 60% of MBPP code (short solutions are generic code). With 2 informative words
instead of 3: 2 stdlib files flagged (test_functools' `def __lt__(self, other): return self.value < other.value`)
and 2 items missed; with 4: 1 flagged and 208 items missed.

Speed: `find_contamination` hashes every word with numpy (polynomial hashes over prefix sums of the bytes), maps the
hashes to the index's word ids (a word the index does not hold breaks every window through it), hashes every window of
3..10 ids and looks it up in sorted arrays; a hit is confirmed by comparing the words. Measured: index build 2.4 s;
scanning 22-26 MB/s on one core (31.5 MB of stdlib .py, 213 MB of JDK .java).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from repolm.benchmark_folder import (
    HUMANEVAL,
    HUMANEVAL_DEEPSEEK,
    LEETCODE,
    MBPP_ALL,
    MBPP_TEST,
    MULTIPL_E,
    PAL_MATH,
)
from repolm.data.records import CodeFile, Exclusion
from repolm.errors import RepolmError, one_line

logger = logging.getLogger(__name__)

NGRAM_WORDS = 10
MIN_EXACT_WORDS = 3
MIN_INFORMATIVE_WORDS = 3
MAX_FAMILIES = 2
STAGE = "decontamination"
_WORD = re.compile(rb"[a-z0-9_]+")
_IS_WORD_BYTE = np.isin(np.arange(256), list(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"))
_WORD_BYTE_VALUE = np.where(_IS_WORD_BYTE, np.frombuffer(bytes(range(256)).lower(), np.uint8), 0).astype(np.uint64)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64; every hash wraps modulo 2**64
_HASH_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_POWER_CACHE = (np.ones(1, np.uint64), np.ones(1, np.uint64))
_BLOCK_BYTES = 1 << 20  # words are hashed block by block, so the cached powers stay small for long texts

# Words that carry no evidence of copying: keywords of the common languages, frequent builtins and types, English
# function words and number words. A fixed list, so the index does not depend on any corpus.
COMMON_WORDS = frozenset(
    """
    abstract and any arguments args array as assert async auto await bool boolean break byte case catch char class const
    constexpr continue def default del delete dict do double echo elif else end enum except export extends extern false
    fi final finally float fn for foreach from func function get global goto if impl implements import in include inline
    instanceof int integer interface is isinstance items key keys lambda len let list local long main map match max min
    mod module mut namespace native new nil none nonlocal not null number object of or override package pass print
    printf private protected pub public raise range register result return self set short signed sizeof static std str
    string struct sum super switch synchronized template then this throw throws true try tuple type typedef typename
    union unsigned use using val value values var vec vector virtual void volatile where while with yield
    the are was were been that these those its into than there their which what when who how has have had can will
    would should could may must but all each every some given
    zero one two three four five six seven eight nine ten eleven twelve hundred thousand million first second third
    """.split()
)


@dataclass(frozen=True)
class BenchmarkString:
    """One text field of one benchmark item.

    Attributes:
        benchmark: the set ("humaneval", "humaneval-java", "mbpp", "leetcode", "gsm8k", "gsm-hard", "svamp", "asdiv").
        item_id: the item's id, e.g. "HumanEval/0", "MBPP/11", "gsm8k/0".
        field: the field the text comes from ("prompt", "canonical_solution", "text", "code", "question", ...).
        text: the text.
        family: the problem the item is a version of; equal for translations and variants of one problem.
    """

    benchmark: str
    item_id: str
    field: str
    text: str
    family: str


@dataclass(frozen=True)
class Contamination:
    """A benchmark string found in a text.

    Attributes:
        benchmark: the benchmark set, e.g. "humaneval".
        item_id: the item, e.g. "HumanEval/0".
        field: the item's field that matched, e.g. "canonical_solution".
        ngram: the matched words, lowercased, joined by single spaces.
        match: "10-gram" (a window of a long string) or "exact" (a whole 3..9-word string).
    """

    benchmark: str
    item_id: str
    field: str
    ngram: str
    match: str


def words(text: str) -> list[str]:
    """The n-gram units of a text: maximal runs of ASCII letters, digits and "_", lowercased."""
    return [word.decode("ascii") for word in _WORD.findall(text.encode("utf-8", "surrogatepass").lower())]


def is_informative(word: str) -> bool:
    """Whether a word counts as evidence of copying (3+ characters, not a number, not in `COMMON_WORDS`)."""
    return len(word) >= 3 and not word[0].isdigit() and word not in COMMON_WORDS


def _read_json_lines(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _strings_of(
    benchmark: str,
    rows: Iterable[dict],
    fields: dict[str, str],
    item: Callable[[dict], str],
    family: Callable[[dict], str] | None,
) -> Iterator[BenchmarkString]:
    """BenchmarkStrings from rows: `fields` maps a field name to the row key(s) joined by a space ("Body+Question")."""
    for row in rows:
        item_id = item(row)
        for field, keys in fields.items():
            parts = [row.get(key) for key in keys.split("+")]
            if all(isinstance(part, str) for part in parts):
                text = " ".join(parts)  # type: ignore[arg-type]
                yield BenchmarkString(benchmark, item_id, field, text, family(row) if family else item_id)


def _humaneval_family(task_id: str) -> str:
    """ "HumanEval/23", "Python/23" and MultiPL-E's "HumanEval_23_strlen" all name HumanEval problem 23."""
    number = re.search(r"(\d+)", task_id)
    return f"HumanEval/{number.group(1)}" if number else task_id


# (benchmark file, {field: row keys}, item id, family). HumanEval-infilling is left out (see the module docstring).
_SETS = (
    (HUMANEVAL, {"prompt": "prompt", "canonical_solution": "canonical_solution"},
     lambda row: _humaneval_family(row["task_id"]), None),
    (HUMANEVAL_DEEPSEEK,
     {"prompt": "prompt", "canonical_solution": "canonical_solution",
      "declaration+canonical_solution": "declaration+canonical_solution"},
     lambda row: _humaneval_family(row["task_id"]), None),
    (MBPP_ALL, {"text": "text", "code": "code"}, lambda row: f"MBPP/{row['task_id']}", None),
    (MBPP_TEST, {"text": "prompt", "code": "code"}, lambda row: f"MBPP/{row['task_id']}", None),
    (LEETCODE, {"prompt": "prompt"}, lambda row: row["task_id"], None),
    (PAL_MATH["gsm8k"], {"question": "question", "answer": "answer"}, lambda row: f"gsm8k/{row['idx']}", None),
    (PAL_MATH["gsm-hard"], {"question": "input"}, lambda row: f"gsm-hard/{row['idx']}",
     lambda row: f"gsm8k/{row['idx']}"),
    (PAL_MATH["svamp"], {"question": "Body+Question"}, lambda row: f"svamp/{row['ID']}", None),
    (PAL_MATH["asdiv"], {"question": "body+question"}, lambda row: f"asdiv/{row['idx']}", None),
    *((file, {"prompt": "prompt"}, lambda row: row["task_id"], lambda row: _humaneval_family(row["task_id"]))
      for file in MULTIPL_E.values()),
)  # fmt: skip
INDEXED_FILES = tuple(file for file, *_ in _SETS)
"""The benchmark files whose strings are indexed (every file of the registry but HumanEval-infilling)."""


def read_benchmark_strings(folder: Path | str) -> tuple[list[BenchmarkString], list[str]]:
    """The benchmark strings of the shared benchmarks folder, and a note for each file that is absent or unreadable."""
    folder = Path(folder)
    strings: list[BenchmarkString] = []
    notes: list[str] = []
    for file, fields, item, family in _SETS:
        relative, benchmark = file.path, file.benchmark
        path = folder / relative
        if not path.is_file():
            notes.append(f"{relative}: absent (skipped)")
            continue
        try:
            strings.extend(_strings_of(benchmark, _read_json_lines(path), fields, item, family))
        except (OSError, ValueError, KeyError) as error:
            notes.append(f"{relative}: unreadable ({one_line(error)}; skipped)")
    return strings, notes


@dataclass
class _LengthTable:
    """The indexed word sequences of one length: sorted hashes, their word ids (rows) and their source strings."""

    hashes: np.ndarray  # uint64, sorted
    grams: np.ndarray  # uint32 [n, length]: row i is the word ids of hashes[i]
    origins: np.ndarray  # int32 [n]: index into BenchmarkIndex.origins


def _powers(count: int) -> tuple[np.ndarray, np.ndarray]:
    """B**k and B**-k modulo 2**64 for k < count (B = `_HASH_MULTIPLIER`), from a cache that grows by doubling."""
    global _POWER_CACHE
    if len(_POWER_CACHE[0]) < count:
        size = max(count, 2 * len(_POWER_CACHE[0]))
        powers, inverse = np.ones(size, np.uint64), np.ones(size, np.uint64)
        np.cumprod(np.full(size - 1, _HASH_MULTIPLIER, np.uint64), out=powers[1:])
        np.cumprod(np.full(size - 1, _HASH_INVERSE, np.uint64), out=inverse[1:])
        _POWER_CACHE = (powers, inverse)
    return _POWER_CACHE[0][:count], _POWER_CACHE[1][:count]


def _token_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`word_hash` of every word (codes[starts[i]:ends[i]]), from prefix sums over blocks of about `_BLOCK_BYTES`."""
    hashes = np.empty(len(starts), dtype=np.uint64)
    first = 0
    while first < len(starts):
        base = int(starts[first])
        last = max(int(np.searchsorted(starts, base + _BLOCK_BYTES)), first + 1)
        powers, inverse_powers = _powers(int(ends[last - 1]) - base)
        prefix = np.zeros(len(powers) + 1, dtype=np.uint64)
        np.cumsum(_WORD_BYTE_VALUE[codes[base : base + len(powers)]] * powers, out=prefix[1:])
        block_starts, block_ends = starts[first:last] - base, ends[first:last] - base
        hashes[first:last] = (prefix[block_ends] - prefix[block_starts]) * inverse_powers[block_starts]
        first = last
    return hashes


def word_hash(word: str) -> int:
    """The 64-bit hash of one (lowercased ASCII) word, as `BenchmarkIndex` computes it with numpy."""
    return sum(byte * pow(int(_HASH_MULTIPLIER), position, 1 << 64) for position, byte in enumerate(word.encode())) % (
        1 << 64
    )


def _sequence_hashes(ids: np.ndarray) -> np.ndarray:
    """The polynomial hash (uint64, wrapping) of each row of word ids."""
    hashes = ids[:, 0].astype(np.uint64)
    for column in range(1, ids.shape[1]):
        hashes = hashes * _HASH_MULTIPLIER + ids[:, column].astype(np.uint64)
    return hashes


class BenchmarkIndex:
    """The 10-grams and short strings of benchmark data, for `find_contamination`.

    Attributes:
        origins: (benchmark, item_id, field) of each indexed string.
        item_counts: items read per benchmark.
        candidate_count / kept_count: distinct word sequences before and after the boilerplate rules.
        notes: files of the benchmarks folder that were absent or unreadable (`from_folder`).
    """

    def __init__(self, strings: Iterable[BenchmarkString]) -> None:
        self.origins: list[tuple[str, str, str]] = []
        self.item_counts: dict[str, int] = {}
        self.notes: list[str] = []
        first_ids: dict[str, int] = {}  # word -> provisional id (1-based, first appearance)
        family_ids: dict[str, int] = {}
        windows: dict[int, list[tuple[np.ndarray, int, int]]] = {}  # length -> (windows, origin, family)
        items_seen: set[tuple[str, str]] = set()
        for string in strings:
            if (string.benchmark, string.item_id) not in items_seen:
                items_seen.add((string.benchmark, string.item_id))
                self.item_counts[string.benchmark] = self.item_counts.get(string.benchmark, 0) + 1
            tokens = words(string.text)
            if len(tokens) < MIN_EXACT_WORDS:
                continue
            ids = np.array([first_ids.setdefault(word, len(first_ids) + 1) for word in tokens], dtype=np.uint32)
            length = min(len(tokens), NGRAM_WORDS)
            family = family_ids.setdefault(string.family, len(family_ids))
            windows.setdefault(length, []).append((sliding_window_view(ids, length), len(self.origins), family))
            self.origins.append((string.benchmark, string.item_id, string.field))
        informative = np.zeros(len(first_ids) + 1, dtype=bool)
        for word, number in first_ids.items():
            informative[number] = is_informative(word)
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.candidate_count = self.kept_count = 0
        for length, parts in sorted(windows.items()):
            grams, origins = self._filter(parts, length, len(family_ids), informative)
            self.kept_count += len(grams)
            kept[length] = grams, origins
        # Final ids: 1..V in sorted word order; 0 stands for a word the index does not hold.
        words_by_first_id = [""] + list(first_ids)
        used = np.unique(np.concatenate([grams.ravel() for grams, _ in kept.values()] + [np.zeros(0, np.uint32)]))
        self.words = [""] + sorted(words_by_first_id[number] for number in used)
        final_ids = np.zeros(len(first_ids) + 1, dtype=np.uint32)
        for number, word in enumerate(self.words[1:], start=1):
            final_ids[first_ids[word]] = number
        word_hashes = np.array([word_hash(word) for word in self.words[1:]], dtype=np.uint64)
        order = np.argsort(word_hashes, kind="stable")
        self._word_hashes, self._word_ids = word_hashes[order], (order + 1).astype(np.uint64)
        if np.any(self._word_hashes[1:] == self._word_hashes[:-1]):
            raise RuntimeError("two benchmark words share a 64-bit hash; change _HASH_MULTIPLIER")
        self.tables: dict[int, _LengthTable] = {}
        for length, (grams, origins) in kept.items():
            if len(grams):
                grams = final_ids[grams]
                hashes = _sequence_hashes(grams)
                order = np.argsort(hashes, kind="stable")
                self.tables[length] = _LengthTable(hashes[order], grams[order], origins[order])
        logger.info(
            "benchmark index: %d items, %d of %d word sequences kept",
            len(items_seen),
            self.kept_count,
            self.candidate_count,
        )

    def _filter(
        self, parts: list[tuple[np.ndarray, int, int]], length: int, family_count: int, informative: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The distinct sequences of one length that pass the boilerplate rules, and each one's first origin."""
        grams = np.ascontiguousarray(np.concatenate([windows for windows, _, _ in parts]))
        origins = np.concatenate([np.full(len(windows), origin, np.int32) for windows, origin, _ in parts])
        families = np.concatenate([np.full(len(windows), family, np.int64) for windows, _, family in parts])
        rows = grams.view(np.dtype((np.void, grams.itemsize * length))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        self.candidate_count += len(first)
        pairs = np.unique(inverse.ravel().astype(np.int64) * family_count + families)
        family_counts = np.bincount(pairs // family_count, minlength=len(first))
        distinct = np.sort(grams[first], axis=1)
        new_word = np.ones_like(distinct, dtype=bool)
        new_word[:, 1:] = distinct[:, 1:] != distinct[:, :-1]
        informative_counts = (new_word & informative[distinct]).sum(axis=1)
        keep = (family_counts <= MAX_FAMILIES) & (informative_counts >= MIN_INFORMATIVE_WORDS)
        return grams[first[keep]], origins[first[keep]]

    @classmethod
    def from_folder(cls, folder: Path | str) -> BenchmarkIndex:
        """The index of every set in the shared benchmarks folder (`RepolmError` if it holds none)."""
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise RepolmError(f"benchmarks folder {folder} does not exist")
        strings, notes = read_benchmark_strings(folder)
        for note in notes:
            logger.warning("benchmarks folder %s: %s", folder, note)
        if not strings:
            raise RepolmError(f"benchmarks folder {folder} holds none of the benchmark files")
        index = cls(strings)
        index.notes = notes
        return index

    def find_contamination(self, text: str) -> Contamination | None:
        """The first (earliest in the text, then longest) indexed word sequence that the text contains, or None."""
        if not self.tables:
            return None
        data = text.encode("utf-8", "surrogatepass")
        codes = np.frombuffer(data, dtype=np.uint8)
        edges = np.diff(_IS_WORD_BYTE[codes].view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if len(starts) < MIN_EXACT_WORDS:
            return None
        token_hashes = _token_hashes(codes, starts, ends)
        slots = np.searchsorted(self._word_hashes, token_hashes) % len(self._word_hashes)
        ids = np.where(self._word_hashes[slots] == token_hashes, self._word_ids[slots], np.uint64(0))
        unknown_before = np.concatenate(([0], np.cumsum(ids == 0)))
        if unknown_before[-1] > len(ids) - MIN_EXACT_WORDS:
            return None
        best: tuple[int, int, int] | None = None  # (position, -length, origin)
        hashes = ids  # hashes[i]: the hash of the `length` ids from position i
        for length in range(2, NGRAM_WORDS + 1):
            if len(ids) < length:
                break
            hashes = hashes[:-1] * _HASH_MULTIPLIER + ids[length - 1 :]
            table = self.tables.get(length)
            clean = np.flatnonzero(unknown_before[length:] == unknown_before[:-length]) if table else []
            if len(clean) == 0:
                continue
            spans = (data, starts, ends)
            found = self._confirmed(table, ids, clean, hashes[clean], length, spans)  # type: ignore[arg-type]
            if found is not None and (best is None or (found[0], -length) < best[:2]):
                best = (found[0], -length, found[1])
        if best is None:
            return None
        position, length = best[0], -best[1]
        benchmark, item_id, field = self.origins[best[2]]
        ngram = " ".join(_span_words(data, starts, ends, position, length))
        return Contamination(benchmark, item_id, field, ngram, "10-gram" if length == NGRAM_WORDS else "exact")

    def _confirmed(
        self,
        table: _LengthTable,
        ids: np.ndarray,
        positions: np.ndarray,
        hashes: np.ndarray,
        length: int,
        spans: tuple[bytes, np.ndarray, np.ndarray],
    ) -> tuple[int, int] | None:
        """(position, origin) of the earliest window whose hash is in the table and whose words equal a row's."""
        slots = np.searchsorted(table.hashes, hashes) % len(table.hashes)
        for index in np.flatnonzero(table.hashes[slots] == hashes):
            position, slot = int(positions[index]), int(slots[index])
            window = _span_words(*spans, position, length)
            while slot < len(table.hashes) and table.hashes[slot] == hashes[index]:
                if [self.words[number] for number in table.grams[slot]] == window:
                    return position, int(table.origins[slot])
                slot += 1
        return None


def _span_words(data: bytes, starts: np.ndarray, ends: np.ndarray, position: int, length: int) -> list[str]:
    return [data[starts[i] : ends[i]].decode("ascii").lower() for i in range(position, position + length)]


def screen_contamination(repo: str, code_file: CodeFile, index: BenchmarkIndex) -> Exclusion | None:
    """An `Exclusion` (stage "decontamination", reason = the benchmark) if the file holds benchmark text, else None."""
    found = index.find_contamination(code_file.text)
    if found is None:
        return None
    detail = f"{found.item_id} {found.field} ({found.match}): {found.ngram!r}"
    return Exclusion(repo=repo, path=code_file.path, stage=STAGE, reason=found.benchmark, detail=detail)
