"""Held-out bits per byte on the tiny model: equal to a hand computation from the model's logits (one window and
several), the same counts from a folder of plain files, a data-build folder and a list of files, and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as functional

from repolm.errors import RepolmError
from repolm.eval.heldout_loss import heldout_bits_per_byte, iter_documents
from repolm.hf_folder import load_pretrained
from repolm.tokenizer import CodeTokenizer
from repolm.tokenizer.corpus import is_validation

TEXTS = {
    "alpha.py": "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n",
    "beta/gamma.py": "# café ☕ — unicode\r\nclass Point:\r\n    x: int = 0\r\n",  # CRLF and multi-byte kept
    "beta/delta.js": "const quote = '<｜end▁of▁sentence｜>';\nexport default quote;\n",  # special-token text: plain
}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    return load_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def corpus_tokenizer(tiny_model_dir: Path) -> CodeTokenizer:
    tokenizer = CodeTokenizer.load(tiny_model_dir)
    tokenizer.backend.encode_special_tokens = True
    return tokenizer


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for name, text in TEXTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text.encode("utf-8"))
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "skipped.py").write_text("never scored = 1\n")
    (folder / "image.bin").write_bytes(b"\x89PNG\x00\x01\xff")  # binary: skipped with a warning
    return folder


@pytest.fixture(scope="module")
def build_folder(tmp_path_factory) -> Path:
    """A `repolm data build`-shaped output, written with the build's own writer (`shard_writer` + `output_record`)."""
    from datatrove.data import Document

    from repolm.data.steps import output_record, shard_writer

    output = tmp_path_factory.mktemp("build")
    with shard_writer(f"{output}/data", "${kind}/${rank}.jsonl.zst", adapter=output_record) as writer:
        for index, (name, text) in enumerate(sorted(TEXTS.items())):
            metadata = {
                "repo": "repo",
                "files": [name],
                "offsets": [0],
                "languages": ["Python"],
                "source": "test",
                "kind": "code",
                "part": 0,
            }
            writer.write(Document(text=text, id=f"repo:{index}", metadata=metadata), rank=0)
    assert (output / "data" / "code" / "00000.jsonl.zst").is_file()
    return output


