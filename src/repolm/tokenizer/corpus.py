"""`repolm data tokenize`: samples of a data build (or any JSONL corpus) in, FIM'd token folders out.

Input, one of:
- a `repolm data build` output folder: `data/<kind>/*.jsonl.zst`, one sample per line (`text`, `id`, `offsets` where
  each file starts in `text`, ...) and `mixture.json` (target share per kind);
- a folder of `.jsonl` / `.jsonl.zst` files with a `text` field (`id` and `offsets` optional): files in subfolders
  are the kind named after the subfolder, files at the top are the kind "corpus". Without `offsets` the whole text is
  one file; without `id` a document's id is "<file path relative to the input>:<line number>".

Output (token folders in the `repolm.tokenizer.token_shards` format):

    <output>/<kind>/NNNNN.bin, NNNNN.idx.npy, meta.json     one shard per input file, the input's stem as its name
    <output>/validation/<kind>-NNNNN.*, meta.json            the held-out documents of every input file
    <output>/mixture.json                                    target share and tokens per kind, for the loader
    <output>/tokenize_config.json                            what produced the folder (checked on every rerun)

Each document becomes `fim_document(text, offsets)`: its files FIM'd one by one (`repolm.tokenizer.fim`), then one
end-of-sentence id. Empty documents are left out. A document is held out for validation when
blake2b(id) / 2**64 < `validation_fraction` (the id alone: the split does not move with the seed); held-out documents
get the same FIM as the rest, so validation loss measures the training distribution. Each document's random stream
is seeded from blake2b(seed, id), so the output does not depend on `workers` or on the order of the work.

Resumable: an input file whose two shards (train and validation) both exist is skipped; a killed run leaves only
`*.partial` files, which the rerun overwrites. `meta.json` files and `mixture.json` are written at the end. A rerun
into a folder written with another input, tokenizer, FIM config, seed or validation fraction is refused.

The tokenizer encodes special-token strings found in the text as plain text (`encode_special_tokens`), so a file
that quotes `<｜end▁of▁sentence｜>` does not end its document early.

Not handled here: packing into training windows and mixing kinds by share (`repolm.train`); the CLI (`repolm.cli`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from tqdm import tqdm

from repolm.data.records import read_build_target_shares
from repolm.errors import RepolmError, one_line
from repolm.folder_writer import write_file_atomically
from repolm.tokenizer.fim import FimConfig, FimTokenIds, fim_documents, split_files
from repolm.tokenizer.token_shards import (
    FORMAT,
    MIXTURE_FILE,
    TokenShardWriter,
    token_dtype,
    write_meta,
    write_token_mixture,
)
from repolm.tokenizer.tokenizer import CodeTokenizer, tokenizer_sha256

logger = logging.getLogger(__name__)

CONFIG_FILE = "tokenize_config.json"
VALIDATION = "validation"  # the folder of held-out documents (not a kind)
PLAIN_KIND = "corpus"  # the kind of JSONL files at the top of a plain input folder
DATA_SUFFIXES = (".jsonl.zst", ".jsonl")
DOCUMENTS_PER_BATCH = 256  # documents encoded by one `encode_batch` call, at most
CHARACTERS_PER_BATCH = 1 << 25  # and at most ~32M characters of text (a batch is held in memory with its ids)
MAX_VOCAB_SIZE = 1 << 32  # uint32 ids: the widest dtype of the token format


# -----------------------------------------------------------------------------
# Hashes: validation split and per-document seeds


def is_validation(document_id: str, fraction: float) -> bool:
    """Whether a document is held out: blake2b of its id, as a number in [0, 1), is below `fraction`."""
    digest = hashlib.blake2b(document_id.encode("utf-8", "surrogatepass"), digest_size=8, person=b"repolm-valid")
    return int.from_bytes(digest.digest(), "little") / 2**64 < fraction


def document_rng(seed: int, document_id: str) -> np.random.Generator:
    """The random stream of one document: seeded from blake2b(seed, id), independent of any process state."""
    key = f"{seed}\x00{document_id}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=16, person=b"repolm-fim").digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


# -----------------------------------------------------------------------------
# Input


def _stem(path: Path) -> str:
    return next(path.name[: -len(suffix)] for suffix in DATA_SUFFIXES if path.name.endswith(suffix))


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def find_input_files(input_folder: Path) -> dict[str, list[Path]]:
    """The JSONL files to tokenize, by kind (see the module docstring); RepolmError when there are none."""
    if not input_folder.is_dir():
        raise RepolmError(f"--input {input_folder}: no such folder")
    root = input_folder / "data" if (input_folder / "data").is_dir() else input_folder
    kinds: dict[str, list[Path]] = {}
    if top := _data_files(root):
        kinds[PLAIN_KIND] = top
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if files := _data_files(folder):
            if folder.name in kinds or folder.name == VALIDATION:
                raise RepolmError(f"--input {input_folder}: a kind may not be named {folder.name!r} ({folder})")
            kinds[folder.name] = files
    if not kinds:
        raise RepolmError(f"--input {input_folder}: no .jsonl or .jsonl.zst files in {root} or its subfolders")
    for kind, files in kinds.items():
        stems = [_stem(path) for path in files]
        if duplicated := sorted({stem for stem in stems if stems.count(stem) > 1}):
            raise RepolmError(f"--input {root}: kind {kind!r} has several files named {duplicated[0]} (.jsonl[.zst])")
    return kinds


@dataclass
class Document:
    """One input line: its id, its text and where its files start (None: one file)."""

    id: str
    text: str
    offsets: list[int] | None


def read_documents(path: Path, relative_name: str) -> Iterator[Document]:
    """The documents of one .jsonl or .jsonl.zst file; RepolmError naming file and line on a malformed line."""
    with path.open("rb") as raw:
        binary = zstandard.ZstdDecompressor().stream_reader(raw) if path.name.endswith(".zst") else raw
        lines = io.TextIOWrapper(binary, encoding="utf-8")
        try:
            for line_number, line in enumerate(lines, start=1):
                if line.strip():
                    yield _document(line, f"{relative_name}:{line_number}")
        except (UnicodeDecodeError, zstandard.ZstdError) as error:
            raise RepolmError(f"{path}: cannot read it ({one_line(error)})") from None


def _document(line: str, where: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise RepolmError(f"{where}: not a JSON line ({one_line(error)})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise RepolmError(f"{where}: expected a JSON object with a string field 'text'")
    document_id = record.get("id", where)
    if isinstance(document_id, bool) or not isinstance(document_id, str | int):
        raise RepolmError(f"{where}: 'id' must be a string or an integer, got {document_id!r}")
    offsets = record.get("offsets") or None
    if offsets is not None:
        valid = isinstance(offsets, list) and all(type(offset) is int for offset in offsets)
        if not valid or offsets != sorted(offsets) or offsets[0] < 0 or offsets[-1] > len(record["text"]):
            raise RepolmError(f"{where}: 'offsets' must be increasing character offsets within 'text'")
    return Document(str(document_id), record["text"], offsets)


# -----------------------------------------------------------------------------
# Tokenizer and stored config


def load_corpus_tokenizer(tokenizer_dir: Path) -> CodeTokenizer:
    """The tokenizer of a folder, with special-token strings in text encoded as plain text."""
    tokenizer = CodeTokenizer.load(tokenizer_dir)
    tokenizer.backend.encode_special_tokens = True
    return tokenizer


def _produced_by(
    input_folder: Path, tokenizer_dir: Path, tokenizer: CodeTokenizer, fim: FimConfig, seed: int, fraction: float
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "input": str(input_folder.resolve()),
        "tokenizer": str(tokenizer_dir.resolve()),
        "tokenizer_sha256": tokenizer_sha256(tokenizer_dir),
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "fim": dataclasses.asdict(fim),
        "seed": seed,
        "validation_fraction": fraction,
    }


def _check_output(output: Path, config: dict[str, Any]) -> None:
    """Refuse an output folder written by another config (or holding other files); store the config."""
    config_path = output / CONFIG_FILE
    if config_path.is_file():
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise RepolmError(f"{config_path}: cannot read it ({one_line(error)})") from None
        if stored != config:
            differing = sorted(key for key in {*stored, *config} if stored.get(key) != config.get(key))
            raise RepolmError(
                f"--output {output}: written with another {', '.join(differing)} ({config_path}); "
                "use a new output folder, or the same settings to resume"
            )
        return
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RepolmError(f"--output {output}: exists and is not an empty folder (no {CONFIG_FILE} in it)")
    output.mkdir(parents=True, exist_ok=True)
    write_file_atomically(config_path, json.dumps(config, indent=1) + "\n")


# -----------------------------------------------------------------------------
# One input file -> one train shard and one validation shard


@dataclass(frozen=True)
class ShardJob:
    """The work on one input file."""

    kind: str
    source: Path
    relative_name: str  # the file's path relative to the input folder (ids of lines without one)
    train_folder: Path
    name: str
    validation_folder: Path
    validation_name: str

    def done(self) -> bool:
        return all(
            (folder / f"{name}{suffix}").is_file()
            for folder, name in ((self.train_folder, self.name), (self.validation_folder, self.validation_name))
            for suffix in (".bin", ".idx.npy")
        )


@dataclass
class _WorkerState:
    tokenizer: CodeTokenizer
    fim: FimConfig
    seed: int
    validation_fraction: float


_STATE: _WorkerState | None = None  # what `_tokenize_file` works with, in this process


def _set_state(tokenizer_dir: Path, fim: FimConfig, seed: int, validation_fraction: float) -> None:
    global _STATE
    _STATE = _WorkerState(load_corpus_tokenizer(tokenizer_dir), fim, seed, validation_fraction)


def _init_pool_worker(tokenizer_dir: Path, fim: FimConfig, seed: int, validation_fraction: float) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already: no threads inside tokenizers
    _set_state(tokenizer_dir, fim, seed, validation_fraction)


def _tokenize_file(job: ShardJob) -> dict[str, int]:
    """Writes the job's two shards; returns its counts (documents, tokens, characters, files, fim_files, ...)."""
    assert _STATE is not None, "worker not initialized"
    tokenizer, vocab_size = _STATE.tokenizer, _STATE.tokenizer.vocab_size
    begin_id = FimTokenIds.of(tokenizer, need_fim=False).begin
    counts = dict.fromkeys(("documents", "validation_documents", "empty_documents", "tokens", "characters"), 0)
    counts.update(files=0, fim_files=0)
    writers = {
        False: TokenShardWriter(job.train_folder, job.name, vocab_size),
        True: TokenShardWriter(job.validation_folder, job.validation_name, vocab_size),
    }
    try:
        batch: list[Document] = []
        batch_characters = 0
        for document in read_documents(job.source, job.relative_name):
            if not document.text:
                counts["empty_documents"] += 1
                continue
            batch.append(document)
            batch_characters += len(document.text)
            if len(batch) == DOCUMENTS_PER_BATCH or batch_characters >= CHARACTERS_PER_BATCH:
                _write_batch(batch, writers, counts, begin_id)
                batch, batch_characters = [], 0
        _write_batch(batch, writers, counts, begin_id)
        writers[True].close()
        writers[False].close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return counts


