"""Held-out evaluations on the tiny model and a held-out folder written as `repolm data build` writes it (the real
assembly and the build's writer): per-language bits per byte add up to `heldout_bits_per_byte`'s totals, the xz and
zstd baselines are lzma's and zstandard's sizes of the same bytes, FIM middle losses equal a hand forward pass over the
middle tokens only, the BM25 line baseline copies a duplicated line, and the text metrics match hand values."""

from __future__ import annotations

import json
import lzma
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as functional
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from repolm.data.assembly import AssemblyConfig, assemble_repository
from repolm.data.records import CodeFile
from repolm.errors import RepolmError
from repolm.eval.heldout_infilling import (
    Hole,
    RepositoryLines,
    block_lines,
    hole_lines,
    is_hole_line,
    line_infilling,
    sample_generations,
    stop_ids,
)
from repolm.eval.heldout_loss import heldout_bits_per_byte
from repolm.eval.heldout_tasks import (
    bits_per_byte_by_language,
    fim_examples,
    fim_middle_loss,
    instruct_format_share,
    read_heldout_samples,
    spread_files,
)
from repolm.eval.text_metrics import edit_similarity, exact_match, longest_common_subsequence
from repolm.infer.sampling import SamplingParams
from repolm.tokenizer.corpus import document_rng
from repolm.tokenizer.fim import fim_split

SHARED_BLOCK = "    subtotal = 0\n    result = sum(item.price * item.quantity for item in basket)\n    return result\n"
REPOSITORIES = {
    "shop": [
        CodeFile(
            "shop/util.py",
            "# helpers for the shop\nimport math\n\n\ndef total(basket):\n"
            + SHARED_BLOCK
            + "\n\ndef rounded(value):\n    return math.floor(value * 100 + 0.5) / 100\n",
            "Python",
        ),
        CodeFile(
            "shop/main.py",
            "from shop.util import total, rounded\n\n\ndef checkout(basket):\n"
            + SHARED_BLOCK
            + "\n\nprint(rounded(checkout([])))  # café ☕\nlabel = '<｜end▁of▁sentence｜>'\n",
            "Python",
        ),
        CodeFile(
            "web/app.js",
            "// the page\nimport { render } from './view.js';\n\nexport function mount(element) {\n"
            "  const view = render(element.dataset);\n  element.appendChild(view);\n  return view;\n}\n",
            "JavaScript",
        ),
        CodeFile(
            "web/view.js",
            "export function render(data) {\n  return document.createElement(data.tag);\n}\n",
            "JavaScript",
        ),
        CodeFile("README.md", "# Shop\n\nA small shop, with a checkout.\n", "Markdown"),
    ],
    "calc": [
        CodeFile(
            "calc.c",
            '#include "calc.h"\n\n/* adds two numbers\n * and returns them */\nint add(int left, int right) {\n'
            "    int answer = left + right;\n    return answer;\n}\n",
            "C",
        ),
        CodeFile("calc.h", "int add(int left, int right);\n", "C"),
    ],
}


@pytest.fixture(scope="module")
def heldout_folder(tmp_path_factory) -> Path:
    """A held-out folder: the repositories assembled by the data pipeline, written with the build's writer."""
    from repolm.data.steps import output_record, sample_to_document, shard_writer

    folder = tmp_path_factory.mktemp("heldout")
    with shard_writer(str(folder), "${kind}/${rank}.jsonl.zst", adapter=output_record) as writer:
        for repo, files in REPOSITORIES.items():
            for sample in assemble_repository(repo, "test", "code", files, AssemblyConfig()):
                writer.write(sample_to_document(sample), rank=0)
    return folder


@pytest.fixture(scope="module")
def model(tiny_generator):
    return tiny_generator.engine.model


