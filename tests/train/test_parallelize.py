"""Tests of repolm.train.parallelize: DDP and FSDP2 over 2 CPU processes (gloo) against one process.

The same small model trains the same global batches three ways: one process with the whole batch, DDP and
FSDP2 with 2 processes x half the batch (also with gradient accumulation and activation checkpointing). The
per-step losses, gradient norms and final weights must agree; a full state dict written by FSDP2 must load
into one process (same logits, same optimizer moments), and one written by one process must resume in FSDP2.

The 2-process runs go through `torchrun` in one subprocess (this file is also its worker script), which
runs all distributed cases in a row so that torch is imported only once per process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from repolm.errors import RepolmError
from repolm.model import ModelConfig, build_model
from repolm.train.optim import clip_gradients
from repolm.train.parallelize import (
    DistributedInfo,
    ParallelConfig,
    all_reduce_mean,
    destroy_distributed,
    full_model_state_dict,
    full_optimizer_state_dict,
    init_distributed,
    load_full_model_state_dict,
    load_full_optimizer_state_dict,
    no_sync,
    parallelize,
    unwrap_model,
)

# 251 rows: FSDP2 shards the embedding unevenly (126 + 125), which must not matter
CONFIG = dict(
    vocab_size=251,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rope_theta=10000.0,
    bos_token_id=None,
    eos_token_id=None,
)
STEPS = 4
GLOBAL_BATCH = 4
SEQUENCE_LENGTH = 16
LEARNING_RATE = 1e-2
MAX_GRAD_NORM = 1.0
WORLD_SIZE = 2
# float64: AdamW divides each gradient by its own running magnitude, which turns the last-bit differences of
# summing a batch in another order into update differences of ~1e-6 in float32 (measured: one process with
# the batch split in two micro-batches already differs by 4.5e-6 from one pass over it, in float64 by 4e-15).
# In float64 "equal" can mean equal to 1e-10 and still catch a wrong gradient average or a lost shard.
DTYPE = torch.float64


def make_model(seed: int = 0) -> torch.nn.Module:
    return build_model(ModelConfig(**CONFIG), dtype=DTYPE, seed=seed)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.95), weight_decay=0.1)


def batches() -> torch.Tensor:
    """(STEPS, GLOBAL_BATCH, SEQUENCE_LENGTH + 1) token ids: inputs are [..., :-1], targets [..., 1:].

    Each row counts up from a random start by a random stride of 1 or 2: learnable, so the loss must fall.
    """
    generator = torch.Generator().manual_seed(1234)
    starts = torch.randint(0, CONFIG["vocab_size"], (STEPS, GLOBAL_BATCH, 1), generator=generator)
    strides = torch.randint(1, 3, (STEPS, GLOBAL_BATCH, 1), generator=generator)
    return (starts + strides * torch.arange(SEQUENCE_LENGTH + 1)) % CONFIG["vocab_size"]


def probe_tokens() -> torch.Tensor:
    return torch.randint(0, CONFIG["vocab_size"], (2, SEQUENCE_LENGTH), generator=torch.Generator().manual_seed(99))


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, accumulation: int
) -> tuple[float, float]:
    """One optimizer step on this process's rows (B, T + 1); returns (global mean loss, gradient norm)."""
    micro_batch = tokens.shape[0] // accumulation
    local_loss = 0.0
    for micro_step in range(accumulation):
        rows = tokens[micro_step * micro_batch : (micro_step + 1) * micro_batch]
        last = micro_step == accumulation - 1
        with contextlib.nullcontext() if last else no_sync(model):
            logits = model(rows[:, :-1])  # (b, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten()) / accumulation
            loss.backward()
        local_loss += loss.item()
    norm = clip_gradients(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return all_reduce_mean(local_loss), norm


# ---------------------------------------------------------------------------------------------------------
# the 2-process worker (run by torchrun: `python -m torch.distributed.run ... test_parallelize.py OUT CKPT`)


def run_case(info: DistributedInfo, config: ParallelConfig, accumulation: int, seed: int = 0) -> dict:
    model = parallelize(make_model(seed), config, info)
    optimizer = make_optimizer(model)
    local = GLOBAL_BATCH // info.world_size
    losses, norms = [], []
    for step_tokens in batches():
        rows = step_tokens[info.rank * local : (info.rank + 1) * local]
        loss, norm = train_step(model, optimizer, rows, accumulation)
        losses.append(loss)
        norms.append(norm)
    with torch.no_grad():
        probe_logits = model(probe_tokens())  # every rank runs it (FSDP gathers weights in forward)
    return dict(
        model=model,
        optimizer=optimizer,
        losses=losses,
        norms=norms,
        state=full_model_state_dict(model),
        optimizer_state=full_optimizer_state_dict(model, optimizer),
        probe_logits=probe_logits,
    )


def worker(output: Path, reference_checkpoint: Path) -> None:
    info = init_distributed("cpu")
    assert info.world_size == WORLD_SIZE and info.device.type == "cpu"
    torch.manual_seed(0)
    results: dict[str, dict] = {}
    cases = {
        "ddp": (ParallelConfig(mode="ddp"), 1),
        "ddp_accumulate": (ParallelConfig(mode="ddp"), 2),
        "fsdp": (ParallelConfig(mode="fsdp"), 1),
        "fsdp_accumulate_checkpointing": (ParallelConfig(mode="fsdp", activation_checkpointing=True), 2),
    }
    for name, (config, accumulation) in cases.items():
        case = run_case(info, config, accumulation)
        results[name] = {key: case[key] for key in ("losses", "norms", "state", "optimizer_state", "probe_logits")}
        results[name]["is_ddp"] = type(case["model"]).__name__
        results[name]["config_reachable"] = unwrap_model(case["model"]).config == ModelConfig(**CONFIG)

    # resume in FSDP2 from a single-process checkpoint taken before the last step; only rank 0 passes it
    checkpoint = torch.load(reference_checkpoint) if info.is_main else {"model": {}, "optimizer": {}}
    model = parallelize(make_model(seed=7), ParallelConfig(mode="fsdp"), info)  # other weights, then loaded
    optimizer = make_optimizer(model)
    load_full_model_state_dict(model, checkpoint["model"])
    load_full_optimizer_state_dict(model, optimizer, checkpoint["optimizer"])
    local = GLOBAL_BATCH // info.world_size
    last_rows = batches()[-1][info.rank * local : (info.rank + 1) * local]
    loss, norm = train_step(model, optimizer, last_rows, accumulation=1)
    results["fsdp_resumed"] = dict(losses=[loss], norms=[norm], state=full_model_state_dict(model))
    if info.is_main:
        torch.save(results, output)
    else:
        assert results["fsdp"]["state"] == {}  # consolidated state lives on rank 0 only
    destroy_distributed()


# ---------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One process, the whole global batch each step; a checkpoint before the last step."""
    info = init_distributed("cpu")
    model = parallelize(make_model(), ParallelConfig(), info)
    optimizer = make_optimizer(model)
    losses, norms = [], []
    checkpoint_path = tmp_path_factory.mktemp("reference") / "checkpoint.pt"
    for step, step_tokens in enumerate(batches()):
        if step == STEPS - 1:
            checkpoint = dict(model=full_model_state_dict(model), optimizer=full_optimizer_state_dict(model, optimizer))
            torch.save(checkpoint, checkpoint_path)
        loss, norm = train_step(model, optimizer, step_tokens, accumulation=1)
        losses.append(loss)
        norms.append(norm)
    return dict(
        losses=losses,
        norms=norms,
        state=full_model_state_dict(model),
        optimizer_state=full_optimizer_state_dict(model, optimizer),
        checkpoint_path=checkpoint_path,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def distributed(reference: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output = tmp_path_factory.mktemp("distributed") / "results.pt"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD_SIZE}",
        "--nnodes=1",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        __file__,
        str(output),
        str(reference["checkpoint_path"]),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    return torch.load(output)


def assert_same_training(run: dict, reference: dict) -> None:
    torch.testing.assert_close(torch.tensor(run["losses"]), torch.tensor(reference["losses"]), rtol=1e-10, atol=0)
    torch.testing.assert_close(torch.tensor(run["norms"]), torch.tensor(reference["norms"]), rtol=1e-9, atol=0)
    assert list(run["state"]) == list(reference["state"])  # the same plain names, in the same order
    for name, tensor in reference["state"].items():
        torch.testing.assert_close(run["state"][name], tensor, rtol=1e-8, atol=1e-10, msg=name)


# ---------------------------------------------------------------------------------------------------------
# 2 processes against 1


@pytest.mark.parametrize("case", ["ddp", "ddp_accumulate", "fsdp", "fsdp_accumulate_checkpointing"])
def test_two_processes_train_like_one(case: str, distributed: dict, reference: dict) -> None:
    assert_same_training(distributed[case], reference)
    assert distributed[case]["config_reachable"]
    assert (distributed[case]["is_ddp"] == "DistributedDataParallel") == case.startswith("ddp")


def test_reference_learns_and_clipping_applies(reference: dict) -> None:
    assert reference["losses"][-1] < reference["losses"][0]
    assert max(reference["norms"]) > MAX_GRAD_NORM  # so the runs also compare clipped updates


def test_fsdp_checkpoint_loads_into_one_process(distributed: dict, reference: dict) -> None:
    fsdp = distributed["fsdp"]
    model = make_model(seed=5)
    optimizer = make_optimizer(model)
    load_full_model_state_dict(model, fsdp["state"])
    load_full_optimizer_state_dict(model, optimizer, fsdp["optimizer_state"])
    with torch.no_grad():
        torch.testing.assert_close(model(probe_tokens()), fsdp["probe_logits"], rtol=1e-10, atol=1e-12)
    # the optimizer moments landed on the right parameters and equal the single-process run's
    loaded = full_optimizer_state_dict(model, optimizer)
    assert loaded["param_groups"][0]["lr"] == LEARNING_RATE
    assert set(loaded["state"]) == set(reference["optimizer_state"]["state"])
    for name, moments in reference["optimizer_state"]["state"].items():
        assert int(loaded["state"][name]["step"]) == STEPS
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(loaded["state"][name][key], moments[key], rtol=1e-6, atol=1e-16, msg=name)


def test_single_process_checkpoint_resumes_in_fsdp(distributed: dict, reference: dict) -> None:
    resumed = distributed["fsdp_resumed"]
    torch.testing.assert_close(resumed["losses"][0], reference["losses"][-1], rtol=1e-10, atol=0)
    for name, tensor in reference["state"].items():
        torch.testing.assert_close(resumed["state"][name], tensor, rtol=1e-8, atol=1e-10, msg=name)


# ---------------------------------------------------------------------------------------------------------
# one process


def single_info() -> DistributedInfo:
    return DistributedInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)


def loss_and_gradients(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    gradients = {name: parameter.grad for name, parameter in model.named_parameters()}
    return loss.item(), gradients


def test_activation_checkpointing_same_loss_and_gradients() -> None:
    tokens = batches()[0]
    plain_loss, plain_gradients = loss_and_gradients(make_model(), tokens)
    config = ParallelConfig(activation_checkpointing=True)
    wrapped = parallelize(make_model(), config, single_info())
    checkpointed_loss, checkpointed_gradients = loss_and_gradients(wrapped, tokens)
    assert type(wrapped.layers[0]).__name__ == "CheckpointWrapper"
    assert checkpointed_loss == pytest.approx(plain_loss, rel=1e-6)
    plain_names = list(plain_gradients)
    # wrapped names carry the wrapper's prefix; the consolidated state dict drops it
    assert [name.replace("_checkpoint_wrapped_module.", "") for name in checkpointed_gradients] == plain_names
    for (name, plain), checkpointed in zip(plain_gradients.items(), checkpointed_gradients.values(), strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-8, msg=name)
    assert list(full_model_state_dict(wrapped)) == list(make_model().state_dict())


def test_fresh_optimizer_state_round_trips_without_a_step() -> None:
    model = make_model()
    optimizer = make_optimizer(model)
    state = full_optimizer_state_dict(model, optimizer)
    assert state["state"] == {} and not optimizer.state  # saving did not create moments or a step count
    state["param_groups"][0]["lr"] = 0.5
    other = make_model()
    other_optimizer = make_optimizer(other)
    load_full_optimizer_state_dict(other, other_optimizer, state)
    assert not other_optimizer.state and other_optimizer.param_groups[0]["lr"] == 0.5


def test_parallel_config_validation() -> None:
    with pytest.raises(RepolmError, match="parallel.mode"):
        ParallelConfig(mode="zero3")  # type: ignore[arg-type]
    with pytest.raises(RepolmError, match="parallel.compile"):
        ParallelConfig(compile="yes")  # type: ignore[arg-type]


def test_parallelize_refuses_modes_that_do_not_match_the_launch() -> None:
    with pytest.raises(RepolmError, match="torchrun"):
        parallelize(make_model(), ParallelConfig(mode="fsdp"), single_info())
    two = DistributedInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), is_main=True)
    with pytest.raises(RepolmError, match="'none' but 2 processes"):
        parallelize(make_model(), ParallelConfig(mode="none"), two)


def test_init_distributed_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device.type, info.is_main) == (0, 1, 0, "cpu", True)
    assert all_reduce_mean(2.5) == 2.5
    with pytest.raises(RepolmError, match="device"):
        init_distributed("tpu")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RepolmError, match="WORLD_SIZE"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(RepolmError, match="WORLD_SIZE must be an integer"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RepolmError, match="MASTER_ADDR"):
        init_distributed("cpu")


@pytest.mark.slow
def test_compiled_blocks_match_eager() -> None:
    tokens = batches()[0]
    eager_loss, eager_gradients = loss_and_gradients(make_model(), tokens)
    compiled = parallelize(make_model(), ParallelConfig(compile=True, activation_checkpointing=True), single_info())
    compiled_loss, compiled_gradients = loss_and_gradients(compiled, tokens)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    for (name, eager), gradient in zip(eager_gradients.items(), compiled_gradients.values(), strict=True):
        torch.testing.assert_close(gradient, eager, rtol=1e-4, atol=1e-7, msg=name)
    assert sorted(full_model_state_dict(compiled)) == sorted(make_model().state_dict())


if __name__ == "__main__":  # the torchrun worker
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
