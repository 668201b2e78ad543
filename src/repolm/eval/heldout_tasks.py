"""Held-out evaluations of a base model on repositories it never saw, each next to a baseline that needs no model.

Data: a held-out folder of `repolm data build` (`heldout/`, or any folder) whose `<kind>/NNNNN.jsonl.zst` files hold
one repository sample a line (`RepoSample`'s fields: text, id, repo, files, offsets, languages, source, kind, part).
`read_heldout_samples` reads them in the order `repolm.eval.heldout_loss` reads documents and cuts each back into its
files: file i is `text[offsets[i]:offsets[i + 1]]` (the last runs to the end), the block the sample was assembled from
(`repolm.data.assembly.file_block`): its path comment, its text, and the separator before the next file. Training's
FIM cuts samples at the same offsets (`repolm.tokenizer.fim.split_files`). A record without `files` is one file of the
language "unknown".

Model: every function takes a model folder (Hugging Face layout, loaded on `device` in `dtype` as
`repolm.infer.text.load_model_and_tokenizer` loads it) or a `TextGenerator` loaded already (`load_generator`), so a
caller running several evaluations loads the model once; `device` and `dtype` then do not apply. Text from files is
always encoded with special-token strings as plain text (as `repolm data tokenize` encodes it). Bad input (a missing
folder, a folder without held-out samples, bad options) raises `RepolmError` naming the path or option before the
model loads. Results are JSON-serialisable dicts; each names "model" (the folder; None when given a
`TextGenerator`), "device" and "dtype".

Evaluations here:
- `bits_per_byte_by_language`: the held-out loss of `repolm.eval.heldout_loss` (same documents, context token,
  windows, `max_bytes` cut) with each token's NLL attributed to the language of the file its first character lies
  in, next to xz and zstd on exactly the bytes of each language.
- `fim_middle_loss`: the loss of the middle of PSM FIM examples (training's character-level split), next to the loss
  of the same middle tokens scored left to right after the prefix only.
- `instruct_format_share`: the share of an instruct model's greedy answers to held-out instructions that end with
  `<|EOT|>` within the token budget (`repolm.eval.instruct_format`).
Line infilling with a BM25 baseline and sample generations are in `repolm.eval.heldout_infilling`.

Files used as examples (`spread_files`): the code files (languages that are not prose; Markdown, reStructuredText
and Text are left out) of the samples read, one repository after another in turn (each repository's files in an order
shuffled with the seed), so that a cap on examples still covers many repositories.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import lzma
import math
import os
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from tqdm import tqdm

from repolm.data.languages import get_language, path_header
from repolm.errors import RepolmError, one_line
from repolm.eval.heldout_loss import ContextStart, cut_to_bytes, data_files, start_token, token_nats, window_spans
from repolm.infer.text import TextGenerator
from repolm.tokenizer import CodeTokenizer
from repolm.tokenizer.corpus import document_rng
from repolm.tokenizer.fim import FimPlan, FimTokenIds, fim_split, layout_fim

logger = logging.getLogger(__name__)

ModelLike = str | os.PathLike | TextGenerator
"""A model folder, or a `TextGenerator` loaded already."""

UNKNOWN_LANGUAGE = "unknown"
XZ_PRESET = 9 | lzma.PRESET_EXTREME  # `xz -9e`
ZSTD_LEVEL = 19  # `zstd -19`
FIM_ROOM = 16
"""Tokens kept free in a FIM example's window: the context token, three sentinels, and the few more tokens that
encoding prefix, middle and suffix apart can take than encoding the file whole."""


# -----------------------------------------------------------------------------
# Held-out samples and their files


@dataclass(frozen=True)
class HeldoutFile:
    """One file of a held-out sample.

    Attributes:
        repo: the repository name; path: the file's path in it; language: its language (as the build found it).
        block: the file as it appears in the sample: its path comment, its text, the separator after it.
        header_length: characters of the path comment at the start of `block` (0 when the block has none).
        sample: the sample's id.
    """

    repo: str
    path: str
    language: str
    block: str
    header_length: int
    sample: str

    @property
    def is_code(self) -> bool:
        """Whether the file is code: its language is not prose (Markdown, reStructuredText, Text) and not empty."""
        if not self.block[self.header_length :].strip():
            return False
        try:
            return not get_language(self.language).is_text
        except ValueError:  # a language the table does not know (e.g. "unknown")
            return True


@dataclass
class HeldoutSample:
    """One held-out repository sample: its id, repository, kind, text, and files with where each starts."""

    id: str
    repo: str
    kind: str
    text: str
    files: list[HeldoutFile] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)


def _header_length(language: str, path: str, block: str) -> int:
    try:
        header = path_header(language, path)
    except ValueError:
        return 0
    return len(header) if header and block.startswith(header) else 0


def _sample(record: Any, where: str) -> HeldoutSample | None:
    """The sample of one JSON record; RepolmError naming `where` when it is malformed; None when its text is empty."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise RepolmError(f"{where}: expected a JSON object with a string field 'text'")
    text = record["text"]
    if not text:
        return None
    sample_id = str(record.get("id", where))
    repo = str(record.get("repo", sample_id))
    paths = record.get("files") or [sample_id]
    languages = record.get("languages") or [UNKNOWN_LANGUAGE] * len(paths)
    starts = record.get("offsets") or ([0] if len(paths) == 1 else None)
    valid = (
        isinstance(paths, list)
        and isinstance(languages, list)
        and isinstance(starts, list)
        and len(paths) == len(languages) == len(starts)
        and all(isinstance(item, str) for item in [*paths, *languages])
        and all(type(start) is int for start in starts)
        and starts == sorted(starts)
        and starts[0] == 0
        and starts[-1] <= len(text)
    )
    if not valid:
        raise RepolmError(
            f"{where}: 'files', 'languages' and 'offsets' must be lists of the same length, the offsets increasing "
            "from 0 within 'text'"
        )
    sample = HeldoutSample(sample_id, repo, str(record.get("kind", "")), text)
    for index, (path, language, start) in enumerate(zip(paths, languages, starts, strict=True)):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        block = text[start:end]
        sample.files.append(HeldoutFile(repo, path, language, block, _header_length(language, path, block), sample_id))
        sample.starts.append(start)
    return sample


