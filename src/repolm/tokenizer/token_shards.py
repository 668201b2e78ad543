"""Token shards: tokenized documents on disk as flat memory-mapped arrays, the input of training.

A token folder holds:

    meta.json          {"format": "repolm-tokens/1", "dtype": "uint16" | "uint32", "vocab_size": N,
                        "eos_id": id, "shards": [{"name": "00000", "tokens": T, "documents": D}, ...],
                        "tokens": total, "documents": total, ...anything the producer adds (tokenizer, FIM, seed)}
    00000.bin          the shard's tokens, one document after the other, raw little-endian `dtype`
    00000.idx.npy      int64 (D,): the end offset (exclusive, in tokens) of each document in the shard

uint16 when every id fits (vocab_size <= 65536; DeepSeek-Coder's 32256 does), uint32 otherwise. Each document
already ends with its end-of-sentence id when the producer wants one (the tokenize stage does); this module only
stores and reads arrays. A shard becomes visible only when complete: `TokenShardWriter.close` writes both files
under temporary names and renames them, so a killed producer leaves no half shard behind and rerunning it
rewrites just the shards that are missing. `meta.json` is written last (`write_meta`), atomically.

A tokenized mixture is a folder of token folders, one per kind, and `mixture.json` (`write_token_mixture`):

    mixture.json       {"target_share": {kind: share}, "tokens": {kind: T}, "data": {kind: "<kind folder>"},
                        "validation": "<validation folder>", "shares_from": "<where the shares came from>"}

This module is the one that writes and reads both files (`read_meta`, `read_token_mixture`); the tokenize stage
produces them and the training loader consumes them.

Not handled here: tokenization, FIM and packing into training windows (see `repolm.tokenizer.corpus` and
`repolm.train`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically

FORMAT = "repolm-tokens/1"
META_FILE = "meta.json"
MIXTURE_FILE = "mixture.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id of a vocabulary of `vocab_size`."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class TokenShardWriter:
    """Writes one shard: `add` documents (1-D int arrays), then `close` (atomic), or `abort`."""

    def __init__(self, folder: str | Path, name: str, vocab_size: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self._tokens_path = self.folder / f"{name}.bin.partial"
        self._file = self._tokens_path.open("wb")
        self._ends: list[int] = []
        self.tokens = 0

    def add(self, ids) -> None:
        array = np.asarray(ids)
        if array.ndim != 1:
            raise ValueError(f"a document must be a 1-D array of ids, got shape {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"ids outside [0, {self.vocab_size}) in a document of shard {self.name}")
        self._file.write(array.astype(self.dtype, copy=False).tobytes())
        self.tokens += int(array.size)
        self._ends.append(self.tokens)

    @property
    def documents(self) -> int:
        return len(self._ends)

    def close(self) -> dict:
        """Makes the shard visible; returns its entry for `meta.json`."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        index_partial = self.folder / f"{self.name}.idx.partial.npy"
        np.save(index_partial, np.asarray(self._ends, dtype=np.int64))
        os.replace(self._tokens_path, self.folder / f"{self.name}.bin")
        os.replace(index_partial, self.folder / f"{self.name}.idx.npy")
        return {"name": self.name, "tokens": self.tokens, "documents": self.documents}

    def abort(self) -> None:
        self._file.close()
        self._tokens_path.unlink(missing_ok=True)


def write_meta(folder: str | Path, vocab_size: int, eos_id: int, shards: list[dict], **extra) -> dict:
    """Writes `meta.json` (atomically) for complete shards; returns it."""
    meta = {
        "format": FORMAT,
        "dtype": token_dtype(vocab_size).name,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "shards": shards,
        "tokens": sum(shard["tokens"] for shard in shards),
        "documents": sum(shard["documents"] for shard in shards),
        **extra,
    }
    write_file_atomically(Path(folder) / META_FILE, json.dumps(meta, indent=1) + "\n")
    return meta


def is_token_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a token folder's `meta.json`."""
    return (Path(folder) / META_FILE).is_file()


