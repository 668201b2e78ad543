"""The model stage: preset sizes, KV-cache decoding, left-padded batches, and the module's import boundary."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

import repolm.model
from repolm.model import PRESETS, KVCache, ModelConfig, Transformer, build_model, flops_per_token, preset_config

TOLERANCE = 1e-5
MODEL_DIR = Path(repolm.model.__file__).parent


def meta_parameter_count(config: ModelConfig) -> int:
    with torch.device("meta"):
        model = Transformer(config)
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters are counted once


@pytest.mark.parametrize(
    "name, expected",
    [("deepseek-coder-1.3b", 1.35e9), ("deepseek-coder-6.7b", 6.74e9), ("deepseek-coder-33b", 33.3e9)],
)
def test_paper_preset_parameter_counts(name: str, expected: float) -> None:
    config = preset_config(name)
    count = meta_parameter_count(config)
    assert abs(count - expected) / expected < 0.005, f"{name}: {count:,} parameters"
    assert config.num_parameters == count


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("tied", [False, True])
def test_num_parameters_matches_meta_count(name: str, tied: bool) -> None:
    config = preset_config(name, tie_word_embeddings=tied)
    assert config.num_parameters == meta_parameter_count(config)


def test_cpu_preset_sizes() -> None:
    assert 1_000_000 <= preset_config("tiny").num_parameters <= 2_000_000
    assert 6_500_000 <= preset_config("small").num_parameters <= 7_500_000


def test_flops_per_token_of_the_1_3b_preset_by_hand() -> None:
    """DeepSeek-Coder 1.3B at 4,096 tokens, counted by hand from its published shapes (hidden 2,048, 24 layers,
    16 heads of 128, intermediate 5,504, vocabulary 32,256, untied head)."""
    projections = 4 * 2048 * 2048 + 3 * 2048 * 5504  # q, k, v, o (no GQA at 1.3B) + gate, up, down = 50,593,792
    head = 32256 * 2048  # the output head is a matmul; the input embedding a lookup
    matmul_weights = 24 * projections + head  # 1,280,311,296
    attention = 24 * 16 * (2 * 2 * 4096 * 128)  # Q K^T and P V forward per token = 805,306,368
    expected = 6 * matmul_weights + 3 * attention  # forward + backward (2x forward)
    assert expected == 10_097_786_880
    assert flops_per_token(preset_config("deepseek-coder-1.3b"), 4096) == expected


def test_flops_per_token_counts_gqa_and_a_tied_head() -> None:
    config = preset_config("deepseek-coder-33b")  # 56 query heads, 8 key/value heads of 128
    projections = 2 * 7168 * 7168 + 2 * 7168 * 1024 + 3 * 7168 * 19200
    expected = 6 * (62 * projections + 32256 * 7168) + 12 * 62 * 56 * 128 * 16384
    assert flops_per_token(config, 16384) == expected
    tied = preset_config("tiny", tie_word_embeddings=True)
    untied = preset_config("tiny", tie_word_embeddings=False)
    assert flops_per_token(tied, 256) == flops_per_token(untied, 256)  # the head's matmul costs the same


def test_build_model_keeps_tied_embeddings_tied() -> None:
    config = preset_config("tiny", tie_word_embeddings=True)
    model = build_model(config, seed=0)
    assert model.lm_head.weight is model.embed_tokens.weight
    assert model.num_parameters() == config.num_parameters


def test_unknown_preset_names_the_presets() -> None:
    with pytest.raises(KeyError) as caught:
        preset_config("nope")
    message = str(caught.value)
    assert "nope" in message
    assert all(name in message for name in PRESETS)


def test_paper_preset_shapes() -> None:
    big = preset_config("deepseek-coder-33b")
    assert (big.head_dim, big.num_key_value_heads, big.num_attention_heads // big.num_key_value_heads) == (128, 8, 7)
    for name in ("deepseek-coder-1.3b", "deepseek-coder-6.7b", "deepseek-coder-33b"):
        config = preset_config(name)
        assert (config.vocab_size, config.rope_theta, config.rope_scaling_factor) == (32256, 100000.0, 4.0)
        assert config.head_dim == 128 and not config.tie_word_embeddings


# ---------------------------------------------------------------------------------------------- decoding


def random_model(seed: int = 0, **overrides) -> Transformer:
    config = preset_config("tiny", **{"vocab_size": 257, "num_hidden_layers": 2, **overrides})
    model = build_model(config, seed=seed)
    with torch.no_grad():  # weights large enough that positions and padding visibly change the logits
        generator = torch.Generator().manual_seed(seed)
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1.0 + 0.2 * noise if "norm" in name else noise / parameter.shape[-1] ** 0.5)
    return model.eval()


@pytest.mark.parametrize("rope_scaling_factor", [1.0, 4.0])
def test_kv_cache_incremental_equals_full_forward(rope_scaling_factor: float) -> None:
    model = random_model(rope_scaling_factor=rope_scaling_factor)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.config, batch_size=2, max_length=20, device="cpu", dtype=torch.float32)
        pieces = [model(ids[:, :6], kv_cache=cache)]  # prefill
        pieces.append(model(ids[:, 6:9], kv_cache=cache))  # a chunk after the prefill (explicit causal mask)
        for t in range(9, 16):  # then token by token
            pieces.append(model(ids[:, t : t + 1], kv_cache=cache))
    assert cache.length == 16
    assert full.abs().max() > 0.5
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=TOLERANCE, rtol=0)


def test_last_position_only() -> None:
    model = random_model()
    ids = torch.randint(0, model.config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, last_position_only=True), model(ids)[:, -1:], atol=TOLERANCE, rtol=0)


def test_left_padded_batch_matches_rows_alone() -> None:
    model = random_model(seed=3)
    generator = torch.Generator().manual_seed(4)
    lengths = [9, 4, 6]
    rows = [torch.randint(0, model.config.vocab_size, (n,), generator=generator) for n in lengths]
    nexts = torch.randint(0, model.config.vocab_size, (len(rows),), generator=generator)
    T, B, pad_id = max(lengths), len(rows), 0
    ids = torch.full((B, T), pad_id)
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, T - len(row) :] = row
        valid[b, T - len(row) :] = True
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    mask = (causal[None] & valid[:, None, :])[:, None]  # (B, 1, T, T)
    with torch.no_grad():
        cache = KVCache(model.config, batch_size=B, max_length=T + 1, device="cpu", dtype=torch.float32)
        batch_last = model(ids, positions=positions, attention_mask=mask, kv_cache=cache)[:, -1]
        # one decoding step: every row's next token at its own position, padding still masked out
        step_mask = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool)], dim=1)[:, None, None, :]  # (B,1,1,T+1)
        step_positions = torch.tensor(lengths)[:, None]
        batch_step = model(nexts[:, None], positions=step_positions, attention_mask=step_mask, kv_cache=cache)[:, -1]
        for b, row in enumerate(rows):
            alone = model(torch.cat([row, nexts[b : b + 1]])[None])[0]
            torch.testing.assert_close(batch_last[b], alone[-2], atol=TOLERANCE, rtol=0)
            torch.testing.assert_close(batch_step[b], alone[-1], atol=TOLERANCE, rtol=0)
    assert torch.isfinite(batch_last).all()


# ------------------------------------------------------------------------------------------ import boundary


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside repolm.model
                modules.add("repolm.model." + (node.module or ""))
            else:
                modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(MODEL_DIR.glob("*.py")), ids=lambda p: p.name)
def test_model_imports_only_torch_and_its_own_modules(path: Path) -> None:
    own = {"repolm.model." + p.stem for p in MODEL_DIR.glob("*.py") if p.stem != "__init__"}
    for module in imported_modules(path):
        top = module.split(".")[0]
        if top == "repolm":
            assert module in own, f"{path.name} imports {module}"
            if path.stem != "__init__":  # the implementation modules need nothing from repolm but the config
                assert module == "repolm.model.config", f"{path.name} imports {module}"
        else:
            assert top in sys.stdlib_module_names or top == "torch", f"{path.name} imports third-party {module}"


def test_config_module_imports_only_the_standard_library() -> None:
    for module in imported_modules(MODEL_DIR / "config.py"):
        assert module.split(".")[0] in sys.stdlib_module_names, module
