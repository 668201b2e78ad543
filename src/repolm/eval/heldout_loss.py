"""Held-out loss of a model folder on code: bits per byte, the tokenizer-independent measure of how well it predicts.

`heldout_bits_per_byte(model_dir, data)` scores every document of `data` with the model and returns the totals.

Data, one of:
- a `repolm data build` output folder (`data/<kind>/NNNNN.jsonl.zst`), or any folder of `.jsonl` / `.jsonl.zst` files
  with a string field `text` (read with `repolm.tokenizer.corpus.read_documents`; each line is a document);
- a folder of plain source files (every file below it, hidden files and folders left out; each file is a document,
  its bytes decoded as UTF-8 without newline translation, files that are not UTF-8 text are skipped with a warning);
- a list of such files and folders. A `.jsonl` / `.jsonl.zst` file is read as JSON lines, any other file as plain.
`data_format` forces "jsonl" or "files" for a folder; "auto" reads a folder as JSON lines when it (or its `data/`
subfolder) holds any `.jsonl` / `.jsonl.zst` file. `validation_fraction` keeps only the documents that
`repolm data tokenize --validation-fraction F` holds out (the same blake2b rule on the document id; a plain file's id
is its path relative to the folder), so a model trained on that tokenization is scored on text it never saw.

What is scored, exactly:
- each document is tokenized alone, with special-token strings in the text encoded as plain text (as
  `repolm data tokenize` does), and preceded by one context token that is not scored: BOS when the tokenizer adds
  BOS (`context_start="auto"`, as DeepSeek-Coder's tokenizers and generation prompts do), else EOS; "eos" is the
  context repolm's own pretraining gives a document (packed documents are separated by EOS, and there is no BOS);
- every token of the text is predicted exactly once, its negative log-likelihood (natural log) summed in float64;
  no EOS is appended or scored;
- a document longer than `max_seq_len` tokens is scored in windows of at most `max_seq_len` tokens that start
  `stride` tokens apart (default `max_seq_len - 1`: consecutive windows share one token, the context of the next
  window's first prediction); each window scores only the tokens no earlier window scored, so a smaller stride gives
  the later tokens more context at more cost;
- bytes = the UTF-8 bytes of the scored texts; with `max_bytes`, documents are taken in order until that many bytes,
  the last one cut at a character boundary.

bits per byte = total NLL / ln 2 / bytes. Also returned: tokens, bytes, loss per token (nats), bits per token,
bytes per token, documents, windows, and what produced them.

`token_nats` is the scorer underneath: the NLL of every token of id sequences, windowed as above
(`window_spans`) and batched across sequences; `repolm.eval.heldout_tasks` uses it to attribute each token's NLL to
a language and to score FIM middles alone.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from repolm.errors import RepolmError, one_line
from repolm.infer.text import load_model_and_tokenizer
from repolm.tokenizer.corpus import DATA_SUFFIXES, is_validation, read_documents

if TYPE_CHECKING:
    from repolm.model import Transformer
    from repolm.tokenizer import CodeTokenizer

logger = logging.getLogger(__name__)

DataFormat = Literal["auto", "jsonl", "files"]
ContextStart = Literal["auto", "bos", "eos"]


@dataclass(frozen=True)
class HeldoutDocument:
    """One document to score: an id (for the validation split and messages) and its text."""

    id: str
    text: str


@dataclass
class _Counts:
    skipped_files: int = 0


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith(DATA_SUFFIXES)


def _visible_files(folder: Path) -> list[Path]:
    """Files below `folder`, in path order, without hidden files and folders."""
    files = []
    for root, folder_names, file_names in os.walk(folder):
        folder_names[:] = sorted(name for name in folder_names if not name.startswith("."))
        files.extend(Path(root, name) for name in sorted(file_names) if not name.startswith("."))
    return files


def data_files(folder: str | os.PathLike) -> list[Path]:
    """The .jsonl / .jsonl.zst files of a folder in the order `iter_documents` reads them (from its `data/`
    subfolder when it has one), hidden files and folders left out."""
    folder = Path(folder)
    root = folder / "data" if (folder / "data").is_dir() else folder
    return [file for file in _visible_files(root) if _is_jsonl(file)]


def _plain_document(path: Path, document_id: str, counts: _Counts) -> HeldoutDocument | None:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RepolmError(f"{path}: cannot read ({one_line(error)})") from None
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte (binary)")
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        logger.warning("skipping %s: not UTF-8 text (%s)", path, one_line(error))
        counts.skipped_files += 1
        return None
    return HeldoutDocument(document_id, text)


def _jsonl_documents(path: Path, relative_name: str) -> Iterator[HeldoutDocument]:
    for document in read_documents(path, relative_name):
        yield HeldoutDocument(document.id, document.text)


def iter_documents(
    data: str | os.PathLike | Sequence[str | os.PathLike],
    data_format: DataFormat = "auto",
    counts: _Counts | None = None,
) -> Iterator[HeldoutDocument]:
    """The documents of `data` (see the module docstring), in a fixed order; RepolmError for a missing path."""
    counts = counts if counts is not None else _Counts()
    if data_format not in ("auto", "jsonl", "files"):
        raise RepolmError(f"data_format must be auto, jsonl or files, got {data_format!r}")
    paths = [Path(data)] if isinstance(data, str | os.PathLike) else [Path(item) for item in data]
    for path in paths:
        if not path.exists():
            raise RepolmError(f"held-out data {path}: no such file or folder")
    for path in paths:
        if path.is_file():
            if _is_jsonl(path) and data_format != "files":
                yield from _jsonl_documents(path, path.name)
            elif (document := _plain_document(path, path.name, counts)) is not None:
                yield document
            continue
        root = path / "data" if (path / "data").is_dir() else path
        files = _visible_files(root)
        jsonl_files = [file for file in files if _is_jsonl(file)]
        as_jsonl = data_format == "jsonl" or (data_format == "auto" and bool(jsonl_files))
        if as_jsonl and not jsonl_files:
            raise RepolmError(f"held-out data {path}: no .jsonl or .jsonl.zst files in {root} or its subfolders")
        plain_files = files if root == path else _visible_files(path)  # walk a folder once
        for file in jsonl_files if as_jsonl else plain_files:
            relative_name = file.relative_to(path).as_posix()
            if as_jsonl:
                yield from _jsonl_documents(file, relative_name)
            elif (document := _plain_document(file, relative_name, counts)) is not None:
                yield document


def window_spans(length: int, max_seq_len: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, first) of the windows `ids[begin:end]` that score a sequence of `length` ids: position `first`
    (begin < first < end) is the window's first scored position, so that every position after 0 is scored exactly
    once (see the module docstring)."""
    scored_until = 1
    begin = 0
    while True:
        end = min(begin + max_seq_len, length)
        first = max(scored_until, begin + 1)
        if first < end:
            yield begin, end, first
        scored_until = end
        if end >= length:
            return
        begin += stride


