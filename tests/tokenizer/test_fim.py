"""Tests of FIM: the PSM/SPM/MSP layouts, the rate and the cut distribution (statistically, fixed seeds), undo as an
exact inverse (hypothesis), per-file FIM in repository samples, determinism and config checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repolm.errors import RepolmError
from repolm.tokenizer.fim import (
    FimConfig,
    apply_fim,
    fim_document,
    fim_documents,
    fim_split,
    plan_fim,
    undo_fim,
)

CODE = 'def add(a, b):\n    """Sum."""\n    return a + b\n\n\nprint(add(1, 2))  # ünïcødé ✓ 日本\n'


def sentinels(tokenizer):
    return tokenizer.fim_begin_id, tokenizer.fim_hole_id, tokenizer.fim_end_id


def test_psm_layout_is_the_papers(small_tokenizer):
    begin, hole, end = sentinels(small_tokenizer)
    ids = apply_fim(CODE, small_tokenizer, np.random.default_rng(7), FimConfig(rate=1.0))
    rng = np.random.default_rng(7)
    rng.random()  # apply_fim draws the FIM decision first, then the two cuts
    prefix, middle, suffix = fim_split(CODE, rng)
    assert all((prefix, middle, suffix))  # this seed gives three non-empty parts
    encode = small_tokenizer.encode
    assert ids == [begin, *encode(prefix), hole, *encode(suffix), end, *encode(middle)]
    assert prefix + middle + suffix == CODE


def test_spm_layout_is_megatrons_variant_2(small_tokenizer):
    begin, hole, end = sentinels(small_tokenizer)
    ids = apply_fim(CODE, small_tokenizer, np.random.default_rng(3), FimConfig(rate=1.0, mode="spm"))
    rng = np.random.default_rng(3)
    rng.random()
    prefix, middle, suffix = fim_split(CODE, rng)
    encode = small_tokenizer.encode
    assert ids == [begin, hole, *encode(suffix), end, *encode(prefix), *encode(middle)]


def test_msp_layout_masks_k_spans_in_order(small_tokenizer):
    begin, hole, end = sentinels(small_tokenizer)
    config = FimConfig(rate=1.0, mode="msp", msp_spans=3)
    plan = plan_fim(CODE, np.random.default_rng(11), config)
    assert plan.mode == "msp" and len(plan.parts) == 7 and "".join(plan.parts) == CODE
    ids = apply_fim(CODE, small_tokenizer, np.random.default_rng(11), config)
    encode = small_tokenizer.encode
    kept, spans = plan.parts[0::2], plan.parts[1::2]
    expected = [begin, *encode(kept[0])]
    for segment in kept[1:]:
        expected += [hole, *encode(segment)]
    expected.append(end)
    for span in spans:
        expected += [hole, *encode(span)]
    assert ids == expected
    assert ids.count(hole) == 6 and ids.count(begin) == 1 and ids.count(end) == 1
    assert ids[ids.index(end) + 1] == hole


def test_spm_rate_mixes_psm_and_spm(small_tokenizer):
    config = FimConfig(rate=1.0, mode="psm", spm_rate=0.3)
    rng = np.random.default_rng(0)
    modes = [plan_fim("abcdef", rng, config).mode for _ in range(2000)]
    spm = modes.count("spm")
    assert modes.count("psm") + spm == 2000
    assert abs(spm - 600) < 5 * np.sqrt(2000 * 0.3 * 0.7)  # binomial, 5 standard deviations


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_fim_rate_is_binomial(small_tokenizer, rate):
    rng = np.random.default_rng(1234)
    config = FimConfig(rate=rate)
    fimmed = sum(
        apply_fim("x = 1\n", small_tokenizer, rng, config)[0] == small_tokenizer.fim_begin_id for _ in range(2000)
    )
    assert abs(fimmed - 2000 * rate) < 5 * np.sqrt(2000 * rate * (1 - rate))


def test_cut_points_are_uniform_sorted_and_reach_the_ends():
    rng = np.random.default_rng(5)
    text = "0123456789"  # 10 characters: cuts in {0, ..., 10}
    splits = [fim_split(text, rng) for _ in range(20000)]
    assert all("".join(split) == text for split in splits)
    middle_lengths = np.array([len(middle) for _, middle, _ in splits])
    # |X - Y| for X, Y iid uniform on {0..n}: mean n(n+2) / (3(n+1)) = 120/33
    assert abs(middle_lengths.mean() - 120 / 33) < 0.1
    assert any(split[0] == "" for split in splits) and any(split[2] == "" for split in splits)
    assert any(split[1] == "" for split in splits) and any(split[1] == text for split in splits)


def test_rate_zero_is_plain_encoding_and_rate_one_always_fims(small_tokenizer):
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert apply_fim(CODE, small_tokenizer, rng, FimConfig(rate=0.0)) == small_tokenizer.encode(CODE)
    assert fim_document(CODE, None, small_tokenizer, rng, FimConfig(rate=0.0)) == [
        *small_tokenizer.encode(CODE),
        small_tokenizer.eos_id,
    ]
    for mode in ("psm", "spm", "msp"):
        config = FimConfig(rate=1.0, mode=mode)
        assert all(apply_fim(CODE, small_tokenizer, rng, config)[0] == small_tokenizer.fim_begin_id for _ in range(200))


def test_same_seed_same_ids_other_seed_other_ids(small_tokenizer):
    config = FimConfig(rate=0.5, mode="psm", spm_rate=0.5)
    offsets = [0, 20, 50]
    runs = [
        fim_document(CODE * 3, offsets, small_tokenizer, np.random.default_rng(seed), config) for seed in (9, 9, 10)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(min_size=0, max_size=200), seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["psm", "spm", "msp"])
)
def test_undo_gives_back_any_unicode_text(small_tokenizer, text, seed, mode):
    config = FimConfig(rate=1.0, mode=mode, msp_spans=1 + seed % 4)
    ids = apply_fim(text, small_tokenizer, np.random.default_rng(seed), config)
    assert undo_fim(ids, small_tokenizer) == text
    document = fim_document(text, None, small_tokenizer, np.random.default_rng(seed), config)
    assert document[-1] == small_tokenizer.eos_id and undo_fim(document, small_tokenizer) == text


def repo_sample(files: list[str]) -> tuple[str, list[int]]:
    offsets, position = [], 0
    for text in files:
        offsets.append(position)
        position += len(text)
    return "".join(files), offsets


FILES = [
    "# pkg/a.py\nimport os\n\n\ndef a():\n    return os.sep\n",
    "# pkg/b.py\nfrom pkg.a import a\n\nVALUE = a() * 3  # 😀\n",
    "",  # an empty file: left out, no FIM'd block for it
    "# pkg/c.py\nclass C:\n    pass\n",
]


@pytest.mark.parametrize("mode", ["psm", "spm", "msp"])
def test_each_file_of_a_repo_sample_is_fimmed_on_its_own(small_tokenizer, mode):
    text, offsets = repo_sample(FILES)
    begin, eos = small_tokenizer.fim_begin_id, small_tokenizer.eos_id
    for seed in range(20):
        ids = fim_document(text, offsets, small_tokenizer, np.random.default_rng(seed), FimConfig(rate=1.0, mode=mode))
        assert ids[-1] == eos and ids.count(eos) == 1
        # one FIM'd block per non-empty file, each giving back exactly that file: no span crosses a boundary
        starts = [index for index, token_id in enumerate(ids) if token_id == begin]
        blocks = [ids[start:stop] for start, stop in zip(starts, [*starts[1:], len(ids) - 1], strict=True)]
        assert [undo_fim(block, small_tokenizer) for block in blocks] == [file for file in FILES if file]
        assert undo_fim(ids, small_tokenizer) == text


def test_a_repo_sample_at_rate_half_is_the_files_fimmed_in_order(small_tokenizer):
    text, offsets = repo_sample(FILES)
    config = FimConfig(rate=0.5, mode="psm", spm_rate=0.5)
    seen_plain = seen_fim = 0
    for seed in range(30):
        ids = fim_document(text, offsets, small_tokenizer, np.random.default_rng(seed), config)
        rng = np.random.default_rng(seed)  # the document draws file after file from one stream
        per_file = [apply_fim(file, small_tokenizer, rng, config) for file in FILES if file]
        assert ids == [token_id for piece in per_file for token_id in piece] + [small_tokenizer.eos_id]
        for file, piece in zip([file for file in FILES if file], per_file, strict=True):
            assert undo_fim(piece, small_tokenizer) == file
            fimmed = piece[0] == small_tokenizer.fim_begin_id
            seen_fim += fimmed
            seen_plain += not fimmed
    assert seen_fim > 10 and seen_plain > 10


def test_text_before_the_first_offset_is_its_own_piece(small_tokenizer):
    ids = fim_document("preamble\nbody\n", [9], small_tokenizer, np.random.default_rng(0), FimConfig(rate=1.0))
    assert ids.count(small_tokenizer.fim_begin_id) == 2
    assert undo_fim(ids, small_tokenizer) == "preamble\nbody\n"


def test_batched_documents_equal_one_by_one(small_tokenizer):
    config = FimConfig(rate=0.5, mode="msp")
    samples = [(CODE, None), repo_sample(FILES), ("", None), ("tail", [0])]
    batched = fim_documents(samples, small_tokenizer, [np.random.default_rng(i) for i in range(4)], config)
    single = [fim_document(t, o, small_tokenizer, np.random.default_rng(i), config) for i, (t, o) in enumerate(samples)]
    assert batched == single and batched[2] == [small_tokenizer.eos_id]


@pytest.mark.parametrize(
    ("offsets", "message"),
    [([0, 5, 3], "increasing"), ([0, 500], "increasing"), ([0, 1.5], "increasing")],
)
def test_bad_offsets_are_refused(small_tokenizer, offsets, message):
    with pytest.raises(RepolmError, match=message):
        fim_document(CODE, offsets, small_tokenizer, np.random.default_rng(0), FimConfig())


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"rate": 1.5}, "fim.rate"),
        ({"rate": -0.1}, "fim.rate"),
        ({"mode": "pms"}, "fim.mode"),
        ({"spm_rate": 2.0}, "fim.spm_rate"),
        ({"mode": "spm", "spm_rate": 0.5}, "fim.spm_rate"),
        ({"msp_spans": 0}, "fim.msp_spans"),
    ],
)
def test_bad_configs_name_the_field(values, field):
    with pytest.raises(RepolmError, match=field):
        FimConfig(**values)
