"""Hugging Face model folders: config mapping, parity with transformers both ways, sharding, bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from repolm.errors import RepolmError
from repolm.hf_folder import (
    config_from_hf,
    config_to_hf,
    load_pretrained,
    read_config,
    save_pretrained,
    to_hf_state_dict,
)
from repolm.model import ModelConfig, Transformer, build_model, preset_config

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5

# Small configs covering MHA/GQA/MQA, RoPE scaling 1 and 4 (and 2.5), odd sizes, a head_dim override, tied/untied.
CONFIGS = {
    "mha-odd-untied": dict(
        vocab_size=123,
        hidden_size=72,
        intermediate_size=97,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=3,
        rope_theta=10000.0,
        rope_scaling_factor=1.0,
        tie_word_embeddings=False,
    ),
    "gqa-scaled-tied": dict(
        vocab_size=123,
        hidden_size=72,
        intermediate_size=97,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        rope_theta=100000.0,
        rope_scaling_factor=4.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    ),
    "gqa-head-dim-untied": dict(
        vocab_size=130,
        hidden_size=64,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        rope_theta=100000.0,
        rope_scaling_factor=4.0,
        tie_word_embeddings=False,
    ),
    "mqa-tied": dict(
        vocab_size=123,
        hidden_size=48,
        intermediate_size=50,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=1,
        rope_theta=500.0,
        rope_scaling_factor=2.5,
        tie_word_embeddings=True,
    ),
}
COMMON = dict(max_position_embeddings=256, bos_token_id=1, eos_token_id=2, initializer_range=0.02)


def model_config(name: str) -> ModelConfig:
    return ModelConfig(**CONFIGS[name], **COMMON)


def hf_config(config: ModelConfig, legacy_rope: bool = False):
    """A transformers LlamaConfig written independently of repolm's config_to_hf."""
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling_factor != 1.0:
        rope = {"rope_type": "linear", "factor": config.rope_scaling_factor, "rope_theta": config.rope_theta}
    return transformers.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        rope_parameters=rope,
    )


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    """Weights far from init, norms far from 1: a swapped or misnamed tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if "norm" in name:
            parameter.copy_(1.0 + 0.2 * noise)
        else:
            parameter.copy_(noise / parameter.shape[-1] ** 0.5)


def repolm_model(config: ModelConfig, seed: int = 0) -> Transformer:
    model = build_model(config, seed=seed)
    perturb(model, seed)
    return model.eval()


def random_ids(config: ModelConfig, seed: int = 0, shape=(2, 40)) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def hf_from_pretrained(directory: Path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


# ------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", list(CONFIGS))
def test_repolm_to_transformers_parity(name: str, tmp_path: Path) -> None:
    config = model_config(name)
    model = repolm_model(config, seed=1)
    save_pretrained(model, tmp_path / "out")
    hf = hf_from_pretrained(tmp_path / "out")
    assert isinstance(hf, transformers.LlamaForCausalLM)
    assert hf.dtype == torch.float32
    assert hf.config.tie_word_embeddings == config.tie_word_embeddings
    if config.tie_word_embeddings:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    ids = random_ids(config, seed=2)
    with torch.no_grad():
        expected = model(ids)
        actual = hf(input_ids=ids).logits
    assert expected.abs().max() > 0.5  # the comparison is not between near-zero logits
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_to_repolm_parity(name: str, tmp_path: Path) -> None:
    config = model_config(name)
    torch.manual_seed(3)
    hf = transformers.LlamaForCausalLM(hf_config(config)).eval()
    perturb(hf, seed=4)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert model.config == config
    assert model.embed_tokens.weight.dtype == torch.float32
    if config.tie_word_embeddings:
        assert model.lm_head.weight is model.embed_tokens.weight
    ids = random_ids(config, seed=5)
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        actual = model(ids)
    assert expected.abs().max() > 0.5
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)


def test_bf16_folder_loads_in_float32(tmp_path: Path) -> None:
    config = model_config("gqa-head-dim-untied")
    torch.manual_seed(6)
    hf = transformers.LlamaForCausalLM(hf_config(config)).eval()
    perturb(hf, seed=6)
    with torch.no_grad():
        for parameter in hf.parameters():
            parameter.copy_(parameter.bfloat16().float())
    ids = random_ids(config)
    with torch.no_grad():  # the bf16-rounded weights, computed in float32 (before .to() rounds RoPE buffers too)
        expected = hf(input_ids=ids).logits
    hf.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="20KB")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert (tmp_path / "model.safetensors.index.json").is_file()  # transformers' own sharded layout
    model = load_pretrained(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.no_grad():
        actual = model(ids)
    torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)
    assert {p.dtype for p in load_pretrained(tmp_path, dtype=torch.bfloat16).parameters()} == {torch.bfloat16}


def test_save_bf16_then_load(tmp_path: Path) -> None:
    config = model_config("gqa-scaled-tied")
    model = repolm_model(config)
    save_pretrained(model, tmp_path / "bf16", dtype=torch.bfloat16)
    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert saved["torch_dtype"] == "bfloat16"
    loaded = load_pretrained(tmp_path / "bf16")
    torch.testing.assert_close(loaded.embed_tokens.weight, model.embed_tokens.weight.bfloat16().float())


# ----------------------------------------------------------------------------------------------- sharding


def test_sharded_round_trip_and_resave_in_place(tmp_path: Path) -> None:
    config = model_config("mha-odd-untied")
    model = repolm_model(config)
    folder = tmp_path / "model"
    save_pretrained(model, folder, max_shard_bytes=40_000)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and all((folder / s).is_file() for s in shards)
    assert not (folder / "model.safetensors").exists()
    assert "lm_head.weight" in index["weight_map"] and "model.norm.weight" in index["weight_map"]
    loaded = load_pretrained(folder)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=0, rtol=0)
    hf = hf_from_pretrained(folder)  # transformers reads the sharded folder too
    ids = random_ids(config)
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, model(ids), atol=TOLERANCE, rtol=0)

    # save another model into the same folder, unsharded: old shards go, a tokenizer file stays
    (folder / "tokenizer.json").write_text('{"keep": true}')
    other = repolm_model(config, seed=9)
    save_pretrained(other, folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((folder / "tokenizer.json").read_text()) == {"keep": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left
    reloaded = load_pretrained(folder)
    torch.testing.assert_close(reloaded.lm_head.weight, other.lm_head.weight, atol=0, rtol=0)


def test_tied_weights_saved_once(tmp_path: Path) -> None:
    config = model_config("mqa-tied")
    save_pretrained(repolm_model(config), tmp_path, max_shard_bytes=10_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]
    assert "model.embed_tokens.weight" in index["weight_map"]
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["bos_token_id"] == 1 and generation["eos_token_id"] == 2


def test_untied_config_with_tied_tensors_refused(tmp_path: Path) -> None:
    config = model_config("gqa-scaled-tied")
    model = build_model(config)
    # the config says tied, but the output projection is a separate matrix with other values
    model.lm_head.weight = torch.nn.Parameter(model.embed_tokens.weight.detach() + 1.0)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        save_pretrained(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_save_leaves_existing_folder_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import repolm.hf_folder.writing as hf_folder

    config = model_config("mha-odd-untied")
    folder = tmp_path / "model"
    save_pretrained(repolm_model(config), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []
    real_save_file = hf_folder.save_file

    def failing_save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(hf_folder, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(repolm_model(config, seed=5), folder, max_shard_bytes=40_000)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(repolm_model(config, seed=5), tmp_path / "new", max_shard_bytes=40_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ------------------------------------------------------------------------------------------ pytorch .bin


def write_bin_folder(model: Transformer, folder: Path, shards: int = 1) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_to_hf(model.config)))
    state = {k: v.clone() for k, v in to_hf_state_dict(model).items()}
    if model.config.tie_word_embeddings:
        del state["lm_head.weight"]
    for layer in range(model.config.num_hidden_layers):  # old transformers saved the RoPE buffer
        state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.ones(model.config.head_dim // 2)
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return state
    names = list(state)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({k: state[k] for k in part}, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return state


@pytest.mark.parametrize("shards", [1, 3])
def test_pytorch_bin_load(tmp_path: Path, shards: int) -> None:
    config = model_config("gqa-scaled-tied")
    model = repolm_model(config)
    write_bin_folder(model, tmp_path, shards=shards)
    loaded = load_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.embed_tokens.weight
    ids = random_ids(config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), atol=0, rtol=0)
    with torch.no_grad():  # the model does not share memory with the memory-mapped file
        loaded.norm.weight.zero_()
    assert load_pretrained(tmp_path).norm.weight.abs().sum() > 0


# ------------------------------------------------------------------------------------------- config.json

DEEPSEEK_CODER_1_3B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 32013,
    "eos_token_id": 32014,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 5504,
    "max_position_embeddings": 16384,
    "model_type": "llama",
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "num_key_value_heads": 16,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"factor": 4.0, "type": "linear"},
    "rope_theta": 100000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "use_cache": True,
    "vocab_size": 32256,
}


def test_deepseek_coder_config_maps_to_preset() -> None:
    config = config_from_hf(DEEPSEEK_CODER_1_3B_CONFIG, "config.json")
    assert config == preset_config("deepseek-coder-1.3b", initializer_range=0.02)


def test_deepseek_style_folder_loads_unchanged(tmp_path: Path) -> None:
    """A DeepSeek-Coder config.json as released (transformers 4.33 spelling), shrunk; bf16 sharded weights."""
    small = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
    values = dict(DEEPSEEK_CODER_1_3B_CONFIG, **small, num_key_value_heads=4)
    config = config_from_hf(values, "config.json")
    model = repolm_model(config)
    save_pretrained(model, tmp_path, dtype=torch.bfloat16, max_shard_bytes=30_000)
    (tmp_path / "config.json").write_text(json.dumps(values))
    loaded = load_pretrained(tmp_path)
    assert loaded.config == config and loaded.config.rope_scaling_factor == 4.0
    assert loaded.lm_head.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight.bfloat16().float(), atol=0, rtol=0)


def test_transformers5_rope_parameters_and_eos_list() -> None:
    values = dict(DEEPSEEK_CODER_1_3B_CONFIG, eos_token_id=[32021, 32014], pad_token_id=32014)
    del values["rope_scaling"], values["rope_theta"]
    values["rope_parameters"] = {"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0}
    config = config_from_hf(values, "config.json")
    assert (config.rope_theta, config.rope_scaling_factor) == (100000.0, 4.0)
    assert (config.eos_token_id, config.pad_token_id) == (32021, 32014)
    values["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e5}
    config = config_from_hf(values, "config.json")
    assert (config.rope_theta, config.rope_scaling_factor) == (5e5, 1.0)
    legacy = dict(DEEPSEEK_CODER_1_3B_CONFIG, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert config_from_hf(legacy, "config.json").rope_scaling_factor == 2.0
    assert config_from_hf(dict(legacy, rope_scaling=None), "config.json").rope_scaling_factor == 1.0


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_round_trip_through_transformers(name: str, tmp_path: Path) -> None:
    config = model_config(name)
    values = config_to_hf(config)
    assert config_from_hf(values, "x") == config
    (tmp_path / "config.json").write_text(json.dumps(values))
    hf = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(hf).__name__ == "LlamaConfig"
    assert hf.head_dim == config.head_dim and hf.num_key_value_heads == config.num_key_value_heads
    assert hf.rope_parameters["rope_theta"] == config.rope_theta
    expected_type = "default" if config.rope_scaling_factor == 1.0 else "linear"
    assert hf.rope_parameters["rope_type"] == expected_type
    # and back: a config transformers 5 writes maps to the same ModelConfig
    hf.save_pretrained(tmp_path / "again")
    assert read_config(tmp_path / "again") == config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, r"unsupported architecture 'GPT2LMHeadModel'"),
        ({"architectures": None, "model_type": "mistral"}, r"unsupported architecture 'mistral'"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, r"rope_scaling rope_type 'dynamic' is not supported"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, r"rope_parameters rope_type 'yarn'"),
        ({"rope_scaling": {"type": "linear"}}, r"rope_scaling: missing field 'factor'"),
        ({"attention_bias": True}, r"attention_bias is true"),
        ({"mlp_bias": True}, r"mlp_bias is true"),
        ({"hidden_act": "gelu"}, r"hidden_act 'gelu' is not supported"),
        ({"hidden_size": "2048"}, r"field 'hidden_size' must be int"),
        ({"hidden_size": None}, r"missing field 'hidden_size'"),
        ({"num_key_value_heads": 5}, r"not a multiple of num_key_value_heads 5"),
    ],
)
def test_config_errors(change: dict, message: str) -> None:
    with pytest.raises(RepolmError, match=r"^my/config\.json: .*" + message):
        config_from_hf(dict(DEEPSEEK_CODER_1_3B_CONFIG, **change), "my/config.json")


# -------------------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    save_pretrained(repolm_model(model_config("mha-odd-untied")), folder)
    return folder


def load_error(folder: Path) -> str:
    with pytest.raises(RepolmError) as caught:
        load_pretrained(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope") == f"{tmp_path / 'nope'}: model folder not found"


def test_other_architecture(saved: Path) -> None:
    (saved / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    message = load_error(saved)
    assert "config.json" in message and "GPT2LMHeadModel" in message


def test_mismatched_shape(saved: Path) -> None:
    values = json.loads((saved / "config.json").read_text())
    values["hidden_size"] = 78  # head_dim stays 24 (explicit in config.json)
    (saved / "config.json").write_text(json.dumps(values))
    message = load_error(saved)
    assert "model.safetensors: tensor model.embed_tokens.weight has shape [123, 72]" in message
    assert "[123, 78]" in message


def test_truncated_safetensors(saved: Path) -> None:
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = load_error(saved)
    assert str(path) in message and "truncated" in message
    path.write_bytes(data[:5])
    assert "truncated" in load_error(saved)


def test_corrupt_safetensors_header(saved: Path) -> None:
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:20] = b"\xff" * 12
    path.write_bytes(bytes(data))
    message = load_error(saved)
    assert str(path) in message and "corrupt" in message


def test_invalid_json(saved: Path) -> None:
    (saved / "config.json").write_text('{"hidden_size": 72,')
    message = load_error(saved)
    assert str(saved / "config.json") in message and "invalid JSON" in message


def test_missing_config(saved: Path) -> None:
    (saved / "config.json").unlink()
    assert load_error(saved) == f"{saved / 'config.json'}: file not found"


def test_missing_weights_file(saved: Path) -> None:
    (saved / "model.safetensors").unlink()
    message = load_error(saved)
    assert "no weights found" in message and "model.safetensors" in message


def test_missing_shard(tmp_path: Path) -> None:
    save_pretrained(repolm_model(model_config("mha-odd-untied")), tmp_path, max_shard_bytes=40_000)
    shard = sorted(json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"].values())[-1]
    (tmp_path / shard).unlink()
    assert f"{tmp_path / shard}: weights file not found" in load_error(tmp_path)


def test_missing_and_unexpected_tensors(tmp_path: Path) -> None:
    model = repolm_model(model_config("mha-odd-untied"))
    state = write_bin_folder(model, tmp_path)
    del state["lm_head.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert "missing tensor lm_head.weight in pytorch_model.bin" in load_error(tmp_path)
    state["lm_head.weight"] = model.lm_head.weight
    state["model.layers.9.mlp.up_proj.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert "pytorch_model.bin: unexpected tensor model.layers.9.mlp.up_proj.weight" in load_error(tmp_path)


def test_corrupt_pytorch_bin(tmp_path: Path) -> None:
    write_bin_folder(repolm_model(model_config("mha-odd-untied")), tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a zip file")
    assert "pytorch_model.bin: cannot load PyTorch weights" in load_error(tmp_path)


def test_save_into_a_file_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepolmError, match="not a folder"):
        save_pretrained(repolm_model(model_config("mqa-tied")), tmp_path / "file")