def forward_nats(model, ids: list[int]) -> np.ndarray:
    """NLL of ids[1:], each given the ids before it, in one forward pass (float64)."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids]))[0].double()
    return functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none").numpy()


# -----------------------------------------------------------------------------
# Text metrics


def test_text_metrics_hand_values():
    assert exact_match("  x = 1\n", "x = 1") and not exact_match("x = 1", "x = 2")
    assert longest_common_subsequence("kitten", "sitting") == 4  # i t t n
    assert edit_similarity("kitten", "sitting") == pytest.approx(100 * 8 / 13)  # rapidfuzz: 61.538...
    assert edit_similarity("abc", "abd") == pytest.approx(200 * 2 / 6)
    assert edit_similarity("  return x\n", "return x") == 100.0
    assert edit_similarity("", "") == 100.0 and edit_similarity("abc", "") == 0.0
    assert edit_similarity("ab", "ba") == 50.0  # one common character: 2 * 1 / 4


def dynamic_programming_lcs(first: str, second: str) -> int:
    previous = [0] * (len(second) + 1)
    for character in first:
        current = [0]
        for index, other in enumerate(second):
            current.append(previous[index] + 1 if character == other else max(previous[index + 1], current[index]))
        previous = current
    return previous[-1]


@given(st.text(alphabet="ab c\n☕", max_size=40), st.text(alphabet="abc d☕", max_size=40))
def test_bit_parallel_lcs_equals_dynamic_programming(first, second):
    assert longest_common_subsequence(first, second) == dynamic_programming_lcs(first, second)
    assert edit_similarity(first, second) == edit_similarity(second, first)


def test_edit_similarity_equals_rapidfuzz_when_installed():
    fuzz = pytest.importorskip("rapidfuzz.fuzz")
    for first, second in [("kitten", "sitting"), ("def f(x):", "def g(y, x):"), ("a", "")]:
        assert edit_similarity(first, second) == pytest.approx(fuzz.ratio(first, second))


# -----------------------------------------------------------------------------
# Reading held-out samples


def test_samples_are_cut_back_into_their_files(heldout_folder):
    samples = list(read_heldout_samples(heldout_folder))
    by_path = {file.path: file for sample in samples for file in sample.files}
    assert set(by_path) == {file.path for files in REPOSITORIES.values() for file in files}
    for sample in samples:
        assert "".join(file.block for file in sample.files) == sample.text
    util = by_path["shop/util.py"]
    assert util.block.startswith("# shop/util.py\n") and util.header_length == len("# shop/util.py\n")
    assert util.block[util.header_length :].startswith(REPOSITORIES["shop"][0].text)
    assert by_path["calc.c"].block.startswith("// calc.c\n") and by_path["calc.c"].language == "C"
    assert not by_path["README.md"].is_code and by_path["web/view.js"].is_code
    assert len(list(read_heldout_samples(heldout_folder, max_documents=2))) == 2
    spread = spread_files(samples, seed=0)
    assert {file.path for file in spread} == set(by_path) - {"README.md"}
    assert spread[0].repo != spread[1].repo  # one repository after another
    assert spread == spread_files(samples, seed=0) and spread != spread_files(samples, seed=1)


def test_bad_input_names_the_path(tiny_generator, heldout_folder, tmp_path):
    with pytest.raises(RepolmError, match="missing"):
        bits_per_byte_by_language(tiny_generator, tmp_path / "missing", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RepolmError, match="empty: no .jsonl"):
        fim_middle_loss(tiny_generator, empty, progress=False)
    (empty / "code").mkdir()
    (empty / "code" / "00000.jsonl").write_text(json.dumps({"text": "", "id": "a"}) + "\n")
    with pytest.raises(RepolmError, match="no held-out documents"):
        line_infilling(tiny_generator, empty, progress=False)
    (empty / "code" / "00000.jsonl").write_text(json.dumps({"text": "x = 1\n", "files": ["a.py", "b.py"]}) + "\n")
    with pytest.raises(RepolmError, match="00000.jsonl:1: 'files', 'languages' and 'offsets'"):
        sample_generations(tiny_generator, empty, progress=False)
    with pytest.raises(RepolmError, match="no-model: model folder not found"):
        bits_per_byte_by_language(tmp_path / "no-model", heldout_folder, progress=False)
    with pytest.raises(RepolmError, match="max_documents must be >= 1"):
        fim_middle_loss(tiny_generator, heldout_folder, max_documents=0, progress=False)


# -----------------------------------------------------------------------------
# Bits per byte per language


@pytest.mark.parametrize(("max_seq_len", "max_bytes"), [(2048, None), (40, None), (64, 700)])
def test_languages_add_up_to_the_heldout_loss(tiny_model_dir, tiny_generator, heldout_folder, max_seq_len, max_bytes):
    result = bits_per_byte_by_language(
        tiny_generator, heldout_folder, max_seq_len=max_seq_len, batch_size=3, max_bytes=max_bytes, progress=False
    )
    whole = heldout_bits_per_byte(
        tiny_model_dir, heldout_folder, max_seq_len=max_seq_len, max_bytes=max_bytes, device="cpu", progress=False
    )
    total, languages = result["total"], result["languages"]
    assert total["documents"] == whole["documents"]
    for key in ("tokens", "bytes"):
        assert total[key] == whole[key] == sum(row[key] for row in languages.values())
    assert result["windows"] == whole["windows"]
    assert total["nats"] == pytest.approx(whole["nats"], rel=1e-6)
    assert sum(row["nats"] for row in languages.values()) == pytest.approx(whole["nats"], rel=1e-9)
    repositories = result["repositories"]  # the same figures cut by repository add up the same way
    for key in ("tokens", "bytes", "files"):
        assert sum(row[key] for row in repositories.values()) == sum(row[key] for row in languages.values())
    assert sum(row["nats"] for row in repositories.values()) == pytest.approx(whole["nats"], rel=1e-9)
    assert total["bits_per_byte"] == pytest.approx(whole["bits_per_byte"], rel=1e-6)
    if max_bytes is None:
        assert set(languages) == {"Python", "JavaScript", "C", "Markdown"}
        assert languages["Python"]["files"] == 2 and languages["Markdown"]["documents"] == 1
        assert list(languages) == sorted(languages, key=lambda name: -languages[name]["bytes"])
    json.dumps(result)


def test_tokens_go_to_the_file_they_start_in(tiny_generator, model, heldout_folder):
    """One sample by hand: its tokens' NLLs from one forward pass, split at the file offsets by start character."""
    sample = next(sample for sample in read_heldout_samples(heldout_folder) if sample.repo == "shop")
    tokenizer = tiny_generator.tokenizer
    encoding = tokenizer.encoding_backend(True).encode(sample.text, add_special_tokens=False)
    nats = forward_nats(model, [tokenizer.bos_id, *encoding.ids])
    expected: dict[str, float] = {}
    for (start, _), value in zip(encoding.offsets, nats, strict=True):
        file = max(index for index, offset in enumerate(sample.starts) if offset <= start)
        expected[sample.files[file].language] = expected.get(sample.files[file].language, 0.0) + value
    result = bits_per_byte_by_language(tiny_generator, heldout_folder, max_documents=1, progress=False)
    assert result["total"]["documents"] == 1 and set(result["languages"]) == set(expected)
    for language, value in expected.items():
        assert result["languages"][language]["nats"] == pytest.approx(value, rel=1e-5)


