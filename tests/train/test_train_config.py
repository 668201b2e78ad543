"""Tests of repolm.train.config: the YAML presets, overrides, and every check that must fail before any compute.

A tokenized dataset (one kind, a validation folder, mixture.json) is built in tmp_path from stdlib files with the
session's small tokenizer; each bad config must raise a `RepolmError` naming the key, and create nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.train.config import TrainConfig, load_train_config, parse_overrides, prepare_run
from repolm.yaml_config import from_mapping, read_yaml_mapping

PRESETS_FOLDER = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


def write_token_folder(folder: Path, tokenizer, files: list[Path], vocab_size: int | None = None) -> None:
    from repolm.tokenizer.token_shards import TokenShardWriter, write_meta

    vocab_size = vocab_size or len(tokenizer)
    writer = TokenShardWriter(folder, "00000", vocab_size)
    for path in files:
        writer.add(tokenizer.encode(path.read_text(encoding="utf-8")) + [tokenizer.eos_id])
    write_meta(folder, vocab_size, tokenizer.eos_id, [writer.close()])


@pytest.fixture(scope="module")
def dataset(small_tokenizer, stdlib_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    write_token_folder(root / "code", small_tokenizer, stdlib_files[30:34])
    write_token_folder(root / "validation", small_tokenizer, stdlib_files[34:35])
    (root / "mixture.json").write_text(json.dumps({"target_share": {"code": 1.0}}))
    return root


def good_overrides(tmp_path: Path, dataset: Path, saved_small_tokenizer: Path) -> dict:
    return {
        "run_dir": str(tmp_path / "run"),
        "tokenizer": str(saved_small_tokenizer),
        "model.preset": "tiny",
        "data.folder": str(dataset),
        "data.sequence_length": 64,
        "schedule.warmup_steps": 2,
        "max_steps": 10,
    }


def test_a_good_config_resolves(tmp_path, dataset, saved_small_tokenizer, small_tokenizer):
    config = load_train_config(None, good_overrides(tmp_path, dataset, saved_small_tokenizer))
    plan = prepare_run(config)
    assert plan.sources == [(dataset / "code", 1.0)]
    assert plan.validation_folder == dataset / "validation"
    assert plan.model_config.vocab_size == 1024  # 1022 tokenizer ids rounded up to 64
    assert plan.model_config.eos_token_id == small_tokenizer.eos_id
    assert plan.data_vocab_size == len(small_tokenizer)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"optimizer.learning_rate": 1e-3}, "optimizer.learning_rate: unknown key"),
        ({"modell.preset": "tiny"}, "modell: unknown key"),
        ({"optimizer.lr": -1e-3}, "optimizer: lr must be positive"),
        ({"data.sequence_length": 4096}, "data.sequence_length: 4096 is longer than the model's"),
        ({"data.folder": "/nonexistent/tokens"}, "data.folder: /nonexistent/tokens: no such folder"),
        ({"tokenizer": "/nonexistent/tok"}, "tokenizer: /nonexistent/tok: not a tokenizer folder"),
        ({"tokenizer": None}, "tokenizer: not set"),
        ({"model.overrides": {"vocab_size": 512}}, "tokenizer: "),
        ({"schedule.warmup_steps": 11}, "schedule.warmup_steps: 11 is longer than max_steps 10"),
        ({"model.preset": "huge"}, "model.preset: unknown model preset 'huge'"),
        ({"model.init_from": "/nonexistent/model"}, "set exactly one of model.preset and model.init_from"),
        ({"batch.micro_batch_size": 0}, "batch.micro_batch_size: must be >= 1"),
        ({"data.document_mask": "sparse"}, "data.document_mask: 'sparse' is not one of auto, dense, spans, flex"),
        (
            {"data.document_mask": "flex", "data.sequence_length": 100},
            "flex needs a sequence_length that is a multiple",
        ),
        ({"checkpoint.format": "zip"}, "checkpoint.format: 'zip' is not one of auto, full, sharded"),
        ({"checkpoint.format": "full", "checkpoint.async_save": True}, "checkpoint.async_save: needs the sharded"),
        ({"precision": "fp16"}, "precision: 'fp16' is not one of"),
        ({"max_steps": "many"}, "max_steps: expected an integer"),
        ({"data.mixture": {"code_text": 0.5}}, "data.mixture.code_text: no such kind"),
        ({"batch.global_batch_size": 6, "batch.micro_batch_size": 4}, "batch.global_batch_size: 6 is not a multiple"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, dataset, saved_small_tokenizer, change, message):
    overrides = {**good_overrides(tmp_path, dataset, saved_small_tokenizer), **change}
    with pytest.raises(RepolmError, match="^config: .*" + _escaped(message)):
        load_train_config(None, overrides)
    assert not (tmp_path / "run").exists()


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_init_from_a_missing_folder(tmp_path, dataset, saved_small_tokenizer):
    overrides = good_overrides(tmp_path, dataset, saved_small_tokenizer)
    overrides["model.preset"] = None
    overrides["model.init_from"] = str(tmp_path / "missing")
    with pytest.raises(RepolmError, match="model.init_from: .*missing: no such folder"):
        load_train_config(None, overrides)


def test_init_from_an_hf_folder_with_long_context_rope(tmp_path, dataset, tiny_model_dir):
    overrides = good_overrides(tmp_path, dataset, tiny_model_dir)
    overrides.update({"model.preset": None, "model.init_from": str(tiny_model_dir), "tokenizer": None})
    overrides.update({"model.rope_theta": 1e5, "model.rope_scaling_factor": 4.0, "model.max_position_embeddings": 8192})
    overrides["data.sequence_length"] = 4096
    plan = prepare_run(load_train_config(None, overrides))
    assert plan.init_kind == "hf_folder" and plan.tokenizer_dir == tiny_model_dir  # the folder's own tokenizer
    config = plan.model_config
    assert (config.rope_theta, config.rope_scaling_factor, config.max_position_embeddings) == (1e5, 4.0, 8192)


def test_data_not_tokenized_and_vocab_mismatch(tmp_path, dataset, saved_small_tokenizer, small_tokenizer, stdlib_files):
    (tmp_path / "raw").mkdir()
    overrides = good_overrides(tmp_path, dataset, saved_small_tokenizer)
    with pytest.raises(RepolmError, match="data.folder: .*raw: not tokenized"):
        load_train_config(None, {**overrides, "data.folder": str(tmp_path / "raw")})
    # a token folder written with another vocabulary size than the tokenizer's
    write_token_folder(tmp_path / "other", small_tokenizer, stdlib_files[30:31], vocab_size=len(small_tokenizer) + 1)
    with pytest.raises(RepolmError, match="data.folder: tokenized with a vocabulary of 1023 ids but the tokenizer"):
        load_train_config(None, {**overrides, "data.folder": str(tmp_path / "other"), "eval.every_steps": 0})
    # eval asked for, no validation data
    with pytest.raises(RepolmError, match="eval.every_steps: no validation data"):
        load_train_config(None, {**overrides, "data.folder": str(dataset / "code"), "eval.every_steps": 5})


def test_a_yaml_file_and_its_overrides(tmp_path, dataset, saved_small_tokenizer):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"run_dir: {tmp_path / 'run'}\ntokenizer: {saved_small_tokenizer}\nmodel:\n  preset: tiny\n"
        f"data:\n  folder: {dataset}\n  sequence_length: 64\noptimizer:\n  lr: 3e-4\nschedule:\n  warmup_steps: 1\n"
        "max_steps: 5\n"
    )
    overrides = parse_overrides(["--optimizer.lr=1e-3", "--batch.micro_batch_size=2", "--optimizer.betas=[0.9, 0.99]"])
    assert overrides == {"optimizer.lr": 1e-3, "batch.micro_batch_size": 2, "optimizer.betas": [0.9, 0.99]}
    config = load_train_config(path, overrides)
    assert config.optimizer.lr == 1e-3 and config.optimizer.betas == (0.9, 0.99) and config.batch.micro_batch_size == 2
    assert load_train_config(path).optimizer.lr == 3e-4  # "3e-4" is a string to PyYAML: read as a number
    with pytest.raises(RepolmError, match=r"run\.yaml: schedule\.warmup_stepz: unknown key"):
        load_train_config(path, {"schedule.warmup_stepz": 1})
    with pytest.raises(RepolmError, match="overrides are written --key=value"):
        parse_overrides(["optimizer.lr=1"])


@pytest.mark.parametrize("name", ["tiny", "small", "deepseek-coder-1.3b", "deepseek-coder-6.7b", "deepseek-coder-33b"])
def test_presets_parse_with_the_papers_numbers(name):
    path = PRESETS_FOLDER / f"{name}.yaml"
    config = from_mapping(TrainConfig, read_yaml_mapping(path, "--config"), str(path), "")
    assert config.model.preset == name
    if name.startswith("deepseek-coder"):
        size = name.removeprefix("deepseek-coder-")
        batch, lr = {"1.3b": (1024, 5.3e-4), "6.7b": (2304, 4.2e-4), "33b": (3840, 3.5e-4)}[size]
        assert (config.batch.global_batch_size, config.optimizer.lr) == (batch, lr)
        assert config.optimizer.betas == (0.9, 0.95) and config.data.sequence_length == 4096
        assert (config.schedule.kind, config.schedule.warmup_steps, config.schedule.decay_at) == (
            "multistep",
            2000,
            (0.8, 0.9),
        )
        assert config.precision == "bf16" and config.parallel.mode == "fsdp"
        assert (config.model.rope_theta, config.model.rope_scaling_factor) == (10000.0, 1.0)


def test_long_context_preset():
    path = PRESETS_FOLDER / "long_context.yaml"
    config = from_mapping(TrainConfig, read_yaml_mapping(path, "--config"), str(path), "")
    assert config.model.init_from and config.model.preset is None
    assert (config.model.rope_scaling_factor, config.model.rope_theta) == (4.0, 1e5)
    assert (config.data.sequence_length, config.max_steps, config.batch.global_batch_size) == (16384, 1000, 512)
    assert config.schedule.kind == "constant"
