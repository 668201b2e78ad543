"""The chunked output projection + cross-entropy against `F.cross_entropy` over full logits: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repolm.model import ModelConfig, build_model
from repolm.model.llama import IGNORE_INDEX, linear_cross_entropy


def reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


def inputs(seed: int, tokens: int = 300, width: int = 48, vocab: int = 1001):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, tokens // 3, width, generator=generator, dtype=torch.float64).float().requires_grad_()
    weight = (torch.randn(vocab, width, generator=generator) * 0.3).requires_grad_()
    targets = torch.randint(0, vocab, (3, tokens // 3), generator=generator)
    targets[:, ::7] = IGNORE_INDEX
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_tokens", [1, 37, 100, 300, 1000])
def test_loss_and_gradients_equal_full_logits(chunk_tokens: int) -> None:
    hidden, weight, targets = inputs(0)
    expected = reference(hidden, weight, targets)
    expected_grads = torch.autograd.grad(expected * 0.5, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets, chunk_tokens)
    grads = torch.autograd.grad(loss * 0.5, (hidden, weight))  # the upstream gradient scales the stored ones
    assert loss.dtype == torch.float32 and loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-4)
    for actual, wanted in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-6)


def test_ignored_targets_add_nothing_and_all_ignored_is_zero() -> None:
    hidden, weight, targets = inputs(1)
    kept = targets != IGNORE_INDEX
    loss = linear_cross_entropy(hidden, weight, targets)
    torch.testing.assert_close(loss, linear_cross_entropy(hidden[kept], weight, targets[kept]))
    nothing = linear_cross_entropy(hidden, weight, torch.full_like(targets, IGNORE_INDEX))
    assert nothing.item() == 0.0
    (gradient,) = torch.autograd.grad(nothing, hidden)
    assert gradient.abs().max().item() == 0.0


def test_without_gradients_only_the_loss_is_computed() -> None:
    hidden, weight, targets = inputs(2)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets, 64)
    torch.testing.assert_close(loss, reference(hidden, weight, targets).detach(), rtol=1e-6, atol=1e-4)
    frozen = linear_cross_entropy(hidden.detach(), weight, targets, 64)  # only the weight needs a gradient
    (weight_gradient,) = torch.autograd.grad(frozen, weight)
    (expected,) = torch.autograd.grad(reference(hidden.detach(), weight, targets), weight)
    torch.testing.assert_close(weight_gradient, expected, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_keeps_an_fp32_softmax() -> None:
    hidden, weight, targets = inputs(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, 50)
        expected = reference(hidden, weight, targets)  # bf16 matmul, fp32 cross-entropy
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-2)
    hidden_gradient, weight_gradient = torch.autograd.grad(loss, (hidden, weight))
    assert (hidden_gradient.dtype, weight_gradient.dtype) == (torch.float32, torch.float32)


def test_model_targets_give_the_summed_loss_of_its_logits() -> None:
    config = ModelConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, initializer_range=0.05,
    )  # fmt: skip
    model = build_model(config, seed=0)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(4))
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = IGNORE_INDEX
    expected = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten(), reduction="sum")
    expected.backward()
    expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    loss = model(ids, targets=targets)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-4)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(torch.zeros(5, 64), model.lm_head.weight, torch.zeros(4, dtype=torch.long))