def test_baselines_are_lzma_and_zstandard_on_the_same_bytes(tiny_generator, heldout_folder):
    result = bits_per_byte_by_language(tiny_generator, heldout_folder, progress=False)
    parts: dict[str, bytes] = {}
    for sample in read_heldout_samples(heldout_folder):
        for file in sample.files:
            parts[file.language] = parts.get(file.language, b"") + file.block.encode("utf-8")
    for language, data in parts.items():
        row = result["languages"][language]
        xz = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
        zstd = zstandard.ZstdCompressor(level=19).compress(data)
        assert (row["bytes"], row["xz_bytes"], row["zstd_bytes"]) == (len(data), len(xz), len(zstd))
        assert row["xz_bits_per_byte"] == len(xz) * 8 / len(data)
        assert row["zstd_bits_per_byte"] == len(zstd) * 8 / len(data)
    total = result["total"]
    assert total["xz_bytes"] == sum(row["xz_bytes"] for row in result["languages"].values())
    assert total["xz_bits_per_byte"] == total["xz_bytes"] * 8 / total["bytes"]


# -----------------------------------------------------------------------------
# FIM middles


def test_fim_middle_loss_scores_only_the_middle(tiny_generator, model, heldout_folder):
    tokenizer = tiny_generator.tokenizer
    files = spread_files(list(read_heldout_samples(heldout_folder)), seed=3)
    examples, counts = fim_examples(files, tokenizer, tokenizer.bos_id, seed=3, max_seq_len=2048, max_examples=4)
    assert len(examples) == 4 and counts == {"empty_middle": 0, "cut_files": 0}
    for example in examples:
        assert example.prefix + example.middle + example.suffix == example.file.block
        rng = document_rng(3, f"fim\x00{example.file.sample}\x00{example.file.path}")
        assert (example.prefix, example.middle, example.suffix) == fim_split(example.file.block, rng)
        middle_ids = tokenizer.encode(example.middle, literal_special_tokens=True)
        assert example.fim_ids[-len(middle_ids) :] == middle_ids == example.left_to_right_ids[-len(middle_ids) :]
        assert example.fim_ids[:2] == [tokenizer.bos_id, tokenizer.fim_begin_id]
        assert example.fim_ids[-len(middle_ids) - 1] == tokenizer.fim_end_id

    result = fim_middle_loss(tiny_generator, heldout_folder, max_examples=4, seed=3, batch_size=3, progress=False)
    fim_nats = sum(forward_nats(model, e.fim_ids)[-e.middle_tokens :].sum() for e in examples)
    ltr_nats = sum(forward_nats(model, e.left_to_right_ids)[-e.middle_tokens :].sum() for e in examples)
    tokens = sum(example.middle_tokens for example in examples)
    size = sum(len(example.middle.encode()) for example in examples)
    assert (result["examples"], result["middle_tokens"], result["middle_bytes"]) == (4, tokens, size)
    assert result["fim"]["nats"] == pytest.approx(fim_nats, rel=1e-5)
    assert result["left_to_right"]["nats"] == pytest.approx(ltr_nats, rel=1e-5)
    assert result["fim"]["loss_per_token"] == pytest.approx(fim_nats / tokens, rel=1e-5)
    assert result["left_to_right"]["bits_per_byte"] == pytest.approx(ltr_nats / math.log(2) / size, rel=1e-5)
    assert sum(row["examples"] for row in result["languages"].values()) == 4
    whole_file = forward_nats(model, [tokenizer.bos_id, *tokenizer.encode(examples[0].file.block)]).sum()
    assert result["fim"]["nats"] < whole_file * 4  # sanity: a share of the files, not all of them

    cut = fim_middle_loss(tiny_generator, heldout_folder, max_examples=2, max_seq_len=24, seed=3, progress=False)
    assert cut["cut_files"] >= 1 and cut["examples"] == 2