def token_nats(
    model: Transformer,
    sequences: Iterable[Sequence[int]],
    max_seq_len: int,
    stride: int | None = None,
    batch_size: int = 4,
) -> Iterator[np.ndarray]:
    """For each id sequence, in order, the NLL (nats, float64) of each of its ids after the first given the ids
    before it: an array of `len(ids) - 1` values (element i is ids[i + 1]'s). Sequences longer than `max_seq_len`
    are scored in windows as `heldout_bits_per_byte` scores them (`window_spans`, `stride` default
    `max_seq_len - 1`). Windows of consecutive sequences share batches of `batch_size` rows (right-padded: the
    model is causal, so padding is never seen); one device sync per batch. `sequences` is read lazily, so a
    generator of sequences is scored as it is produced."""
    import torch
    import torch.nn.functional as functional

    stride = max_seq_len - 1 if stride is None else stride
    device = model.embed_tokens.weight.device
    results: list[np.ndarray] = []  # one per sequence not yet handed out, in order
    windows_left: list[int] = []
    handed_out = 0  # sequences yielded so far (index of results[0])
    pending: list[tuple[int, Sequence[int], int, int, int]] = []  # (sequence, ids, begin, end, first)

    @torch.inference_mode()
    def score() -> None:
        length = max(end - begin for _, _, begin, end, _ in pending)
        batch = torch.zeros(len(pending), length, dtype=torch.long)
        for row, (_, ids, begin, end, _) in enumerate(pending):
            batch[row, : end - begin] = torch.tensor(ids[begin:end], dtype=torch.long)
        batch = batch.to(device)
        logits = model(batch)  # (B, T, V)
        rows = []
        for row, (_, _, begin, end, first) in enumerate(pending):
            predicted = logits[row, first - begin - 1 : end - begin - 1].float()  # position p predicts p + 1
            targets = batch[row, first - begin : end - begin]
            rows.append(functional.cross_entropy(predicted, targets, reduction="none"))
        values = torch.cat(rows).double().cpu().numpy()  # one device sync per batch
        at = 0
        for index, _, _, end, first in pending:
            results[index - handed_out][first - 1 : end - 1] = values[at : at + end - first]
            at += end - first
            windows_left[index - handed_out] -= 1
        pending.clear()

    def finished() -> Iterator[np.ndarray]:
        nonlocal handed_out
        while windows_left and windows_left[0] == 0:
            windows_left.pop(0)
            handed_out += 1
            yield results.pop(0)

    for index, ids in enumerate(sequences):
        results.append(np.zeros(max(len(ids) - 1, 0), dtype=np.float64))
        windows_left.append(0)
        for begin, end, first in window_spans(len(ids), max_seq_len, stride):
            pending.append((index, ids, begin, end, first))
            windows_left[-1] += 1
            if len(pending) == batch_size:
                score()
        yield from finished()
    if pending:
        score()
    yield from finished()


