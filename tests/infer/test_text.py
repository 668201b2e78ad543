"""The text layer over the id-level engine: decoding, streaming, stop strings, multi-byte characters, batches.

The model is the untrained tiny model of `tests/conftest.py`; its text is noise (byte tokens included, so invalid
UTF-8 and replacement characters occur), which is what the streaming and stop-string logic has to survive.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repolm.infer.engine import Engine
from repolm.infer.prompts import completion_prompt_ids, fim_prompt_ids
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import IncrementalDecoder, TextGenerator
from repolm.tokenizer import CodeTokenizer

PROMPTS = ["def fibonacci(n):", "import os\n", "class Stack:\n    def __init__(self):\n        self.items = []\n"]
GREEDY = SamplingParams(max_new_tokens=48)
SAMPLED = SamplingParams(max_new_tokens=48, temperature=0.9, top_k=200, top_p=0.95, seed=3)


class CountingEngine(Engine):
    """The real engine, counting the decoding steps it runs."""

    steps = 0

    def stream(self, prompts, params, stop=None, seeds=None):
        for step in super().stream(prompts, params, stop, seeds):
            self.steps += 1
            yield step


@pytest.fixture(scope="module")
def tokenizer(tiny_generator: TextGenerator) -> CodeTokenizer:
    return tiny_generator.tokenizer


def _engine_texts(generator: TextGenerator, prompts: list[list[int]], params: SamplingParams) -> list[str]:
    """What the engine generates for `prompts`, decoded, without the stop id that ended a row (if one did)."""
    stop_ids = params.stop_token_ids or generator.default_stop_ids()
    texts = []
    for generated in generator.engine.generate(prompts, replace(params, stop_token_ids=stop_ids)):
        if generated and generated[-1] in stop_ids:
            generated = generated[:-1]
        assert not set(generated) & set(stop_ids)
        texts.append(generator.tokenizer.decode(generated))
    return texts


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_generate_is_the_decoded_engine_output(tiny_generator: TextGenerator, params: SamplingParams) -> None:
    texts = tiny_generator.generate(PROMPTS, params)
    ids = [completion_prompt_ids(tiny_generator.tokenizer, prompt) for prompt in PROMPTS]
    assert all(row[0] == tiny_generator.tokenizer.bos_id for row in ids)
    assert texts == _engine_texts(tiny_generator, ids, params)
    assert all(len(text) > 20 for text in texts)  # the untrained model does say something


def test_stop_id_ends_the_row_and_is_not_in_the_text(tiny_generator: TextGenerator) -> None:
    ids = completion_prompt_ids(tiny_generator.tokenizer, PROMPTS[0])
    (free,) = tiny_generator.engine.generate([ids], GREEDY)
    stop_id = free[10]
    cut = free.index(stop_id)
    params = replace(GREEDY, stop_token_ids=(stop_id,))
    (text,) = tiny_generator.generate([PROMPTS[0]], params)
    assert text == tiny_generator.tokenizer.decode(free[:cut])
    assert [text] == _engine_texts(tiny_generator, [ids], params)


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_stream_pieces_concatenate_to_generate(tiny_generator: TextGenerator, params: SamplingParams) -> None:
    for prompt in PROMPTS:
        pieces = list(tiny_generator.stream(prompt, params))
        assert all(pieces)
        assert len(pieces) > 5  # streamed, not released at the end in one piece
        assert "".join(pieces) == tiny_generator.generate([prompt], params)[0]


def test_stream_ids_marks_each_rows_last_delta(tiny_generator: TextGenerator, tokenizer: CodeTokenizer) -> None:
    prompts = [completion_prompt_ids(tokenizer, p) for p in PROMPTS]
    deltas = list(tiny_generator.stream_ids(prompts, GREEDY))
    for row in range(len(PROMPTS)):
        mine = [delta for delta in deltas if delta.row == row]
        assert [delta.finished for delta in mine] == [False] * (len(mine) - 1) + [True]


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_stop_string_cuts_the_text_and_ends_generation(tiny_generator: TextGenerator, params: SamplingParams) -> None:
    long = replace(params, max_new_tokens=64)
    (free,) = tiny_generator.generate([PROMPTS[0]], long)
    # a stop string taken from the middle of the unconstrained output, so that it certainly occurs
    start = next(i for i in range(len(free) // 3, len(free)) if "\ufffd" not in free[i : i + 3])
    stop = free[start : start + 3]
    expected = free[: free.index(stop)]

    engine = CountingEngine(tiny_generator.engine.model)
    generator = TextGenerator(engine, tiny_generator.tokenizer)
    pieces = list(generator.stream(PROMPTS[0], long, stop_strings=[stop]))
    assert "".join(pieces) == expected
    assert all(stop not in piece for piece in pieces)
    assert engine.steps < len(tiny_generator.tokenizer.encode(free))  # ended early, not at max_new_tokens
    assert generator.generate([PROMPTS[0]], long, stop_strings=["never in the output", stop]) == [expected]


def test_stop_string_straddling_token_boundaries(tiny_generator: TextGenerator, tokenizer: CodeTokenizer) -> None:
    ids = completion_prompt_ids(tokenizer, PROMPTS[2])
    (generated,) = tiny_generator.engine.generate([ids], replace(GREEDY, stop_token_ids=(-1,)))
    free = tokenizer.decode(generated)
    # character offsets where a token ends (and the text so far is final, not a partial character)
    boundaries = []
    for k in range(1, len(generated)):
        text = tokenizer.decode(generated[:k])
        if free.startswith(text) and not text.endswith("\ufffd"):
            boundaries.append(len(text))
    found = 0
    for boundary in boundaries:
        stop = free[boundary - 2 : boundary + 2]
        if boundary < 4 or "\ufffd" in stop or free.index(stop) != boundary - 2:
            continue
        # the stop string ends in the middle of the token after the boundary, or spans it and more
        (text,) = tiny_generator.generate_ids([ids], GREEDY, stop_strings=[stop])
        assert text == free[: boundary - 2], stop
        found += 1
    assert found >= 3


def test_unfinished_stop_string_is_released_at_the_end(tiny_generator: TextGenerator) -> None:
    (free,) = tiny_generator.generate([PROMPTS[1]], GREEDY)
    tail = free.rstrip("\ufffd")[-3:]
    stop = tail + "\x00never"  # the output ends with the start of this stop string: held back, then flushed
    pieces = list(tiny_generator.stream(PROMPTS[1], GREEDY, stop_strings=[stop, ""]))
    assert "".join(pieces) == free


def test_batch_of_different_lengths_equals_each_prompt_alone(tiny_generator: TextGenerator) -> None:
    # greedy: a seeded sampler draws for the whole batch at once, so sampled rows depend on their batch
    alone = [tiny_generator.generate([prompt], GREEDY)[0] for prompt in PROMPTS]
    assert tiny_generator.generate(PROMPTS, GREEDY) == alone
    # with a stop string that ends one row early while the others go on
    free, stop = alone, alone[1][10:13]
    alone = [tiny_generator.generate([prompt], GREEDY, [stop])[0] for prompt in PROMPTS]
    assert tiny_generator.generate(PROMPTS, GREEDY, [stop]) == alone
    assert alone == [text[: text.index(stop)] if stop in text else text for text in free]


@pytest.mark.parametrize("mode", ["psm", "spm"])
def test_infill_is_the_decoded_engine_output(tiny_generator: TextGenerator, tokenizer: CodeTokenizer, mode) -> None:
    prefix, suffix = "def add(a, b):\n    ", "\n    return result\n"
    middle = "".join(tiny_generator.infill(prefix, suffix, GREEDY, mode=mode))
    assert [middle] == _engine_texts(tiny_generator, [fim_prompt_ids(tokenizer, prefix, suffix, mode)], GREEDY)
    assert middle


# -----------------------------------------------------------------------------
# multi-byte characters: never half a character mid-stream


@cache
def _byte_level_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which byte-level BPE vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def _byte_ids(tokenizer: CodeTokenizer, data: bytes) -> list[int]:
    ids = [tokenizer.token_to_id(_byte_level_chars()[b]) for b in data]
    assert None not in ids
    return ids


def _feed(decoder: IncrementalDecoder, ids: list[int]) -> list[str]:
    deltas = []
    for token in ids:
        deltas.append(decoder.add(token))
        if decoder.stopped:
            break
    deltas.append(decoder.flush())
    return deltas


MULTIBYTE = st.text(
    st.one_of(
        st.sampled_from(list("aé中文字😀👍🏽🇫🇷\u200d\n ")),
        st.characters(exclude_categories=("Cs",), exclude_characters="\ufffd"),
    ),
    max_size=24,
)


@settings(max_examples=150, deadline=None)
@given(text=MULTIBYTE)
def test_byte_by_byte_stream_never_emits_a_partial_character(tokenizer: CodeTokenizer, text: str) -> None:
    data = text.encode("utf-8")
    decoder = IncrementalDecoder(tokenizer, set(), [])
    emitted = ""
    for i, token in enumerate(_byte_ids(tokenizer, data)):
        delta = decoder.add(token)
        assert "\ufffd" not in delta
        emitted += delta
        # everything that is complete is out, nothing that is not
        assert emitted == data[: i + 1].decode("utf-8", errors="ignore")
    assert decoder.flush() == ""
    assert emitted == text


@settings(max_examples=150, deadline=None)
@given(text=MULTIBYTE)
def test_token_by_token_stream_never_emits_a_partial_character(tokenizer: CodeTokenizer, text: str) -> None:
    deltas = _feed(IncrementalDecoder(tokenizer, set(), []), tokenizer.encode(text))
    assert all("\ufffd" not in delta for delta in deltas)
    assert "".join(deltas) == text


@settings(max_examples=200, deadline=None)
@given(text=MULTIBYTE, stop=st.text(st.sampled_from(list("ab中😀\n")), min_size=1, max_size=3), by_byte=st.booleans())
def test_stream_with_stop_string_is_cut_before_it(tokenizer: CodeTokenizer, text: str, stop: str, by_byte) -> None:
    text = text[: len(text) // 2] + stop + text[len(text) // 2 :] if len(text) % 3 else text  # mostly present
    ids = _byte_ids(tokenizer, text.encode("utf-8")) if by_byte else tokenizer.encode(text)
    decoder = IncrementalDecoder(tokenizer, set(), [stop])
    expected = text[: text.index(stop)] if stop in text else text
    deltas = _feed(decoder, ids)
    emitted = ""
    for delta in deltas:
        assert "\ufffd" not in delta
        emitted += delta
        assert expected.startswith(emitted)
    assert emitted == expected
    assert decoder.stopped == (stop in text)


def test_crafted_multibyte_cases(tokenizer: CodeTokenizer) -> None:
    # a 4-byte emoji split over three tokens, a CJK character split over two, with a stop id in between
    eot = tokenizer.eot_id
    data = "x😀中".encode()
    ids = _byte_ids(tokenizer, data)
    ids = [ids[0], ids[1], eot, ids[2], ids[3], ids[4], ids[5], eot, ids[6], ids[7]]
    decoder = IncrementalDecoder(tokenizer, {eot}, [])
    assert [decoder.add(token) for token in ids] == ["x", "", "", "", "", "😀", "", "", "", "中"]
    # invalid bytes are released as replacement characters once they cannot become a character any more
    decoder = IncrementalDecoder(tokenizer, set(), [])
    deltas = [decoder.add(token) for token in _byte_ids(tokenizer, b"\xe4\xb8a\x80")]
    assert deltas == ["", "", "\ufffda", ""]
    assert decoder.flush() == "\ufffd"