def _records(path: Path, relative_name: str) -> Iterator[tuple[Any, str]]:
    with path.open("rb") as raw:
        binary = zstandard.ZstdDecompressor().stream_reader(raw) if path.name.endswith(".zst") else raw
        lines = io.TextIOWrapper(binary, encoding="utf-8")
        try:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{relative_name}:{number}"
                try:
                    yield json.loads(line), where
                except json.JSONDecodeError as error:
                    raise RepolmError(f"{path}:{number}: not a JSON line ({one_line(error)})") from None
        except (UnicodeDecodeError, zstandard.ZstdError) as error:
            raise RepolmError(f"{path}: cannot read it ({one_line(error)})") from None


def read_heldout_samples(folder: str | os.PathLike, max_documents: int | None = None) -> Iterator[HeldoutSample]:
    """The samples of a held-out folder (see the module docstring), at most `max_documents` of them, in the order
    `repolm.eval.heldout_loss.iter_documents` reads them. RepolmError for a missing folder or one without JSONL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RepolmError(f"held-out data {folder}: no such folder")
    files = data_files(folder)
    if not files:
        raise RepolmError(f"held-out data {folder}: no .jsonl or .jsonl.zst files in it or its subfolders")
    count = 0
    for file in files:
        for record, where in _records(file, file.relative_to(folder).as_posix()):
            if max_documents is not None and count >= max_documents:
                return
            sample = _sample(record, where)
            if sample is not None:
                count += 1
                yield sample


def first_samples(folder: str | os.PathLike, max_documents: int | None) -> Iterator[HeldoutSample]:
    """`read_heldout_samples`, checked to hold at least one sample before anything else runs (RepolmError naming
    the folder otherwise)."""
    if max_documents is not None and max_documents < 1:
        raise RepolmError(f"max_documents must be >= 1, got {max_documents}")
    samples = read_heldout_samples(folder, max_documents)
    first = next(samples, None)
    if first is None:
        raise RepolmError(f"held-out data {folder}: no held-out documents")
    return itertools.chain([first], samples)


def spread_files(samples: list[HeldoutSample], seed: int) -> list[HeldoutFile]:
    """The code files of `samples`, one repository after another in turn, each repository's files shuffled with
    `seed` (see the module docstring)."""
    by_repo: dict[str, list[HeldoutFile]] = {}
    for sample in samples:
        by_repo.setdefault(sample.repo, []).extend(file for file in sample.files if file.is_code)
    queues = []
    for repo, files in by_repo.items():
        order = document_rng(seed, f"spread\x00{repo}").permutation(len(files))
        queues.append([files[index] for index in order])
    return [file for turn in itertools.zip_longest(*queues) for file in turn if file is not None]


# -----------------------------------------------------------------------------
# Models


def load_generator(model_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> TextGenerator:
    """A `TextGenerator` over a model folder (its model on `device` in `dtype`, its tokenizer), to pass to several
    evaluations; RepolmError naming the folder when it cannot be loaded."""
    from repolm.infer.engine import Engine
    from repolm.infer.text import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, device, dtype)
    return TextGenerator(Engine(model), tokenizer)


def resolve_generator(model: ModelLike, device: str = "auto", dtype: str = "auto") -> TextGenerator:
    """`model` itself when it is a `TextGenerator`, else `load_generator(model, device, dtype)`."""
    if isinstance(model, TextGenerator):
        return model
    return load_generator(model, device, dtype)


def describe_model(model: ModelLike, generator: TextGenerator) -> dict[str, str | None]:
    """What produced a result: "model" (the model folder; None when given a `TextGenerator`), "device", "dtype"."""
    weight = generator.engine.model.embed_tokens.weight
    folder = None if isinstance(model, TextGenerator) else str(Path(model).resolve())
    return {"model": folder, "device": str(weight.device), "dtype": str(weight.dtype).removeprefix("torch.")}


def check_positive(**values: int | None) -> None:
    """RepolmError naming the first of `values` (name=value) that is not None and not an integer >= 1."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RepolmError(f"{name} must be an integer >= 1, got {value!r}")