def start_token(tokenizer: CodeTokenizer, context_start: ContextStart, where: str | os.PathLike) -> tuple[str, int]:
    """("bos" or "eos", its id): the unscored token that starts every scored document (see the module docstring);
    RepolmError naming `where` when the tokenizer lacks it."""
    if context_start not in ("auto", "bos", "eos"):
        raise RepolmError(f"context_start must be auto, bos or eos, got {context_start!r}")
    if context_start == "auto":
        context_start = "bos" if tokenizer.add_bos_token and tokenizer.bos_id is not None else "eos"
    start_id = tokenizer.bos_id if context_start == "bos" else tokenizer.eos_id
    if start_id is None:
        raise RepolmError(f"{where}: the tokenizer has no {context_start} token to start documents with")
    return context_start, start_id


def cut_to_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, at a character boundary."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= limit else encoded[:limit].decode("utf-8", "ignore")


def heldout_bits_per_byte(
    model_dir: str | os.PathLike,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    max_seq_len: int = 2048,
    batch_size: int = 4,
    max_bytes: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    stride: int | None = None,
    data_format: DataFormat = "auto",
    validation_fraction: float | None = None,
    context_start: ContextStart = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Bits per byte (and tokens, bytes, loss per token, bits per token) of a model folder on held-out code.

    See the module docstring for the data it reads and exactly what is counted. RepolmError on a bad path, bad
    options, or when there is no document to score.
    """
    if max_seq_len < 2:
        raise RepolmError(f"max_seq_len must be >= 2, got {max_seq_len}")
    stride = max_seq_len - 1 if stride is None else stride
    if not 1 <= stride <= max_seq_len - 1:
        raise RepolmError(f"stride must be in [1, max_seq_len - 1 = {max_seq_len - 1}], got {stride}")
    if batch_size < 1:
        raise RepolmError(f"batch_size must be >= 1, got {batch_size}")
    if max_bytes is not None and max_bytes < 1:
        raise RepolmError(f"max_bytes must be >= 1, got {max_bytes}")
    if validation_fraction is not None and not 0 < validation_fraction <= 1:
        raise RepolmError(f"validation_fraction must be in (0, 1], got {validation_fraction}")
    counts = _Counts()
    described = data if isinstance(data, str | os.PathLike) else ", ".join(map(str, data))
    documents = iter_documents(data, data_format, counts)
    first_document = next(documents, None)  # bad paths and empty folders fail before the model loads
    if first_document is None:
        raise RepolmError(f"held-out data {described}: no documents to score")

    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(model_dir, device, dtype)
    context_start, start_id = start_token(tokenizer, context_start, model_dir)
    model_device = model.embed_tokens.weight.device

    total_nats = 0.0
    totals = {"documents": 0, "tokens": 0, "bytes": 0, "windows": 0}

    def sequences() -> Iterator[list[int]]:
        remaining = max_bytes
        for document in itertools.chain([first_document], documents):
            if remaining is not None and remaining <= 0:
                return
            if validation_fraction is not None and not is_validation(document.id, validation_fraction):
                continue
            text = document.text if remaining is None else cut_to_bytes(document.text, remaining)
            if not text:
                continue
            size = len(text.encode("utf-8"))
            # special-token strings in code are plain text, as `repolm data tokenize` encodes them
            ids = [start_id, *tokenizer.encode(text, literal_special_tokens=True)]
            totals["documents"] += 1
            totals["tokens"] += len(ids) - 1
            totals["bytes"] += size
            totals["windows"] += sum(1 for _ in window_spans(len(ids), max_seq_len, stride))
            if remaining is not None:
                remaining -= size
            yield ids

    with tqdm(desc="held-out loss", unit="doc", disable=not progress) as bar:
        for nats in token_nats(model, sequences(), max_seq_len, stride, batch_size):
            total_nats += float(nats.sum())
            bar.update(1)

    if totals["tokens"] == 0:
        raise RepolmError(f"held-out data {described}: no documents to score")
    seconds = time.perf_counter() - started
    result = {
        "model": str(Path(model_dir).resolve()),
        "data": [str(Path(item)) for item in ([data] if isinstance(data, str | os.PathLike) else data)],
        **totals,
        "skipped_files": counts.skipped_files,
        "nats": total_nats,
        "loss_per_token": total_nats / totals["tokens"],
        "bits_per_token": total_nats / math.log(2) / totals["tokens"],
        "bits_per_byte": total_nats / math.log(2) / totals["bytes"],
        "bytes_per_token": totals["bytes"] / totals["tokens"],
        "max_seq_len": max_seq_len,
        "stride": stride,
        "context_start": context_start,
        "validation_fraction": validation_fraction,
        "max_bytes": max_bytes,
        "device": str(model_device),
        "dtype": str(model.embed_tokens.weight.dtype).removeprefix("torch."),
        "seconds": seconds,
    }
    logger.info(
        "held-out: %d documents, %d tokens, %d bytes: %.4f bits/byte, %.4f nats/token (%.1f s)",
        totals["documents"],
        totals["tokens"],
        totals["bytes"],
        result["bits_per_byte"],
        result["loss_per_token"],
        seconds,
    )
    return result