# -----------------------------------------------------------------------------
# Line infilling and its BM25 baseline


def test_hole_lines_skip_comments_blank_and_short_lines(heldout_folder):
    files = {file.path: file for sample in read_heldout_samples(heldout_folder) for file in sample.files}
    calc = files["calc.c"]
    texts = [block_lines(calc.block)[index].text for index in hole_lines(calc)]
    assert texts == [
        '#include "calc.h"',
        "int add(int left, int right) {",
        "    int answer = left + right;",
        "    return answer;",
    ]
    assert not is_hole_line("    # a comment line", ("#",)) and not is_hole_line("  x = 1  ", ("#",))
    util_texts = [block_lines(files["shop/util.py"].block)[index].text for index in hole_lines(files["shop/util.py"])]
    assert "# helpers for the shop" not in util_texts and "# shop/util.py" not in util_texts
    assert "import math" in util_texts and "def total(basket):" in util_texts  # 10 and 17 characters


def test_bm25_baseline_copies_a_duplicated_line(heldout_folder):
    samples = list(read_heldout_samples(heldout_folder))
    shop = [file for sample in samples if sample.repo == "shop" for file in sample.files]
    main = next(file for file in shop if file.path == "shop/main.py")
    lines = block_lines(main.block)
    index = next(i for i, line in enumerate(lines) if line.text.strip().startswith("result = sum"))
    hole = Hole(main, index, lines[index])
    assert RepositoryLines(shop).predict(hole) == hole.target  # the same line in shop/util.py, same neighbours
    # without the other file, the only copy is the hole itself, which is never a candidate
    alone = RepositoryLines([main]).predict(hole)
    assert alone != hole.target and "result = sum" not in alone


