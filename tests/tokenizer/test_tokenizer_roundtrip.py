"""decode(encode(text)) == text for any text, and the pre-tokenizer splits the way DeepSeek-Coder's does."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repolm.tokenizer import BYTE_LEVEL_LEFTOVERS, SPECIAL_TOKENS, CodeTokenizer
from repolm.tokenizer.train import build_pre_tokenizer

FIXTURE_SETTINGS = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

CODE_ALPHABET = st.sampled_from(
    list("abcxyzABCXYZ_0123456789 \t\n\r()[]{}<>:;.,'\"+-*/%=!&|^~#@$\\`?")
    + [
        "def ",
        "return ",
        "    ",
        "\r\n",
        "中文",
        "한국어",
        "😀",
        "é",
        "ß",
        "\u00a0",
        "\u3000",
        "õ",
        "ü",
        "▁",
        "｜",
        *SPECIAL_TOKENS,
    ]
)
code_like_text = st.lists(CODE_ALPHABET, max_size=60).map("".join)
any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)  # every category except surrogates
wide_text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x7F),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
        st.characters(codec="utf-8"),
    ),
    max_size=200,
)


@FIXTURE_SETTINGS
@given(text=any_text)
def test_roundtrip_arbitrary_unicode(small_tokenizer: CodeTokenizer, text: str) -> None:
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text


@FIXTURE_SETTINGS
@given(text=wide_text)
def test_roundtrip_ascii_cjk_emoji(small_tokenizer: CodeTokenizer, text: str) -> None:
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text


@FIXTURE_SETTINGS
@given(text=code_like_text)
def test_roundtrip_code_like_text_with_special_tokens(small_tokenizer: CodeTokenizer, text: str) -> None:
    ids = small_tokenizer.encode(text)
    assert small_tokenizer.decode(ids) == text
    # Every special-token string in the text became exactly one id, never split or merged with its neighbours.
    special_ids = {small_tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    expected_count = sum(text.count(token) for token in SPECIAL_TOKENS)
    assert sum(1 for token_id in ids if token_id in special_ids) == expected_count


@FIXTURE_SETTINGS
@given(texts=st.lists(code_like_text, max_size=5))
def test_encode_batch_matches_encode(small_tokenizer: CodeTokenizer, texts: list[str]) -> None:
    assert small_tokenizer.encode_batch(texts) == [small_tokenizer.encode(text) for text in texts]
    assert small_tokenizer.encode_batch(texts, add_bos=True) == [small_tokenizer.encode(t, add_bos=True) for t in texts]


@pytest.mark.parametrize(
    "text",
    ["", " ", "  leading spaces", "trailing  \n", "\n\n\n", "\r\n\r\n", "\t\tx", "x = 1_000_000", "a<|EOT|>b", "õ÷Áü"],
)
def test_roundtrip_edge_cases(small_tokenizer: CodeTokenizer, text: str) -> None:
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text
    assert small_tokenizer.decode(small_tokenizer.encode(text, add_bos=True)) == "<｜begin▁of▁sentence｜>" + text


def test_leftover_chars_in_text_are_byte_encoded_not_leftover_ids(small_tokenizer: CodeTokenizer) -> None:
    leftover_ids = {small_tokenizer.token_to_id(char) for char in BYTE_LEVEL_LEFTOVERS}
    ids = small_tokenizer.encode("".join(BYTE_LEVEL_LEFTOVERS))
    assert not leftover_ids & set(ids)


def test_add_bos_and_skip_special_tokens(small_tokenizer: CodeTokenizer) -> None:
    ids = small_tokenizer.encode("x<|EOT|>", add_bos=True)
    assert ids[0] == small_tokenizer.bos_id
    assert ids[-1] == small_tokenizer.eot_id
    assert small_tokenizer.decode(ids) == "<｜begin▁of▁sentence｜>x<|EOT|>"
    assert small_tokenizer.decode(ids, skip_special_tokens=True) == "x"


def _pieces(text: str) -> list[str]:
    """Pre-tokenizer pieces of `text`, mapped back from byte-level symbols to text."""
    from repolm.tokenizer.special_tokens import byte_level_char

    to_byte = {byte_level_char(b): b for b in range(256)}
    return [
        bytes(to_byte[c] for c in piece).decode("utf-8") for piece, _ in build_pre_tokenizer().pre_tokenize_str(text)
    ]


def test_pre_tokenizer_splits_every_digit() -> None:
    assert _pieces("x12345") == ["x", "1", "2", "3", "4", "5"]
    assert _pieces("3.14") == ["3", ".", "1", "4"]
    assert _pieces("٣٤") == ["٣", "٤"]  # any Unicode digit, not only ASCII


def test_pre_tokenizer_isolates_newlines() -> None:
    assert _pieces("a\nb") == ["a", "\n", "b"]
    assert _pieces("\r\n\n") == ["\r", "\n", "\n"]
    assert _pieces("x:\n    return y") == ["x", ":", "\n", "   ", " return", " y"]


def test_pre_tokenizer_keeps_whitespace_and_symbol_runs() -> None:
    assert _pieces("a  += b") == ["a", "  +=", " b"]  # `+=` is \p{S}, not \p{P}: it stays with the spaces
    # The CJK/Hangul rule runs after the letter rule and splits the leading space off again (as in llama.cpp).
    assert _pieces("中文 한국어") == ["中文", " ", "한국어"]
    assert "".join(_pieces("a \t😀 b")) == "a \t😀 b"


def test_digits_and_newlines_are_separate_tokens(small_tokenizer: CodeTokenizer) -> None:
    tokens = [small_tokenizer.decode([i]) for i in small_tokenizer.encode("x = 2024\n\n\ny = 99\r\n")]
    assert tokens[tokens.index("2") : tokens.index("2") + 4] == ["2", "0", "2", "4"]
    assert tokens.count("\n") == 4 and tokens.count("\r") == 1
    assert all(not (t.isdigit() and len(t) > 1) for t in tokens)
