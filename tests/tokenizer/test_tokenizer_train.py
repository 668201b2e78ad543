"""train_tokenizer: DeepSeek-Coder's id layout at any vocab size, folder input, and clear errors."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.tokenizer import BYTE_LEVEL_LEFTOVERS, SPECIAL_TOKENS, CodeTokenizer, special_token_ids, train_tokenizer
from repolm.tokenizer.special_tokens import REACHABLE_BYTE_LEVEL_ALPHABET
from repolm.tokenizer.train import UNUSED_BPE_TOKEN


def assert_layout(tokenizer: CodeTokenizer, bpe_vocab_size: int) -> None:
    assert len(tokenizer) == tokenizer.vocab_size == bpe_vocab_size + 22
    for i, char in enumerate(BYTE_LEVEL_LEFTOVERS):
        assert tokenizer.token_to_id(char) == bpe_vocab_size + i
    assert {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS} == special_token_ids(bpe_vocab_size)
    first_special = bpe_vocab_size + 13
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.fim_hole_id) == (
        first_special,
        first_special + 1,
        first_special + 2,
    )
    assert (tokenizer.fim_begin_id, tokenizer.fim_end_id, tokenizer.pad_id) == (
        first_special + 3,
        first_special + 4,
        first_special + 5,
    )
    assert tokenizer.eot_id == first_special + 8
    # The BPE part holds every byte-level symbol UTF-8 can produce, so no text needs an unknown token.
    assert all(tokenizer.token_to_id(char) < bpe_vocab_size for char in REACHABLE_BYTE_LEVEL_ALPHABET)
    assert all(tokenizer.id_to_token(i) is not None for i in range(len(tokenizer)))
    for token in SPECIAL_TOKENS:
        assert tokenizer.encode(token) == [tokenizer.token_to_id(token)]
        # never merged with its neighbours: the text around it encodes as if the token were not there
        assert tokenizer.encode(f"ab{token}cd") == [
            *tokenizer.encode("ab"),
            tokenizer.token_to_id(token),
            *tokenizer.encode("cd"),
        ]


def test_small_vocab_layout(small_tokenizer: CodeTokenizer, small_vocab_size: int) -> None:
    assert_layout(small_tokenizer, small_vocab_size)
    assert small_tokenizer.token_to_id(UNUSED_BPE_TOKEN.format(small_vocab_size - 1)) is None  # enough text: no padding


def test_deepseek_coder_exact_ids_at_32000(all_stdlib_files: list[Path]) -> None:
    """A real 32000-token BPE (no placeholders) on 8 MB of stdlib code (a few seconds)."""
    started = time.perf_counter()
    tokenizer = train_tokenizer(all_stdlib_files, vocab_size=32000, min_frequency=1, max_total_bytes=8_000_000)
    assert time.perf_counter() - started < 30
    assert tokenizer.token_to_id(UNUSED_BPE_TOKEN.format(31999)) is None, "BPE part fell short; needs more text"
    assert_layout(tokenizer, 32000)
    assert tokenizer.encode(
        "<｜begin▁of▁sentence｜><｜end▁of▁sentence｜><｜fim▁hole｜><｜fim▁begin｜><｜fim▁end｜>"
    ) == [
        32013,
        32014,
        32015,
        32016,
        32017,
    ]
    assert tokenizer.encode("<pad><|User|><|Assistant|><|EOT|>") == [32018, 32019, 32020, 32021]
    assert [tokenizer.id_to_token(i) for i in range(32000, 32013)] == "õ ÷ Á ý À ÿ ø ú þ ü ù ö û".split()


def test_too_little_text_pads_bpe_part_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "tiny.py").write_text("def f(x):\n    return x + 1\n" * 3)
    with caplog.at_level(logging.WARNING, logger="repolm.tokenizer.train"):
        tokenizer = train_tokenizer([tmp_path / "tiny.py"], vocab_size=400)
    assert "too small for vocab_size=400" in caplog.text
    assert_layout(tokenizer, 400)
    assert tokenizer.id_to_token(399) == UNUSED_BPE_TOKEN.format(399)
    text = "def f(x):\n    return x + 1\n<unused_bpe_399>"
    assert 399 not in tokenizer.encode(text)  # placeholders are unreachable
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_folder_input_recurses_and_skips_binaries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("import os\nprint(os.getcwd())\n" * 20)
    (tmp_path / "pkg" / "sub" / "b.rs").write_text('fn main() { println!("hi"); }\n' * 20)
    (tmp_path / "pkg" / "latin1.txt").write_bytes("caf\xe9 na\xefve\n".encode("latin-1") * 5)  # invalid UTF-8
    (tmp_path / "pkg" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "pkg" / ".git").mkdir()
    (tmp_path / "pkg" / ".git" / "config").write_text("[core]\n")
    with caplog.at_level(logging.INFO, logger="repolm.tokenizer.train"):
        tokenizer = train_tokenizer(tmp_path / "pkg", vocab_size=300)
    assert "trained tokenizer on 3 files" in caplog.text
    assert "skipped 1 binary" in caplog.text
    assert_layout(tokenizer, 300)


def test_max_total_bytes_limits_input(stdlib_files: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="repolm.tokenizer.train"):
        train_tokenizer(stdlib_files, vocab_size=300, max_total_bytes=1)
    assert "trained tokenizer on 1 files" in caplog.text


def test_missing_input_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RepolmError, match="training input not found: .*nope"):
        train_tokenizer([tmp_path / "nope"], vocab_size=300)


def test_no_text_found(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("")
    with pytest.raises(RepolmError, match="no training text found"):
        train_tokenizer(tmp_path, vocab_size=300)
    with pytest.raises(RepolmError, match="no training text found in an empty list of files"):
        train_tokenizer([], vocab_size=300)


def test_vocab_size_below_alphabet(tmp_path: Path) -> None:
    with pytest.raises(RepolmError, match="vocab_size=100 is too small"):
        train_tokenizer(tmp_path, vocab_size=100)


@pytest.mark.slow
def test_trains_32k_on_whole_stdlib_in_under_a_minute(all_stdlib_files: list[Path]) -> None:
    started = time.perf_counter()
    tokenizer = train_tokenizer(all_stdlib_files, vocab_size=32000)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"training took {elapsed:.1f} s"
    assert tokenizer.token_to_id(UNUSED_BPE_TOKEN.format(31999)) is None
    assert_layout(tokenizer, 32000)


def test_train_on_a_data_build_folder_reads_training_samples_only(tmp_path):
    """A `repolm data build` folder gives its samples' texts (data/<kind>/*.jsonl.zst), never heldout/: a word
    repeated only in held-out samples does not become a token, the same word in training samples does."""
    import json

    import zstandard

    def write_samples(path, texts):
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"text": text, "id": str(number)}) + "\n" for number, text in enumerate(texts))
        path.write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))

    build = tmp_path / "build"
    write_samples(build / "data" / "code" / "00000.jsonl.zst", ["def trainonlyword():\n    pass\n"] * 200)
    write_samples(build / "heldout" / "code" / "00000.jsonl.zst", ["def heldoutonlyword():\n    pass\n"] * 400)
    (build / "stats.json").write_text("{}")
    tokenizer = train_tokenizer([build], vocab_size=320)
    assert len(tokenizer.encode(" trainonlyword")) == 1
    assert len(tokenizer.encode(" heldoutonlyword")) > 3