def _write_batch(batch: list[Document], writers: dict, counts: dict[str, int], begin_id: int | None) -> None:
    assert _STATE is not None
    samples = [(document.text, document.offsets) for document in batch]
    rngs = [document_rng(_STATE.seed, document.id) for document in batch]
    for document, ids in zip(batch, fim_documents(samples, _STATE.tokenizer, rngs, _STATE.fim), strict=True):
        held_out = is_validation(document.id, _STATE.validation_fraction)
        writers[held_out].add(ids)
        counts["validation_documents" if held_out else "documents"] += 1
        counts["tokens"] += len(ids)
        counts["characters"] += len(document.text)
        counts["files"] += len(split_files(document.text, document.offsets))
        counts["fim_files"] += ids.count(begin_id) if begin_id is not None else 0


# -----------------------------------------------------------------------------
# The whole corpus


def _shard_entries(folder: Path, names: list[str], dtype: np.dtype) -> list[dict]:
    """meta.json entries of complete shards, read from the files (skipped shards have no other record)."""
    entries = []
    for name in sorted(names):
        tokens = (folder / f"{name}.bin").stat().st_size // dtype.itemsize
        documents = len(np.load(folder / f"{name}.idx.npy", mmap_mode="r"))
        entries.append({"name": name, "tokens": tokens, "documents": documents})
    return entries


