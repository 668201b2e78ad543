"""Tests of `tokenize_corpus`: a small data-build-like folder in, token folders out; counts, EOS per document, FIM rate,
exact undo, the validation split, identical output for 1 and 2 workers, resume, plain corpora and bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zstandard

from repolm.errors import RepolmError
from repolm.tokenizer.corpus import (
    CONFIG_FILE,
    document_rng,
    is_validation,
    load_corpus_tokenizer,
    tokenize_corpus,
)
from repolm.tokenizer.fim import FimConfig, fim_document, undo_fim
from repolm.tokenizer.special_tokens import EOS_TOKEN, FIM_HOLE_TOKEN
from repolm.tokenizer.token_shards import TokenShards

FRACTION = 0.2  # large enough that a small corpus has held-out documents


def write_jsonl_zst(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_bytes(zstandard.ZstdCompressor().compress(lines.encode("utf-8")))


def repo_record(repo: str, files: dict[str, str], kind: str) -> dict:
    text, offsets = "", []
    for path, content in files.items():
        offsets.append(len(text))
        text += f"# {path}\n{content}"
    return {"text": text, "id": f"{repo}#0", "repo": repo, "files": list(files), "offsets": offsets, "kind": kind}


@pytest.fixture(scope="module")
def build_folder(stdlib_files, tmp_path_factory) -> Path:
    """data/code/00000..00002.jsonl.zst, data/code-text/00000.jsonl.zst, excluded/ (ignored), mixture.json."""
    root = tmp_path_factory.mktemp("build")
    rng = np.random.default_rng(0)
    sources = [path.read_text(encoding="utf-8") for path in stdlib_files[30:60]]
    records = []
    for index in range(90):
        files = {}
        for file_index in range(int(rng.integers(1, 5))):
            source = sources[int(rng.integers(len(sources)))]
            start = int(rng.integers(len(source)))
            files[f"pkg{index}/m{file_index}.py"] = source[start : start + int(rng.integers(20, 600))]
        records.append(repo_record(f"repo{index}", files, "code"))
    records[5]["text"], records[5]["offsets"] = "", []  # an empty sample: left out
    records[7] = repo_record("repo7", {"quote.py": f"EOS = '{EOS_TOKEN}'\nHOLE = '{FIM_HOLE_TOKEN}'\n"}, "code")
    for shard in range(3):
        write_jsonl_zst(root / "data" / "code" / f"{shard:05d}.jsonl.zst", records[shard * 25 : (shard + 1) * 25])
    text_records = [
        {"text": f"# Notes {i}\n\nSome *markdown* text, ünïcode ✓.\n" * (i + 1), "id": f"md{i}"} for i in range(15)
    ]
    write_jsonl_zst(root / "data" / "code-text" / "00000.jsonl.zst", text_records)
    write_jsonl_zst(root / "excluded" / "filter" / "00000.jsonl.zst", [{"text": "dropped", "id": "x"}])
    mixture = {"target_share": {"code": 0.87, "code-text": 0.10, "other-text": 0.03}}
    (root / "mixture.json").write_text(json.dumps(mixture), encoding="utf-8")
    return root


def input_documents(build: Path) -> dict[str, list[dict]]:
    """The non-empty records of each input file, by its path relative to data/."""
    documents = {}
    for path in sorted((build / "data").rglob("*.jsonl.zst")):
        text = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).decode("utf-8")
        records = [json.loads(line) for line in text.splitlines()]
        documents[path.relative_to(build / "data").as_posix()] = [record for record in records if record["text"]]
    return documents


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tokenized(build_folder, saved_small_tokenizer, tmp_path_factory):
    output = tmp_path_factory.mktemp("tokens") / "out"
    fim = FimConfig(rate=0.5)
    summary = tokenize_corpus(build_folder, saved_small_tokenizer, output, fim, seed=3, validation_fraction=FRACTION)
    return output, summary, fim


def test_every_document_is_its_fim_document_with_one_eos(tokenized, build_folder, saved_small_tokenizer):
    output, summary, fim = tokenized
    tokenizer = load_corpus_tokenizer(saved_small_tokenizer)
    train = {kind: TokenShards(output / kind) for kind in ("code", "code-text")}
    validation = TokenShards(output / "validation")
    seen_validation = 0
    for relative, records in input_documents(build_folder).items():
        kind, name = relative.split("/")[0], relative.split("/")[1].removesuffix(".jsonl.zst")
        shard = next(s for s in train[kind].shards if s.name == name)
        held_out = next(s for s in validation.shards if s.name == f"{kind}-{name}")
        kept = [r for r in records if not is_validation(r["id"], FRACTION)]
        assert len(shard.document_ends) == len(kept) and len(held_out.document_ends) == len(records) - len(kept)
        for index, record in enumerate(kept):
            ids = shard.document(index).tolist()
            assert ids.count(tokenizer.eos_id) == 1 and ids[-1] == tokenizer.eos_id
            expected = fim_document(
                record["text"], record.get("offsets"), tokenizer, document_rng(3, record["id"]), fim
            )
            assert ids == expected
        seen_validation += len(records) - len(kept)
    assert seen_validation > 0 and validation.num_documents == seen_validation
    documents = sum(len(records) for records in input_documents(build_folder).values())
    assert summary["empty_documents"] == 1
    assert sum(folder["documents"] for folder in summary["folders"].values()) == documents
    assert sum(folder["tokens"] for folder in summary["folders"].values()) == summary["tokens_written"]
    # 2 kinds found; other-text has no data: shares renormalized over code and code-text
    mixture = json.loads((output / "mixture.json").read_text())
    assert mixture["target_share"] == pytest.approx({"code": 0.87 / 0.97, "code-text": 0.10 / 0.97})
    assert mixture["tokens"]["code"] == train["code"].num_tokens and "excluded" not in mixture["tokens"]
    meta = train["code"].meta
    assert meta["fim"] == {"rate": 0.5, "mode": "psm", "spm_rate": 0.0, "msp_spans": 3} and meta["seed"] == 3
    assert meta["vocab_size"] == len(tokenizer) and meta["dtype"] == "uint16"


def test_fim_rate_over_the_corpus(tokenized):
    _, summary, _ = tokenized
    files, fimmed = summary["files"], summary["fim_files"]
    assert files > 200
    assert abs(fimmed - files / 2) < 5 * np.sqrt(files / 4)


def test_undo_of_each_document_gives_back_its_text_at_rate_one(build_folder, saved_small_tokenizer, tmp_path):
    for mode in ("psm", "spm", "msp"):
        output = tmp_path / mode
        fim = FimConfig(rate=1.0, mode=mode)
        summary = tokenize_corpus(build_folder, saved_small_tokenizer, output, fim, seed=1, progress=False)
        assert summary["fim_files"] == summary["files"]
        tokenizer = load_corpus_tokenizer(saved_small_tokenizer)
        texts = [r["text"] for records in input_documents(build_folder).values() for r in records]
        undone = [
            undo_fim(d.tolist(), tokenizer) for k in ("code", "code-text") for d in TokenShards(output / k).documents()
        ]
        undone += [undo_fim(d.tolist(), tokenizer) for d in TokenShards(output / "validation").documents()]
        assert sorted(undone) == sorted(texts)  # literal special-token strings in a file stay text


def test_validation_split_depends_on_the_id_only(build_folder, saved_small_tokenizer, tmp_path):
    ids = [f"repo{i}#0" for i in range(2000)]
    held_out = [i for i in ids if is_validation(i, 0.1)]
    assert abs(len(held_out) - 200) < 5 * np.sqrt(2000 * 0.09)
    assert held_out == [i for i in ids if is_validation(i, 0.1)] and not any(is_validation(i, 0.0) for i in ids)
    assert set(held_out) <= {i for i in ids if is_validation(i, 0.3)}  # a larger fraction holds out a superset
    a = tokenize_corpus(
        build_folder, saved_small_tokenizer, tmp_path / "a", FimConfig(), seed=1, validation_fraction=0.2
    )
    b = tokenize_corpus(
        build_folder, saved_small_tokenizer, tmp_path / "b", FimConfig(), seed=2, validation_fraction=0.2
    )
    assert a["folders"]["validation"]["documents"] == b["folders"]["validation"]["documents"] > 0
    assert (
        TokenShards(tmp_path / "a" / "validation").num_tokens != TokenShards(tmp_path / "b" / "validation").num_tokens
    )


def test_two_workers_write_the_same_bytes_as_one(build_folder, saved_small_tokenizer, tmp_path, tokenized):
    output, _, fim = tokenized
    summary = tokenize_corpus(
        build_folder, saved_small_tokenizer, tmp_path / "two", fim, seed=3, validation_fraction=FRACTION, workers=2
    )
    assert summary["shards_written"] == 4
    assert folder_bytes(tmp_path / "two") == folder_bytes(output)


def test_resume_rewrites_only_the_missing_shard(build_folder, saved_small_tokenizer, tmp_path, tokenized):
    reference, _, fim = tokenized
    output = tmp_path / "out"
    run = dict(fim=fim, seed=3, validation_fraction=FRACTION, progress=False)
    tokenize_corpus(build_folder, saved_small_tokenizer, output, **run)
    (output / "code" / "00001.bin").unlink()
    (output / "code" / "00001.bin.partial").write_bytes(b"left by a killed run")
    untouched = output / "code" / "00002.bin"
    os.utime(untouched, ns=(1, 1))
    summary = tokenize_corpus(build_folder, saved_small_tokenizer, output, **run)
    assert summary["shards_written"] == 1 and summary["shards_skipped"] == 3
    assert untouched.stat().st_mtime_ns == 1
    assert folder_bytes(output) == folder_bytes(reference)
    # a rerun with nothing missing writes nothing and gives the same folder
    assert tokenize_corpus(build_folder, saved_small_tokenizer, output, **run)["shards_written"] == 0


def test_a_plain_jsonl_folder_is_one_kind_with_line_ids(saved_small_tokenizer, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "part.jsonl").write_text("".join(json.dumps({"text": f"line {i}\n"}) + "\n" for i in range(30)))
    summary = tokenize_corpus(corpus, saved_small_tokenizer, tmp_path / "out", FimConfig(rate=0.0), seed=0)
    tokenizer = load_corpus_tokenizer(saved_small_tokenizer)
    documents = [d.tolist() for d in TokenShards(tmp_path / "out" / "corpus").documents()]
    expected_ids = [f"part.jsonl:{i + 1}" for i in range(30) if not is_validation(f"part.jsonl:{i + 1}", 0.005)]
    assert len(documents) == len(expected_ids) == summary["folders"]["corpus"]["documents"]
    assert documents[0] == [*tokenizer.encode("line 0\n"), tokenizer.eos_id]
    assert json.loads((tmp_path / "out" / "mixture.json").read_text())["target_share"] == {"corpus": 1.0}


def test_bad_inputs_fail_before_any_work(build_folder, saved_small_tokenizer, tmp_path):
    fim = FimConfig()
    with pytest.raises(RepolmError, match="--input .*no such folder"):
        tokenize_corpus(tmp_path / "nowhere", saved_small_tokenizer, tmp_path / "out", fim, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepolmError, match="no .jsonl or .jsonl.zst files"):
        tokenize_corpus(tmp_path / "empty", saved_small_tokenizer, tmp_path / "out", fim, seed=0)
    with pytest.raises(RepolmError, match="tokenizer folder not found"):
        tokenize_corpus(build_folder, tmp_path / "no-tokenizer", tmp_path / "out", fim, seed=0)
    with pytest.raises(RepolmError, match="validation-fraction"):
        tokenize_corpus(build_folder, saved_small_tokenizer, tmp_path / "out", fim, seed=0, validation_fraction=1.0)
    with pytest.raises(RepolmError, match="--workers"):
        tokenize_corpus(build_folder, saved_small_tokenizer, tmp_path / "out", fim, seed=0, workers=0)
    assert not (tmp_path / "out").exists()
    # an output folder written with another config, or holding other files, is refused
    small = tmp_path / "small"
    write_jsonl_zst(small / "code" / "00000.jsonl.zst", [{"text": "x = 1\n", "id": "a"}])
    tokenize_corpus(small, saved_small_tokenizer, tmp_path / "out", fim, seed=0, progress=False)
    with pytest.raises(RepolmError, match="written with another fim, seed"):
        tokenize_corpus(small, saved_small_tokenizer, tmp_path / "out", FimConfig(rate=1.0), seed=1)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RepolmError, match=f"not an empty folder .no {CONFIG_FILE}"):
        tokenize_corpus(small, saved_small_tokenizer, tmp_path / "other", fim, seed=0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: not a JSON line"),
        ('{"id": "x"}', r"bad\.jsonl:2: expected a JSON object with a string field 'text'"),
        ('{"text": "abc", "offsets": [0, 9]}', r"bad\.jsonl:2: 'offsets' must be increasing"),
        ('{"text": "abc", "id": [1]}', r"bad\.jsonl:2: 'id' must be"),
    ],
)
def test_malformed_lines_name_file_and_line(saved_small_tokenizer, tmp_path, line, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jsonl").write_text('{"text": "ok"}\n' + line + "\n")
    with pytest.raises(RepolmError, match=message):
        tokenize_corpus(tmp_path / "in", saved_small_tokenizer, tmp_path / "out", FimConfig(), seed=0, progress=False)
    assert not list((tmp_path / "out" / "corpus").glob("*.bin"))  # the failed shard is not visible


def test_a_tokenizer_without_fim_tokens_serves_rate_zero_only(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from repolm.tokenizer import CodeTokenizer

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOS_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["def f(x):\n    return x\n"] * 10, trainer=trainer)
    CodeTokenizer(backend, eos_token=EOS_TOKEN).save(tmp_path / "plain-tokenizer")
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps({"text": "def g(y):\n    return y\n", "id": "g"}) + "\n")
    with pytest.raises(RepolmError, match=r"--tokenizer .*lacks the special token\(s\) <｜fim▁begin｜>"):
        tokenize_corpus(corpus, tmp_path / "plain-tokenizer", tmp_path / "out", FimConfig(rate=0.5), seed=0)
    summary = tokenize_corpus(corpus, tmp_path / "plain-tokenizer", tmp_path / "out", FimConfig(rate=0.0), seed=0)
    assert summary["folders"]["corpus"]["documents"] == 1 and summary["fim_files"] == 0
