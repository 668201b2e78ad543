"""The model on a CUDA device: fp32 parity with transformers and with the CPU, bf16 accuracy, FlashAttention kernels.

Marked `gpu`: `make test` deselects them and they skip without CUDA; run them with `pytest -m gpu` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from repolm.hf_folder import config_to_hf, to_hf_state_dict
from repolm.model import ModelConfig, build_model

pytestmark = pytest.mark.gpu  # skipped without CUDA, fp32 without TF32: tests/conftest.py

CONFIGS = {
    "mha": dict(num_attention_heads=4, num_key_value_heads=4, rope_scaling_factor=1.0),
    "gqa-linear-x4": dict(num_attention_heads=8, num_key_value_heads=2, rope_scaling_factor=4.0),
}


def small_config(**overrides) -> ModelConfig:
    values = dict(
        vocab_size=517,
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=3,
        initializer_range=0.05,
        max_position_embeddings=4096,
    )
    values.update(overrides)
    return ModelConfig(**values)


def transformers_copy(model: torch.nn.Module) -> LlamaForCausalLM:
    hf_config = LlamaConfig(**{k: v for k, v in config_to_hf(model.config).items() if k != "architectures"})
    hf_config._attn_implementation = "sdpa"
    twin = LlamaForCausalLM(hf_config).eval()
    twin.load_state_dict({name: t.detach().cpu() for name, t in to_hf_state_dict(model).items()}, strict=True)
    return twin


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cuda_fp32_logits_match_cpu_and_transformers(name: str) -> None:
    model = build_model(small_config(**CONFIGS[name]), seed=0).eval()
    ids = torch.randint(0, 517, (2, 57), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        on_cpu = model(ids)
        twin = transformers_copy(model).cuda()
        model = model.cuda()
        on_cuda = model(ids.cuda()).cpu()
        theirs = twin(input_ids=ids.cuda()).logits.float().cpu()
    assert (on_cuda - on_cpu).abs().max().item() < 1e-4
    assert (on_cuda - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bf16_logits_are_close_to_fp32(name: str) -> None:
    model = build_model(small_config(**CONFIGS[name]), device="cuda", seed=0).eval()
    ids = torch.randint(0, 517, (2, 300), generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad():
        reference = model(ids)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        with autocast:
            mixed = model(ids)
        pure = model.to(torch.bfloat16)(ids)
    assert relative_error(mixed, reference) < 2e-2
    assert relative_error(pure, reference) < 3e-2


def cuda_kernel_names(run) -> list[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
        run()
        torch.cuda.synchronize()
    return [event.key for event in profiler.key_averages() if event.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.parametrize("backend", ["default", "flash-attention-2"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_bf16_training_step_runs_flash_attention_kernels(name: str, backend: str) -> None:
    """Forward and backward of a causal bf16 batch run fused flash-attention kernels (GQA included): by default
    whatever SDPA picks (on Hopper, cuDNN's flash kernels), and FlashAttention-2 itself when it is asked for."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    config = small_config(**CONFIGS[name], hidden_size=512, intermediate_size=1376)  # head_dim 128 or 64
    model = build_model(config, device="cuda", seed=0).train()
    ids = torch.randint(0, 517, (2, 1024), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids).float().logsumexp(-1).mean()
        loss.backward()

    def kernels() -> list[str]:
        step()  # warm-up
        return cuda_kernel_names(step)

    if backend == "default":
        names = kernels()
    else:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            names = kernels()
    flash = [n.lower() for n in names if "flash" in n.lower()]
    print(f"{name}, {backend}: flash kernels: {flash}")
    assert any("fwd" in n or "fprop" in n for n in flash), names
    assert any("bwd" in n or "bprop" in n for n in flash), names