def test_line_infilling(tiny_generator, heldout_folder):
    result = line_infilling(
        tiny_generator, heldout_folder, max_examples=6, lines_per_file=2, max_new_tokens=12, examples=3, progress=False
    )
    assert result["examples"] == 6 and len(result["samples"]) == 3
    assert sum(row["examples"] for row in result["languages"].values()) == 6
    for sample in result["samples"]:
        assert "\n" not in sample["model"] and "\n" not in sample["baseline"]
        assert sample["line"] >= 1 and len(sample["target"].strip()) >= 8
    for key in ("model_exact_match", "model_edit_similarity", "baseline_exact_match", "baseline_edit_similarity"):
        assert 0.0 <= result[key] <= 100.0
    json.dumps(result)
    # every hole, scored by hand from the samples of a run that shows them all
    shown = line_infilling(
        tiny_generator, heldout_folder, max_examples=6, lines_per_file=2, max_new_tokens=12, examples=6, progress=False
    )
    assert shown["samples"] == result["samples"] + shown["samples"][3:]  # deterministic
    baseline = [edit_similarity(s["baseline"], s["target"]) for s in shown["samples"]]
    exact = [exact_match(s["baseline"], s["target"]) for s in shown["samples"]]
    assert result["baseline_edit_similarity"] == pytest.approx(sum(baseline) / 6)
    assert result["baseline_exact_match"] == pytest.approx(100 * sum(exact) / 6)
    # the model's line is what `TextGenerator.infill` writes for the same prefix and suffix (prompts this short are
    # not cut; files quoting a special-token string are left out: `infill` encodes it as the token itself)
    files = {file.path: file for sample in read_heldout_samples(heldout_folder) for file in sample.files}
    params = SamplingParams(max_new_tokens=12, stop_token_ids=stop_ids(tiny_generator))
    compared = 0
    for sample in shown["samples"]:
        file = files[sample["path"]]
        line = block_lines(file.block)[file.block.count("\n", 0, file.header_length) + sample["line"] - 1]
        assert line.text == sample["target"]
        if "<｜" not in file.block:
            prefix, suffix = file.block[: line.start], file.block[line.end :]
            assert "".join(tiny_generator.infill(prefix, suffix, params, stop_strings=["\n"])) == sample["model"]
            compared += 1
    assert compared >= 3


def test_sample_generations(tiny_generator, heldout_folder):
    result = sample_generations(tiny_generator, heldout_folder, count=2, max_new_tokens=16, progress=False)
    assert len(result["completions"]) == len(result["infills"]) == 2
    files = {file.path: file for sample in read_heldout_samples(heldout_folder) for file in sample.files}
    for completion, infill in zip(result["completions"], result["infills"], strict=True):
        file = files[completion["path"]]
        text = file.block[file.header_length :]
        assert completion["real"] and completion["real"] in text and completion["prompt_tail"] in file.block
        assert text.splitlines()[completion["line"] - 1] == completion["real"].splitlines()[0]
        assert infill["prefix_tail"] + infill["real"] + infill["suffix_head"] in file.block
        assert 1 <= infill["real"].count("\n") <= 3 and text.splitlines()[infill["line"] - 1] in infill["real"]
        assert len(completion["model"].splitlines()) <= 3
    json.dumps(result)


# -----------------------------------------------------------------------------
# Instruct format


def test_instruct_format_share(tiny_generator, tmp_path):
    from repolm.data.instruction_records import held_out, read_instructions, write_instructions

    records = [{"instruction": f"Write function number {n}.", "output": f"def f{n}():\n    pass"} for n in range(8)]
    path = tmp_path / "instructions.jsonl"
    write_instructions(path, records)
    result = instruct_format_share(tiny_generator, path, max_examples=5, max_new_tokens=6, progress=False)
    assert result["answers"] == 5 and result["ended_with_eot"] + result["ended_with_eos"] + result["hit_limit"] == 5
    assert 0.0 <= result["share"] <= 1.0 and len(result["examples"]) == 3
    assert result["examples"][0]["instruction"] == "Write function number 0."
    json.dumps(result)
    share = 0.5
    kept = sum(held_out(sample.messages, share) for sample in read_instructions(path)[0])
    if kept:
        assert (
            instruct_format_share(tiny_generator, path, held_out_share=share, max_new_tokens=2, progress=False)[
                "answers"
            ]
            == kept
        )
    with pytest.raises(RepolmError, match="no such file"):
        instruct_format_share(tiny_generator, tmp_path / "none.jsonl", progress=False)