def _losses(nats: float, tokens: int, size: int) -> dict[str, float | None]:
    """Nats, loss per token and bits per byte (None where there is nothing to divide by)."""
    return {
        "nats": nats,
        "loss_per_token": nats / tokens if tokens else None,
        "bits_per_byte": nats / math.log(2) / size if size else None,
    }


# -----------------------------------------------------------------------------
# Bits per byte per language, with xz and zstd


def compressed_sizes(data: bytes) -> tuple[int, int]:
    """(xz size, zstd size) in bytes of `data` compressed as one stream: `lzma` FORMAT_XZ at preset
    9 | PRESET_EXTREME (`xz -9e`), `zstandard` at level 19 (`zstd -19`), each in one call (the whole input known)."""
    xz = lzma.compress(data, format=lzma.FORMAT_XZ, preset=XZ_PRESET)
    zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    return len(xz), len(zstd)


@dataclass
class _LanguageTotals:
    documents: int = 0
    files: int = 0
    tokens: int = 0
    nats: float = 0.0
    parts: list[bytes] = field(default_factory=list)


def bits_per_byte_by_language(
    model: ModelLike,
    data: str | os.PathLike,
    max_seq_len: int = 2048,
    stride: int | None = None,
    batch_size: int = 4,
    max_documents: int | None = None,
    max_bytes: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    context_start: ContextStart = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Bits per byte of the model per language on held-out samples, and of xz and zstd on the same bytes.

    Scoring is `repolm.eval.heldout_loss.heldout_bits_per_byte`'s on the same folder: each whole sample tokenized
    alone after one unscored context token, windows of `max_seq_len` `stride` apart, samples taken in order until
    `max_documents` samples or `max_bytes` bytes (the last cut at a character boundary), so the totals are its
    totals. Each token's NLL goes to the language of the file in whose span (`HeldoutFile.block`: path comment,
    text and the separator after it) the token's first character lies; a language's bytes are the UTF-8 bytes of
    its files' spans, so the languages' bytes add up to the total. Baselines: each language's bytes, concatenated
    in reading order, compressed as one stream by xz (`lzma`, FORMAT_XZ, preset 9 | PRESET_EXTREME) and by zstd
    (`zstandard`, level 19): bits per byte = compressed size * 8 / bytes. The total's baselines are the languages'
    compressed sizes summed (one stream per language, not one for all). The compressors hold the scored bytes in
    memory and take about a second per MB (xz -9e is the slow one).

    Returns {"languages": {name: row}, "total": row, "repositories": {name: row} (the same per repository, each
    repository's bytes one stream for the compressors), "model", "device", "dtype", "data", "max_seq_len", "stride",
    "context_start", "max_documents", "max_bytes", "windows", "seconds", "compression_seconds", "baselines"}; languages
    by bytes, most first; a row is {"documents" (samples holding the language), "files", "bytes", "tokens", "nats",
    "loss_per_token", "bits_per_byte", "xz_bytes", "xz_bits_per_byte", "zstd_bytes", "zstd_bits_per_byte"}
    (loss_per_token None for a language no token starts in).
    """
    if max_seq_len < 2:
        raise RepolmError(f"max_seq_len must be >= 2, got {max_seq_len}")
    stride = max_seq_len - 1 if stride is None else stride
    if not 1 <= stride <= max_seq_len - 1:
        raise RepolmError(f"stride must be in [1, max_seq_len - 1 = {max_seq_len - 1}], got {stride}")
    check_positive(batch_size=batch_size, max_bytes=max_bytes)
    samples = first_samples(data, max_documents)
    started = time.perf_counter()
    generator = resolve_generator(model, device, dtype)
    tokenizer = generator.tokenizer
    context_start, start_id = start_token(tokenizer, context_start, data)
    backend = tokenizer.encoding_backend(literal_special_tokens=True)

    totals: dict[str, _LanguageTotals] = {}
    repository_totals: dict[str, _LanguageTotals] = {}  # the same, per repository
    token_languages: list[list[str]] = []  # the file languages of each queued document, in order
    token_repositories: list[list[str]] = []  # the file repositories of each queued document, in order
    token_files: list[np.ndarray] = []  # file index of each scored token of each queued document
    counts = {"documents": 0, "windows": 0}

    def sequences() -> Iterator[list[int]]:
        remaining = max_bytes
        for sample in samples:
            if remaining is not None and remaining <= 0:
                return
            text = sample.text if remaining is None else cut_to_bytes(sample.text, remaining)
            if not text:
                continue
            encoding = backend.encode(text, add_special_tokens=False)
            starts = [offset for offset, _ in encoding.offsets]
            file_of_token = np.array([bisect_right(sample.starts, start) - 1 for start in starts], dtype=np.int64)
            seen_languages: set[str] = set()
            seen_repositories: set[str] = set()
            for index, file in enumerate(sample.files):
                begin = sample.starts[index]
                end = min(begin + len(file.block), len(text))
                if end <= begin:
                    continue
                block = text[begin:end].encode("utf-8")
                for key, table, seen in (
                    (file.language, totals, seen_languages),
                    (file.repo, repository_totals, seen_repositories),
                ):
                    row = table.setdefault(key, _LanguageTotals())
                    row.files += 1
                    row.parts.append(block)
                    if key not in seen:
                        seen.add(key)
                        row.documents += 1
            token_languages.append([file.language for file in sample.files])
            token_repositories.append([file.repo for file in sample.files])
            token_files.append(file_of_token)
            ids = [start_id, *encoding.ids]
            counts["documents"] += 1
            counts["windows"] += sum(1 for _ in window_spans(len(ids), max_seq_len, stride))
            if remaining is not None:
                remaining -= len(text.encode("utf-8"))
            yield ids

    model_of = generator.engine.model
    with tqdm(desc="held-out bits per byte", unit="doc", disable=not progress) as bar:
        for nats in token_nats(model_of, sequences(), max_seq_len, stride, batch_size):
            languages, files = token_languages.pop(0), token_files.pop(0)
            repositories = token_repositories.pop(0)
            file_nats = np.bincount(files, weights=nats, minlength=len(languages))
            file_tokens = np.bincount(files, minlength=len(languages))
            for index, (language, repository) in enumerate(zip(languages, repositories, strict=True)):
                if file_tokens[index]:
                    for row in (totals[language], repository_totals[repository]):
                        row.nats += float(file_nats[index])
                        row.tokens += int(file_tokens[index])
            bar.update(1)
    scoring_seconds = time.perf_counter() - started

    def compressed_rows(table: dict[str, _LanguageTotals], bar) -> dict[str, dict[str, Any]]:
        rows = {}
        for name, row in table.items():
            joined = b"".join(row.parts)
            xz_bytes, zstd_bytes = compressed_sizes(joined)
            rows[name] = _bits_row(row.documents, row.files, len(joined), row, xz_bytes, zstd_bytes)
            bar.update(1)
        return rows

    total_rows = len(totals) + len(repository_totals)
    with tqdm(desc="xz and zstd", unit="row", total=total_rows, disable=not progress) as bar:
        rows = dict(sorted(compressed_rows(totals, bar).items(), key=lambda item: -item[1]["bytes"]))
        repository_rows = dict(sorted(compressed_rows(repository_totals, bar).items()))
    all_nats = sum(language.nats for language in totals.values())
    all_tokens = sum(language.tokens for language in totals.values())
    total = _bits_row(
        counts["documents"],
        sum(row["files"] for row in rows.values()),
        sum(row["bytes"] for row in rows.values()),
        _LanguageTotals(tokens=all_tokens, nats=all_nats),
        sum(row["xz_bytes"] for row in rows.values()),
        sum(row["zstd_bytes"] for row in rows.values()),
    )
    seconds = time.perf_counter() - started
    result = {
        "languages": rows,
        "total": total,
        "repositories": repository_rows,
        **describe_model(model, generator),
        "data": str(Path(data)),
        "max_seq_len": max_seq_len,
        "stride": stride,
        "context_start": context_start,
        "max_documents": max_documents,
        "max_bytes": max_bytes,
        "windows": counts["windows"],
        "seconds": seconds,
        "compression_seconds": seconds - scoring_seconds,
        "baselines": {
            "xz": "lzma FORMAT_XZ, preset 9 | PRESET_EXTREME (xz -9e), one stream per language",
            "zstd": "zstandard level 19 (zstd -19), one frame per language",
        },
    }
    logger.info(
        "held-out bits per byte: model %.4f, xz %.4f, zstd %.4f over %d bytes in %d languages (%.1f s)",
        total["bits_per_byte"],
        total["xz_bits_per_byte"],
        total["zstd_bits_per_byte"],
        total["bytes"],
        len(rows),
        seconds,
    )
    return result


def _bits_row(
    documents: int, files: int, size: int, language: _LanguageTotals, xz_bytes: int, zstd_bytes: int
) -> dict[str, Any]:
    return {
        "documents": documents,
        "files": files,
        "bytes": size,
        "tokens": language.tokens,
        **_losses(language.nats, language.tokens, size),
        "xz_bytes": xz_bytes,
        "xz_bits_per_byte": xz_bytes * 8 / size if size else None,
        "zstd_bytes": zstd_bytes,
        "zstd_bits_per_byte": zstd_bytes * 8 / size if size else None,
    }


# -----------------------------------------------------------------------------
# Loss on FIM middles


@dataclass
class FimExample:
    """One PSM FIM example of a held-out file: the file (cut to fit the window) split as training splits it.

    Attributes:
        file: the held-out file. prefix, middle, suffix: its (cut) block split at two character cuts.
        fim_ids: context token + PSM layout (begin prefix hole suffix end middle); the middle's ids come last.
        left_to_right_ids: context token + prefix + middle; the middle's ids come last (the same ids as in fim_ids).
        middle_tokens: the number of middle ids.
    """

    file: HeldoutFile
    prefix: str
    middle: str
    suffix: str
    fim_ids: list[int]
    left_to_right_ids: list[int]
    middle_tokens: int


def fim_examples(
    files: list[HeldoutFile],
    tokenizer: CodeTokenizer,
    start_id: int,
    seed: int,
    max_seq_len: int,
    max_examples: int,
) -> tuple[list[FimExample], dict[str, int]]:
    """PSM examples of `files`, one per file, until `max_examples` (see `fim_middle_loss`), and counts of the files
    left out ("empty_middle") or cut to fit the window ("cut_files")."""
    token_ids = FimTokenIds.of(tokenizer)
    backend = tokenizer.encoding_backend(literal_special_tokens=True)
    limit = max(max_seq_len - FIM_ROOM, 1)
    examples: list[FimExample] = []
    counts = {"empty_middle": 0, "cut_files": 0}
    for file in files:
        if len(examples) >= max_examples:
            break
        text = file.block
        encoding = backend.encode(text, add_special_tokens=False)
        if len(encoding.ids) > limit:
            text = text[: encoding.offsets[limit][0]]
            counts["cut_files"] += 1
        rng = document_rng(seed, f"fim\x00{file.sample}\x00{file.path}")
        prefix, middle, suffix = fim_split(text, rng)
        if not middle:
            counts["empty_middle"] += 1
            continue
        prefix_ids, middle_ids, suffix_ids = (
            backend.encode(part, add_special_tokens=False).ids for part in (prefix, middle, suffix)
        )
        plan = FimPlan("psm", (prefix, middle, suffix))
        fim_ids = [start_id, *layout_fim(plan, [prefix_ids, middle_ids, suffix_ids], token_ids)]
        left_to_right = [start_id, *prefix_ids, *middle_ids]
        examples.append(FimExample(file, prefix, middle, suffix, fim_ids, left_to_right, len(middle_ids)))
    return examples, counts


@dataclass
class _MiddleTotals:
    examples: int = 0
    middle_tokens: int = 0
    middle_bytes: int = 0
    fim_nats: float = 0.0
    left_to_right_nats: float = 0.0

    def add(self, example: FimExample, fim_nats: float, left_to_right_nats: float) -> None:
        self.examples += 1
        self.middle_tokens += example.middle_tokens
        self.middle_bytes += len(example.middle.encode("utf-8"))
        self.fim_nats += fim_nats
        self.left_to_right_nats += left_to_right_nats

    def to_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "middle_tokens": self.middle_tokens,
            "middle_bytes": self.middle_bytes,
            "fim": _losses(self.fim_nats, self.middle_tokens, self.middle_bytes),
            "left_to_right": _losses(self.left_to_right_nats, self.middle_tokens, self.middle_bytes),
        }


def fim_middle_loss(
    model: ModelLike,
    data: str | os.PathLike,
    max_examples: int = 256,
    max_documents: int | None = None,
    seed: int = 0,
    max_seq_len: int = 2048,
    batch_size: int = 4,
    device: str = "auto",
    dtype: str = "auto",
    context_start: ContextStart = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """The model's loss on the middles of PSM FIM examples of held-out files, and on the same middles left to right.

    Examples: the code files of the first `max_documents` samples in `spread_files` order, one example per file,
    at most `max_examples`. A file is its block (path comment, text, separator), as training FIMs it; one longer
    than `max_seq_len - 16` tokens is cut to its first `max_seq_len - 16` tokens' characters, so every example fits
    one window. Its split is `repolm.tokenizer.fim.fim_split` (two uniform character cuts, sorted), drawn from
    `document_rng(seed, "fim\\0<sample id>\\0<path>")`; a file whose middle comes out empty is left out. Prefix,
    middle and suffix are encoded apart and laid out with DeepSeek-Coder's sentinels in PSM as training lays them
    out: `[context] <｜fim▁begin｜> prefix <｜fim▁hole｜> suffix <｜fim▁end｜> middle`; the context token is BOS or
    EOS as in `heldout_bits_per_byte` (`context_start`). Only the middle's tokens are scored. Left to right: the
    same middle ids after `[context] prefix`, no suffix.

    Returns {"examples", "middle_tokens", "middle_bytes", "fim": losses, "left_to_right": losses,
    "languages": {name: {"examples", "middle_tokens", "middle_bytes", "fim": losses, "left_to_right": losses}},
    "empty_middle", "cut_files", "seed", "max_seq_len", "context_start", "max_documents", "model", "device",
    "dtype", "data", "seconds"}; losses = {"nats", "loss_per_token" (nats), "bits_per_byte"} of the middles.
    """
    check_positive(max_examples=max_examples, batch_size=batch_size)
    if max_seq_len < FIM_ROOM + 2:
        raise RepolmError(f"max_seq_len must be >= {FIM_ROOM + 2}, got {max_seq_len}")
    samples = list(first_samples(data, max_documents))
    started = time.perf_counter()
    generator = resolve_generator(model, device, dtype)
    tokenizer = generator.tokenizer
    context_start, start_id = start_token(tokenizer, context_start, data)
    examples, counts = fim_examples(spread_files(samples, seed), tokenizer, start_id, seed, max_seq_len, max_examples)
    if not examples:
        raise RepolmError(f"held-out data {data}: no code file to make a FIM example of")

    def sequences() -> Iterator[list[int]]:
        for example in examples:
            yield example.fim_ids
            yield example.left_to_right_ids

    scores = token_nats(generator.engine.model, sequences(), max_seq_len, batch_size=batch_size)
    total = _MiddleTotals()
    by_language: dict[str, _MiddleTotals] = {}
    with tqdm(examples, desc="FIM middle loss", unit="example", disable=not progress) as bar:
        for example in bar:
            fim_nats = float(next(scores)[-example.middle_tokens :].sum())
            left_to_right_nats = float(next(scores)[-example.middle_tokens :].sum())
            for row in (total, by_language.setdefault(example.file.language, _MiddleTotals())):
                row.add(example, fim_nats, left_to_right_nats)
    languages = {name: row.to_dict() for name, row in sorted(by_language.items(), key=lambda item: -item[1].examples)}
    total_row = total.to_dict()
    logger.info(
        "FIM middles: %d examples, %d tokens: %.4f nats/token with FIM, %.4f left to right",
        total.examples,
        total.middle_tokens,
        total_row["fim"]["loss_per_token"],
        total_row["left_to_right"]["loss_per_token"],
    )
    return {
        **total_row,
        "languages": languages,
        **counts,
        "seed": seed,
        "max_seq_len": max_seq_len,
        "context_start": context_start,
        "max_documents": max_documents,
        **describe_model(model, generator),
        "data": str(Path(data)),
        "seconds": time.perf_counter() - started,
    }


# -----------------------------------------------------------------------------
# Instruct format


def instruct_format_share(
    model: ModelLike,
    instructions: str | os.PathLike,
    max_examples: int = 128,
    held_out_share: float | None = None,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str = "auto",
    examples: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """The share of an instruct model's greedy answers that end with `<|EOT|>` within `max_new_tokens` tokens.

    `instructions`: an instruction JSONL file or folder as `repolm data instructions` writes it
    (`repolm.data.instruction_records`); with `held_out_share`, only the conversations SFT held out at that share
    (`instruction_records.held_out`) are used; then the first `max_examples` of them, in file order. Each prompt is
    the conversation without its last answer through the model's chat template (`repolm.eval.instruct_format`).

    Returns {"answers", "ended_with_eot", "ended_with_eos", "hit_limit", "share" (ended_with_eot / answers),
    "mean_answer_tokens", "examples": [{"instruction", "answer"}], "max_new_tokens", "held_out_share",
    "instructions", "model", "device", "dtype", "seconds"}.
    """
    from repolm.data.instruction_records import held_out, read_instructions
    from repolm.eval.instruct_format import end_of_turn_share

    check_positive(max_examples=max_examples, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if held_out_share is not None and not 0 < held_out_share <= 1:
        raise RepolmError(f"held_out_share must be in (0, 1], got {held_out_share}")
    samples, _ = read_instructions(instructions)
    if held_out_share is not None:
        samples = [sample for sample in samples if held_out(sample.messages, held_out_share)]
    samples = samples[:max_examples]
    if not samples:
        raise RepolmError(f"{instructions}: no held-out instruction at held_out_share {held_out_share}")
    started = time.perf_counter()
    generator = resolve_generator(model, device, dtype)
    result = end_of_turn_share(
        generator, samples, max_new_tokens=max_new_tokens, batch_size=batch_size, examples=examples, progress=progress
    )
    return {
        **result.to_dict(),
        "max_new_tokens": max_new_tokens,
        "held_out_share": held_out_share,
        "instructions": str(Path(instructions)),
        **describe_model(model, generator),
        "seconds": time.perf_counter() - started,
    }
