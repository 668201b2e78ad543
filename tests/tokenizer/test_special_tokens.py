"""The special-token strings, the byte-level leftovers and the id layout match DeepSeek-Coder exactly."""

from __future__ import annotations

import unicodedata

from tokenizers.pre_tokenizers import ByteLevel

from repolm.tokenizer import (
    BYTE_LEVEL_LEFTOVER_BYTES,
    BYTE_LEVEL_LEFTOVERS,
    SPECIAL_TOKENS,
    leftover_token_ids,
    special_token_ids,
    total_vocab_size,
)
from repolm.tokenizer.special_tokens import REACHABLE_BYTE_LEVEL_ALPHABET, byte_level_char

DEEPSEEK_CODER_IDS = {
    "<｜begin▁of▁sentence｜>": 32013,
    "<｜end▁of▁sentence｜>": 32014,
    "<｜fim▁hole｜>": 32015,
    "<｜fim▁begin｜>": 32016,
    "<｜fim▁end｜>": 32017,
    "<pad>": 32018,
    "<|User|>": 32019,
    "<|Assistant|>": 32020,
    "<|EOT|>": 32021,
}


def test_special_token_strings_use_fullwidth_bar_and_lower_block() -> None:
    assert SPECIAL_TOKENS == tuple(DEEPSEEK_CODER_IDS)
    for token in SPECIAL_TOKENS[:5]:
        assert token[1] == token[-2] == "\uff5c" == "｜"
        assert unicodedata.name(token[1]) == "FULLWIDTH VERTICAL LINE"
        assert "\u2581" in token and unicodedata.name("\u2581") == "LOWER ONE EIGHTH BLOCK"
        assert "|" not in token and " " not in token and "_" not in token
    for token in SPECIAL_TOKENS[6:]:
        assert token.isascii() and token.startswith("<|") and token.endswith("|>")


def test_deepseek_coder_id_layout() -> None:
    assert special_token_ids() == DEEPSEEK_CODER_IDS
    assert leftover_token_ids() == {char: 32000 + i for i, char in enumerate("õ÷ÁýÀÿøúþüùöû")}
    assert total_vocab_size() == 32022


def test_id_layout_shifts_with_bpe_vocab_size() -> None:
    assert special_token_ids(512) == {token: 512 + 13 + i for i, token in enumerate(SPECIAL_TOKENS)}
    assert min(leftover_token_ids(512).values()) == 512
    assert total_vocab_size(512) == 534


def test_leftovers_are_the_byte_level_chars_of_bytes_that_never_occur_in_utf8() -> None:
    assert BYTE_LEVEL_LEFTOVERS == tuple("õ ÷ Á ý À ÿ ø ú þ ü ù ö û".split())
    assert sorted(BYTE_LEVEL_LEFTOVER_BYTES) == [0xC0, 0xC1, *range(0xF5, 0x100)]
    # Same table as the tokenizers library's ByteLevel pre-tokenizer.
    assert {byte_level_char(b) for b in range(256)} == set(ByteLevel.alphabet())
    assert len(REACHABLE_BYTE_LEVEL_ALPHABET) == 243
    assert not set(REACHABLE_BYTE_LEVEL_ALPHABET) & set(BYTE_LEVEL_LEFTOVERS)
    # No UTF-8 encoding of any code point contains these bytes.
    leftover_bytes = set(BYTE_LEVEL_LEFTOVER_BYTES)
    seen_bytes: set[int] = set()
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        seen_bytes.update(chr(code_point).encode("utf-8"))
    assert seen_bytes == set(range(256)) - leftover_bytes