def hand_nats(model, ids: list[int]) -> float:
    """Summed next-token NLL of ids[1:] given the ids before them, in one forward pass."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids]))[0]
    return functional.cross_entropy(logits[:-1].double(), torch.tensor(ids[1:]), reduction="sum").item()


def test_one_window_equals_the_hand_computation(tiny_model_dir, model, corpus_tokenizer, source_folder):
    result = heldout_bits_per_byte(tiny_model_dir, source_folder / "alpha.py", device="cpu", progress=False)
    text = TEXTS["alpha.py"]
    ids = [corpus_tokenizer.bos_id, *corpus_tokenizer.encode(text)]  # the small tokenizer adds BOS
    nats = hand_nats(model, ids)
    assert result["context_start"] == "bos"
    assert (result["documents"], result["tokens"], result["bytes"], result["windows"]) == (
        1,
        len(ids) - 1,
        len(text.encode()),
        1,
    )
    assert result["nats"] == pytest.approx(nats, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / len(text.encode()), rel=1e-5)
    assert result["loss_per_token"] == pytest.approx(nats / (len(ids) - 1), rel=1e-5)
    assert result["bits_per_token"] == pytest.approx(result["loss_per_token"] / math.log(2))
    assert 0 < result["bits_per_byte"] < 100 and math.isfinite(result["bits_per_byte"])

    eos = heldout_bits_per_byte(
        tiny_model_dir, source_folder / "alpha.py", device="cpu", context_start="eos", progress=False
    )
    eos_ids = [corpus_tokenizer.eos_id, *ids[1:]]
    assert eos["nats"] == pytest.approx(hand_nats(model, eos_ids), rel=1e-5) and eos["tokens"] == result["tokens"]


@pytest.mark.parametrize(("max_seq_len", "stride"), [(8, None), (8, 3), (5, 1)])
def test_windows_equal_the_hand_computation(
    tiny_model_dir, model, corpus_tokenizer, source_folder, max_seq_len, stride
):
    text = TEXTS["alpha.py"]
    ids = [corpus_tokenizer.bos_id, *corpus_tokenizer.encode(text)]
    step = stride or max_seq_len - 1
    expected, scored, windows = 0.0, 0, 0
    for begin in range(0, len(ids) - 1, step):  # window [begin, begin + L) scores what no earlier window scored
        window = ids[begin : begin + max_seq_len]
        with torch.inference_mode():
            logits = model(torch.tensor([window]))[0].double()
        for position in range(max(scored, begin), begin + len(window) - 1):
            expected -= torch.log_softmax(logits[position - begin], -1)[ids[position + 1]].item()
        scored = begin + len(window) - 1
        windows += 1
        if begin + max_seq_len >= len(ids):
            break
    result = heldout_bits_per_byte(
        tiny_model_dir, source_folder / "alpha.py", max_seq_len, batch_size=3, stride=stride, progress=False
    )
    assert scored == len(ids) - 1 and result["tokens"] == len(ids) - 1 and result["windows"] == windows > 1
    assert result["nats"] == pytest.approx(expected, rel=1e-5)
    full_context = heldout_bits_per_byte(tiny_model_dir, source_folder / "alpha.py", progress=False)
    assert result["nats"] != pytest.approx(full_context["nats"], rel=1e-6)  # less context, another number


def test_files_build_folder_and_list_agree(tiny_model_dir, source_folder, build_folder, corpus_tokenizer, caplog):
    from_files = heldout_bits_per_byte(tiny_model_dir, source_folder, max_seq_len=16, batch_size=2, progress=False)
    assert "skipping" in caplog.text and "image.bin" in caplog.text
    from_build = heldout_bits_per_byte(tiny_model_dir, build_folder, max_seq_len=16, batch_size=5, progress=False)
    listed = [source_folder / name for name in sorted(TEXTS)]
    from_list = heldout_bits_per_byte(tiny_model_dir, listed, max_seq_len=16, progress=False)
    expected_tokens = sum(len(corpus_tokenizer.encode(text)) for text in TEXTS.values())
    expected_bytes = sum(len(text.encode("utf-8")) for text in TEXTS.values())
    for result in (from_files, from_build, from_list):
        assert (result["documents"], result["tokens"], result["bytes"]) == (3, expected_tokens, expected_bytes)
        assert result["nats"] == pytest.approx(from_files["nats"], rel=1e-6)
    assert from_files["skipped_files"] == 1 and from_build["skipped_files"] == 0
    # the special-token string in delta.js is plain text: several tokens, not the one EOS id
    assert len(corpus_tokenizer.encode(TEXTS["beta/delta.js"])) > len(TEXTS["beta/delta.js"]) // 8


def test_max_bytes_and_validation_fraction(tiny_model_dir, source_folder, build_folder):
    # files are read in path order: alpha.py (51 bytes), beta/delta.js (ASCII at byte 60), beta/gamma.py
    cut = heldout_bits_per_byte(tiny_model_dir, source_folder, max_bytes=60, progress=False)
    assert (cut["documents"], cut["bytes"]) == (2, 60)
    # a cut inside a multi-byte character stops before it: "# café" is 7 bytes, "# caf" 5
    cafe = heldout_bits_per_byte(tiny_model_dir, source_folder / "beta" / "gamma.py", max_bytes=6, progress=False)
    assert (cafe["documents"], cafe["bytes"]) == (1, 5)

    ids = [document.id for document in iter_documents(build_folder)]
    assert ids == ["repo:0", "repo:1", "repo:2"]
    # the documents `repolm data tokenize --validation-fraction F` holds out: blake2b(id) / 2**64 < F
    for fraction, expected in ((0.2, 2), (0.1, 1), (1.0, 3)):
        assert sum(is_validation(i, fraction) for i in ids) == expected
        selected = heldout_bits_per_byte(tiny_model_dir, build_folder, validation_fraction=fraction, progress=False)
        assert selected["documents"] == expected
    with pytest.raises(RepolmError, match="no documents to score"):
        heldout_bits_per_byte(tiny_model_dir, build_folder, validation_fraction=0.01, progress=False)


def test_bad_data_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(RepolmError, match="no such file or folder"):
        heldout_bits_per_byte(tiny_model_dir, tmp_path / "missing", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RepolmError, match="no documents to score"):
        heldout_bits_per_byte(tiny_model_dir, empty, progress=False)
    with pytest.raises(RepolmError, match="no .jsonl"):
        heldout_bits_per_byte(tiny_model_dir, empty, data_format="jsonl", progress=False)
    (empty / "broken.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(RepolmError, match="broken.jsonl:2: not a JSON line"):
        heldout_bits_per_byte(tiny_model_dir, empty, progress=False)
    with pytest.raises(RepolmError, match="stride"):
        heldout_bits_per_byte(tiny_model_dir, empty, max_seq_len=8, stride=8, progress=False)
    with pytest.raises(RepolmError, match="model folder not found"):
        heldout_bits_per_byte(tmp_path / "no-model", tiny_model_dir / "tokenizer.json", progress=False)