def _write_mixture(output: Path, input_folder: Path, tokens: dict[str, int]) -> dict:
    present = [kind for kind, count in tokens.items() if count > 0]
    for kind in sorted(set(tokens) - set(present)):
        logger.warning("kind %s has no tokens: left out of %s", kind, MIXTURE_FILE)
    build_shares = read_build_target_shares(input_folder)
    shares = {kind: 1.0 for kind in present}
    source = "equal shares of the kinds found"
    if build_shares is not None:
        source = "the build's mixture.json, renormalized over the kinds found"
        for kind, share in build_shares.items():
            if share > 0 and kind not in present:
                logger.warning(
                    "kind %s has target share %.3f but no tokens; the other shares are scaled up", kind, share
                )
        shares = {kind: build_shares.get(kind, 0.0) for kind in present}
        if not sum(shares.values()) > 0:
            raise RepolmError(f"{input_folder}: {MIXTURE_FILE} gives no share to any kind found ({', '.join(present)})")
    total = sum(shares.values())
    target_share = {kind: share / total for kind, share in shares.items()}
    return write_token_mixture(output, target_share, {kind: tokens[kind] for kind in present}, VALIDATION, source)


def tokenize_corpus(
    input: Path,
    tokenizer_dir: Path,
    output: Path,
    fim: FimConfig,
    seed: int,
    validation_fraction: float = 0.005,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Tokenize a data build (or JSONL corpus) into token folders; see the module docstring. Returns a summary:
    tokens and documents per kind and for validation, FIM'd and total files, shards written and skipped, seconds,
    tokens/s (of the shards written by this run)."""
    input_folder, tokenizer_dir, output = Path(input), Path(tokenizer_dir), Path(output)
    if isinstance(validation_fraction, bool) or not 0.0 <= validation_fraction < 1.0:
        raise RepolmError(f"--validation-fraction must be in [0, 1), got {validation_fraction!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise RepolmError(f"--workers must be an integer >= 1, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RepolmError(f"--seed must be an integer, got {seed!r}")
    kinds = find_input_files(input_folder)
    tokenizer = load_corpus_tokenizer(tokenizer_dir)
    try:
        FimTokenIds.of(tokenizer, need_fim=fim.rate > 0)
    except RepolmError as error:
        raise RepolmError(f"--tokenizer {tokenizer_dir}: {error}") from None
    if tokenizer.vocab_size > MAX_VOCAB_SIZE:
        raise RepolmError(f"--tokenizer {tokenizer_dir}: {tokenizer.vocab_size} ids, token files hold at most 2**32")
    _check_output(output, _produced_by(input_folder, tokenizer_dir, tokenizer, fim, seed, validation_fraction))

    jobs = [
        ShardJob(
            kind=kind,
            source=path,
            relative_name=path.relative_to(input_folder).as_posix(),
            train_folder=output / kind,
            name=_stem(path),
            validation_folder=output / VALIDATION,
            validation_name=f"{kind}-{_stem(path)}",
        )
        for kind, paths in kinds.items()
        for path in paths
    ]
    validation_names = [job.validation_name for job in jobs]
    if len(set(validation_names)) < len(jobs):
        clash = next(name for name in validation_names if validation_names.count(name) > 1)
        raise RepolmError(f"--input {input_folder}: two input files map to validation shard {clash!r}; rename one")
    pending = [job for job in jobs if not job.done()]
    if len(pending) < len(jobs):
        logger.info("resuming: %d of %d input files already tokenized", len(jobs) - len(pending), len(jobs))
    started = time.perf_counter()
    totals: dict[str, int] = {}
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), unit="file", disable=not progress) as bar:
        for counts in _run_jobs(pending, tokenizer_dir, fim, seed, validation_fraction, workers):
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            bar.update(1)
    seconds = time.perf_counter() - started

    dtype = token_dtype(tokenizer.vocab_size)
    extra = {
        "tokenizer": str(tokenizer_dir.resolve()),
        "fim": dataclasses.asdict(fim),
        "seed": seed,
        "validation_fraction": validation_fraction,
    }
    folders: dict[str, dict] = {}
    shard_names = {kind: [job.name for job in jobs if job.kind == kind] for kind in kinds}
    shard_names[VALIDATION] = [job.validation_name for job in jobs]
    for kind, names in shard_names.items():
        folder = output / kind
        meta = write_meta(folder, tokenizer.vocab_size, tokenizer.eos_id, _shard_entries(folder, names, dtype), **extra)
        folders[kind] = {"tokens": meta["tokens"], "documents": meta["documents"], "shards": len(meta["shards"])}
    mixture = _write_mixture(output, input_folder, {kind: folders[kind]["tokens"] for kind in kinds})

    new_tokens = totals.get("tokens", 0)
    summary = {
        "output": str(output),
        "folders": folders,
        "target_share": mixture["target_share"],
        "shards_written": len(pending),
        "shards_skipped": len(jobs) - len(pending),
        "files": totals.get("files", 0),
        "fim_files": totals.get("fim_files", 0),
        "empty_documents": totals.get("empty_documents", 0),
        "tokens_written": new_tokens,
        "characters_read": totals.get("characters", 0),
        "seconds": seconds,
        "tokens_per_second": new_tokens / seconds if seconds > 0 else 0.0,
    }
    logger.info(
        "tokenized %d input files (%d skipped) into %s: %d new tokens in %.1f s (%.0f tokens/s), %d of %d files FIM'd",
        len(pending),
        len(jobs) - len(pending),
        output,
        new_tokens,
        seconds,
        summary["tokens_per_second"],
        summary["fim_files"],
        summary["files"],
    )
    return summary


def _run_jobs(
    jobs: list[ShardJob], tokenizer_dir: Path, fim: FimConfig, seed: int, validation_fraction: float, workers: int
) -> Iterator[dict[str, int]]:
    """Counts of each job as it finishes: in this process for one worker, else in a pool of spawned processes."""
    settings = (tokenizer_dir, fim, seed, validation_fraction)
    if workers == 1 or len(jobs) <= 1:
        # in this process, tokenizers may use its own threads (unless TOKENIZERS_PARALLELISM=false says otherwise)
        _set_state(*settings)
        for job in jobs:
            yield _tokenize_file(job)
        return
    context = multiprocessing.get_context("spawn")  # no fork: safe with tokenizers' and torch's threads
    with context.Pool(min(workers, len(jobs)), initializer=_init_pool_worker, initargs=settings) as pool:
        yield from pool.imap_unordered(_tokenize_file, jobs)
