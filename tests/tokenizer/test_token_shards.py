"""Tests of the token shard format: round trip, dtype by vocabulary size, atomic shards, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repolm.errors import RepolmError
from repolm.tokenizer.token_shards import TokenShards, TokenShardWriter, token_dtype, write_meta


def write_folder(folder, documents_per_shard, vocab_size=1000, eos_id=999):
    entries = []
    for index, documents in enumerate(documents_per_shard):
        writer = TokenShardWriter(folder, f"{index:05d}", vocab_size)
        for document in documents:
            writer.add(document)
        entries.append(writer.close())
    return write_meta(folder, vocab_size, eos_id, entries, tokenizer="tok/")


def test_round_trip_of_documents_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    shards = [[rng.integers(0, 1000, size=n) for n in (5, 1, 17)], [], [rng.integers(0, 1000, size=300)]]
    meta = write_folder(tmp_path, shards)
    assert meta["tokens"] == 5 + 1 + 17 + 300 and meta["documents"] == 4 and meta["tokenizer"] == "tok/"
    read = TokenShards(tmp_path)
    assert read.dtype == np.uint16 and read.vocab_size == 1000 and read.eos_id == 999
    expected = [document for documents in shards for document in documents]
    got = list(read.documents())
    assert len(got) == len(expected)
    for document, original in zip(got, expected, strict=True):
        assert np.array_equal(document, original)


def test_dtype_follows_the_vocabulary():
    assert token_dtype(32256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(152064) == np.uint32


def test_ids_outside_the_vocabulary_are_refused(tmp_path):
    writer = TokenShardWriter(tmp_path, "00000", 100)
    with pytest.raises(ValueError, match=r"outside \[0, 100\)"):
        writer.add([1, 2, 100])
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_an_unfinished_shard_is_invisible(tmp_path):
    writer = TokenShardWriter(tmp_path, "00000", 100)
    writer.add([1, 2, 3])
    assert not (tmp_path / "00000.bin").exists()  # only the .partial file until close
    writer.close()
    assert (tmp_path / "00000.bin").stat().st_size == 6 and np.load(tmp_path / "00000.idx.npy").tolist() == [3]


def test_missing_meta_truncated_and_missing_shards_are_clear_errors(tmp_path):
    with pytest.raises(RepolmError, match="not a token folder"):
        TokenShards(tmp_path)
    write_folder(tmp_path, [[np.arange(10)]])
    with open(tmp_path / "00000.bin", "r+b") as file:
        file.truncate(8)
    with pytest.raises(RepolmError, match="truncated"):
        TokenShards(tmp_path)
    (tmp_path / "00000.bin").unlink()
    with pytest.raises(RepolmError, match="missing"):
        TokenShards(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["format"] = "other/9"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RepolmError, match="format"):
        TokenShards(tmp_path)
