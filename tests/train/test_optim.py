"""AdamW groups and the learning-rate schedules: values at the key steps, validation, and that training descends."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from repolm.errors import RepolmError
from repolm.model import build_model, preset_config
from repolm.model.llama import RMSNorm
from repolm.train.optim import (
    OptimizerConfig,
    ScheduleConfig,
    apply_learning_rate,
    build_optimizer,
    clip_gradients,
    learning_rate,
    parameter_groups,
)

PEAK = 4.2e-4


def tiny_model(**overrides) -> torch.nn.Module:
    return build_model(preset_config("tiny", vocab_size=128, **overrides), device="cpu", dtype=torch.float32, seed=0)


def test_multistep_schedule_matches_the_paper() -> None:
    config = ScheduleConfig()  # 2000 warm-up steps, x sqrt(1/10) at 80% and 90%
    total = 10_000
    rate = [learning_rate(step, total, PEAK, config) for step in range(total + 1)]
    assert rate[0] == pytest.approx(PEAK / 2000)
    assert rate[999] == pytest.approx(PEAK / 2)
    assert rate[1999] == pytest.approx(PEAK)  # warm-up ends at the peak
    assert all(earlier < later for earlier, later in pairwise(rate[:2000]))
    assert rate[2000] == rate[7999] == pytest.approx(PEAK)
    assert rate[8000] == rate[8999] == pytest.approx(PEAK * math.sqrt(0.1))  # 31.6% of the peak
    assert rate[9000] == rate[9999] == rate[10_000] == pytest.approx(PEAK * 0.1)  # final: 10% of the peak


def test_cosine_schedule_endpoints() -> None:
    config = ScheduleConfig(kind="cosine", warmup_steps=100, min_lr_ratio=0.1)
    total = 1100
    assert learning_rate(0, total, PEAK, config) == pytest.approx(PEAK / 100)
    assert learning_rate(99, total, PEAK, config) == pytest.approx(PEAK)
    assert learning_rate(100, total, PEAK, config) == pytest.approx(PEAK)
    assert learning_rate(600, total, PEAK, config) == pytest.approx(PEAK * 0.55)  # halfway: mean of peak and floor
    assert learning_rate(total, total, PEAK, config) == pytest.approx(PEAK * 0.1)
    after_warmup = [learning_rate(step, total, PEAK, config) for step in range(100, total + 1)]
    assert all(earlier >= later for earlier, later in pairwise(after_warmup))


def test_constant_and_no_warmup() -> None:
    config = ScheduleConfig(kind="constant", warmup_steps=0)
    assert {learning_rate(step, 50, PEAK, config) for step in range(51)} == {PEAK}
    multistep = ScheduleConfig(warmup_steps=0)
    assert learning_rate(0, 50, PEAK, multistep) == PEAK
    assert learning_rate(40, 50, PEAK, multistep) == pytest.approx(PEAK * math.sqrt(0.1))


def test_schedule_errors_name_the_field() -> None:
    with pytest.raises(RepolmError, match="warmup_steps 2000 is longer than the run's 500 total steps"):
        learning_rate(0, 500, PEAK, ScheduleConfig())
    with pytest.raises(RepolmError, match="kind must be one of multistep, cosine, constant, got 'linear'"):
        ScheduleConfig(kind="linear")
    with pytest.raises(RepolmError, match="decay_at"):
        ScheduleConfig(decay_at=(0.9, 0.8))
    with pytest.raises(RepolmError, match="decay_factor"):
        ScheduleConfig(decay_factor=1.5)
    with pytest.raises(RepolmError, match="warmup_steps"):
        ScheduleConfig(warmup_steps=-1)
    with pytest.raises(RepolmError, match="min_lr_ratio"):
        ScheduleConfig(min_lr_ratio=2.0)


def test_optimizer_config_errors_name_the_field() -> None:
    with pytest.raises(RepolmError, match="lr must be positive, got -0.001"):
        OptimizerConfig(lr=-1e-3)
    with pytest.raises(RepolmError, match="betas"):
        OptimizerConfig(betas=(0.9, 1.0))
    with pytest.raises(RepolmError, match="weight_decay"):
        OptimizerConfig(weight_decay=-0.1)
    with pytest.raises(RepolmError, match="grad_clip"):
        OptimizerConfig(grad_clip=-1.0)
    with pytest.raises(RepolmError, match="eps"):
        OptimizerConfig(eps=0.0)


@pytest.mark.parametrize("tied", [False, True])
def test_parameter_groups_decay_matrices_only(tied: bool) -> None:
    model = tiny_model(tie_word_embeddings=tied)
    decay, no_decay = parameter_groups(model, 0.1)
    assert (decay["name"], decay["weight_decay"]) == ("decay", 0.1)
    assert (no_decay["name"], no_decay["weight_decay"]) == ("no_decay", 0.0)
    norms = {id(module.weight) for module in model.modules() if isinstance(module, RMSNorm)}
    assert {id(parameter) for parameter in no_decay["params"]} == norms
    decayed = {id(parameter) for parameter in decay["params"]}
    assert id(model.embed_tokens.weight) in decayed and id(model.lm_head.weight) in decayed
    assert id(model.layers[0].self_attn.qkv_proj.weight) in decayed
    grouped = decay["params"] + no_decay["params"]
    assert len(grouped) == len({id(parameter) for parameter in grouped}) == len(list(model.parameters()))


def test_weight_decay_reaches_matrices_and_spares_norms() -> None:
    model = tiny_model()
    config = OptimizerConfig(lr=1e-2, weight_decay=0.1)
    optimizer = build_optimizer(model, config)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # only the decay moves anything
    optimizer.step()
    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2:
            torch.testing.assert_close(parameter, before[name] * (1 - 1e-2 * 0.1), rtol=1e-6, atol=0)
        else:
            assert torch.equal(parameter, before[name]), name


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    optimizer = build_optimizer(model, OptimizerConfig(lr=3e-3))
    schedule = ScheduleConfig(warmup_steps=5)
    tokens = torch.randint(0, 128, (4, 33), generator=torch.Generator().manual_seed(0))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    losses = []
    for step in range(20):
        apply_learning_rate(optimizer, learning_rate(step, 20, 3e-3, schedule))
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(128), rel=0.02)  # uniform predictions at the start
    assert losses[-1] < 0.7 * losses[0]
    assert {group["lr"] for group in optimizer.param_groups} == {learning_rate(19, 20, 3e-3, schedule)}


def test_clip_gradients_returns_the_norm_before_clipping() -> None:
    parameters = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    parameters[0].grad = torch.tensor([3.0, 0.0, 0.0])
    parameters[1].grad = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    assert clip_gradients(parameters, 0.0) == pytest.approx(5.0)  # measure only
    assert parameters[0].grad[0].item() == 3.0
    assert clip_gradients(parameters, 1.0) == pytest.approx(5.0)
    clipped = torch.cat([parameter.grad.flatten() for parameter in parameters]).norm()
    assert clipped.item() == pytest.approx(1.0, rel=1e-5)
    assert clip_gradients([torch.nn.Parameter(torch.zeros(1))], 1.0) == 0.0  # no gradients at all