def read_meta(folder: str | Path) -> dict:
    """A token folder's `meta.json`, checked: its format and the fields readers use. `RepolmError` names the file."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise RepolmError(f"{folder}: not a token folder (no {META_FILE}; run `repolm data tokenize`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RepolmError(f"{meta_path}: cannot read it ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise RepolmError(f"{meta_path}: format {found!r}, expected {FORMAT!r}")
    for key in ("dtype", "vocab_size", "eos_id", "shards", "tokens", "documents"):
        if key not in meta:
            raise RepolmError(f"{meta_path}: no {key!r} field")
    if not isinstance(meta["vocab_size"], int) or not isinstance(meta["shards"], list):
        raise RepolmError(f"{meta_path}: vocab_size must be an integer and shards a list")
    return meta


def write_token_mixture(
    output: str | Path, target_share: dict[str, float], tokens: dict[str, int], validation: str, shares_from: str
) -> dict:
    """Writes `mixture.json` (atomically) beside the kinds' token folders (named after the kinds); returns it."""
    mixture = {
        "target_share": dict(target_share),
        "tokens": dict(tokens),
        "data": {kind: kind for kind in target_share},
        "validation": validation,
        "shares_from": shares_from,
    }
    write_file_atomically(Path(output) / MIXTURE_FILE, json.dumps(mixture, indent=1) + "\n")
    return mixture


def is_token_mixture(folder: str | Path) -> bool:
    """Whether `folder` holds a tokenized mixture's `mixture.json`."""
    return (Path(folder) / MIXTURE_FILE).is_file()


def read_token_mixture(folder: str | Path) -> dict:
    """A tokenized mixture's `mixture.json`, checked: `target_share` maps kinds to numbers. `RepolmError` names it."""
    path = Path(folder) / MIXTURE_FILE
    try:
        mixture = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RepolmError(f"{path}: cannot read it ({error})") from None
    shares = mixture.get("target_share") if isinstance(mixture, dict) else None
    if not isinstance(shares, dict) or not all(
        isinstance(share, int | float) and not isinstance(share, bool) for share in shares.values()
    ):
        raise RepolmError(f"{path}: target_share must map kinds to numbers")
    return mixture


@dataclass
class TokenShard:
    """One shard, memory-mapped: `tokens` (T,) and `document_ends` (D,) int64."""

    name: str
    tokens: np.ndarray
    document_ends: np.ndarray

    def document(self, index: int) -> np.ndarray:
        start = int(self.document_ends[index - 1]) if index else 0
        return self.tokens[start : int(self.document_ends[index])]


class TokenShards:
    """A token folder, read: its meta and its shards, memory-mapped (nothing is read until used)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.dtype = np.dtype(self.meta["dtype"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.eos_id = int(self.meta["eos_id"])
        self.shards: list[TokenShard] = []
        for entry in self.meta["shards"]:
            tokens_path = self.folder / f"{entry['name']}.bin"
            index_path = self.folder / f"{entry['name']}.idx.npy"
            if not tokens_path.is_file() or not index_path.is_file():
                raise RepolmError(f"{self.folder}: shard {entry['name']} is listed in {META_FILE} but missing")
            expected = entry["tokens"] * self.dtype.itemsize
            if tokens_path.stat().st_size != expected:
                raise RepolmError(
                    f"{tokens_path}: {tokens_path.stat().st_size} bytes, {META_FILE} says {expected} (truncated?)"
                )
            tokens = (
                np.memmap(tokens_path, dtype=self.dtype, mode="r")
                if expected
                else np.zeros(0, dtype=self.dtype)  # numpy cannot map an empty file
            )
            ends = np.load(index_path, mmap_mode="r")
            self.shards.append(TokenShard(entry["name"], tokens, ends))

    @property
    def num_tokens(self) -> int:
        return int(self.meta["tokens"])

    @property
    def num_documents(self) -> int:
        return int(self.meta["documents"])

    def documents(self):
        """Every document in order, as arrays (memory-mapped views)."""
        for shard in self.shards:
            for index in range(len(shard.document_ends)):
                yield shard.document(index)
