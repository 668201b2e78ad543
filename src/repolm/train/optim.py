"""AdamW with the DeepSeek weight-decay split, gradient clipping, and the learning-rate schedules.

Optimizer (DeepSeek-Coder paper section 3.4: AdamW, beta1 0.9, beta2 0.95; weight decay 0.1 and gradient clipping
1.0 are DeepSeek LLM's, section 2.3, not stated for Coder). Weight decay applies to every matrix (ndim >= 2: the
attention and feed-forward projections, the output projection and the token embeddings, as DeepSeek LLM and
torchtitan do) and not to vectors (ndim < 2: RMSNorm weights, biases if any). The peak learning rates of the paper
(Table 2) are in `PAPER_PEAK_LEARNING_RATES`; the default `lr` is the 6.7B one. The CPU presets (`tiny`, `small`,
~2-7M parameters, batches of a few thousand tokens) train well around 3e-3, and their YAML files set that.

Schedule (`learning_rate`): a linear warm-up from lr/warmup_steps to the peak over `warmup_steps` steps, then

- "multistep" (the paper): the peak until `decay_at[0]` of the steps, times `decay_factor` (sqrt(1/10)) until
  `decay_at[1]`, times `decay_factor`^2 (= 1/10, the paper's final 10%) to the end;
- "cosine": half a cosine from the peak at the end of warm-up to `min_lr_ratio` * peak at `total_steps`;
- "constant": the peak.

Steps count from 0 (the first optimizer step is step 0). A decay point `f` becomes the step `round(f * total)`:
steps from there on are decayed. If a decay point falls inside the warm-up, the warm-up ramp is multiplied by the
stage's factor. The schedule is a pure function of the step, so a checkpoint needs only the step to resume it.

Not handled here: the training loop, gradient accumulation and scaling, and distributed wrapping (the loop and
`repolm.train.parallelize` own those; `clip_gradients` works on plain and on FSDP2-sharded parameters).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

PAPER_PEAK_LEARNING_RATES = {
    "deepseek-coder-1.3b": 5.3e-4,
    "deepseek-coder-6.7b": 4.2e-4,
    "deepseek-coder-33b": 3.5e-4,
}
"""Max learning rate per paper size (DeepSeek-Coder Table 2), with batches of 1024 / 2304 / 3840 sequences."""

SCHEDULE_KINDS = ("multistep", "cosine", "constant")


@dataclass
class OptimizerConfig:
    """AdamW settings (defaults: the paper's optimizer with DeepSeek LLM's weight decay and clipping)."""

    lr: float = 4.2e-4
    """Peak learning rate; Table 2 gives 5.3e-4 (1.3B), 4.2e-4 (6.7B), 3.5e-4 (33B); ~3e-3 suits the CPU presets."""
    betas: tuple[float, float] = (0.9, 0.95)
    """Adam's (beta1, beta2), the paper's values."""
    eps: float = 1e-8
    """Adam's epsilon (PyTorch's default; not stated in the paper)."""
    weight_decay: float = 0.1
    """Decoupled weight decay of the matrices (norm weights and biases get none)."""
    grad_clip: float = 1.0
    """Max global L2 norm of the gradients; 0 turns clipping off (the norm is still measured)."""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if not self.lr > 0:
            raise RepolmError(f"lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise RepolmError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not self.eps > 0:
            raise RepolmError(f"eps must be positive, got {self.eps}")
        if not self.weight_decay >= 0:
            raise RepolmError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.grad_clip >= 0:
            raise RepolmError(f"grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule (defaults: the paper's three-stage schedule with DeepSeek LLM's decay points)."""

    kind: str = "multistep"
    """"multistep" (the paper), "cosine", or "constant" after the warm-up."""
    warmup_steps: int = 2000
    """Steps of linear warm-up to the peak (the paper: 2000); must not exceed the run's total steps."""
    decay_at: tuple[float, float] = (0.8, 0.9)
    """Fractions of the total steps where "multistep" multiplies the rate by `decay_factor` (DeepSeek LLM)."""
    decay_factor: float = math.sqrt(0.1)
    """Factor of each "multistep" decay: sqrt(1/10), so the final rate is 10% of the peak, as in the paper."""
    min_lr_ratio: float = 0.1
    """Final rate of "cosine" as a fraction of the peak."""

    def __post_init__(self) -> None:
        self.decay_at = tuple(self.decay_at)
        if self.kind not in SCHEDULE_KINDS:
            raise RepolmError(f"kind must be one of {', '.join(SCHEDULE_KINDS)}, got {self.kind!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise RepolmError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if not all(0.0 < fraction < 1.0 for fraction in self.decay_at) or list(self.decay_at) != sorted(self.decay_at):
            raise RepolmError(f"decay_at must be increasing fractions in (0, 1), got {self.decay_at}")
        if not 0.0 < self.decay_factor <= 1.0:
            raise RepolmError(f"decay_factor must be in (0, 1], got {self.decay_factor}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise RepolmError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def learning_rate(step: int, total_steps: int, max_lr: float, config: ScheduleConfig) -> float:
    """The learning rate of optimizer step `step` (0-based) of a `total_steps`-step run peaking at `max_lr`."""
    if total_steps < 1:
        raise RepolmError(f"total_steps must be positive, got {total_steps}")
    if config.warmup_steps > total_steps:
        raise RepolmError(f"warmup_steps {config.warmup_steps} is longer than the run's {total_steps} total steps")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.kind == "constant":
        return max_lr * warmup
    if config.kind == "multistep":
        stages_passed = sum(step >= round(fraction * total_steps) for fraction in config.decay_at)
        return max_lr * warmup * config.decay_factor**stages_passed
    # cosine, from the end of the warm-up (peak) to total_steps (min_lr_ratio * peak)
    if step < config.warmup_steps:
        return max_lr * warmup
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return max_lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: "decay" (ndim >= 2) with `weight_decay`, "no_decay" (ndim < 2) with none."""
    decay, no_decay = [], []
    for parameter in model.parameters():  # shared (tied) parameters appear once
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters with the decay split.

    The fused kernel is used where PyTorch has one for the parameters' device (CUDA, and CPU, where it is ~5x
    faster than the per-parameter loop on the `small` preset); otherwise PyTorch's default implementation.
    """
    groups = [group for group in parameter_groups(model, config.weight_decay) if group["params"]]
    if not groups:
        raise RepolmError("the model has no trainable parameters")
    device_types = {parameter.device.type for group in groups for parameter in group["params"]}
    fused = len(device_types) == 1 and device_types <= set(_fused_devices())
    implementation = {"fused": True} if fused else {"foreach": None}
    optimizer = torch.optim.AdamW(
        groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, **implementation
    )
    logger.info(
        "AdamW (%s): %s",
        "fused" if fused else "default implementation",
        ", ".join(f"{group['name']} {sum(p.numel() for p in group['params']):,} parameters" for group in groups),
    )
    return optimizer


def _fused_devices() -> list[str]:
    """Device types with a fused AdamW kernel in this PyTorch."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return _get_fused_kernels_supported_devices()
    except ImportError:  # a PyTorch without the helper: CUDA had the first fused kernel
        return ["cuda"]


def apply_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets the learning rate of every parameter group (call before `optimizer.step()`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Clips the gradients' global L2 norm to `max_norm` (0 = measure only); returns the norm before clipping."""
    parameters = [parameter for parameter in parameters if parameter.grad is not None]
    if not parameters:
        return 0.0
    if max_norm > 0:
        total_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    else:
        total_norm = torch.nn.utils.get_total_norm([parameter.grad for parameter in parameters])
    if hasattr(total_norm, "full_tensor"):  # a DTensor under FSDP2: the norm over all shards
        total_norm = total_norm.full_tensor()
    return float(total_norm)
