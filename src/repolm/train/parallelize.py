"""Everything repolm's training knows about parallelism: process groups, wrapping, and consolidated state.

The training loop stays the same on one CPU and on a GPU cluster; this module is where the difference lives
(torchtitan's split):

- `init_distributed` reads the environment `torchrun` sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT) and joins the process group: NCCL for CUDA tensors (one GPU per process, `cuda:LOCAL_RANK`) and
  gloo for CPU tensors. Ranks are global, devices local, so nothing assumes a single node. Without those
  variables it returns a single-process description and starts no group.
- `parallelize` wraps a `repolm.model.Transformer`: activation checkpointing per block, `torch.compile` per
  block, then FSDP2 (`fully_shard` per block, then the root) or DDP.
- `full_model_state_dict` / `full_optimizer_state_dict` and their `load_` counterparts move consolidated,
  plain-named state in and out of any of these wrappings, so a checkpoint written by 2 FSDP2 processes loads
  into one process and the reverse;
- `sharded_state_dict` / `load_sharded_state_dict` give and take the same state without gathering it: each rank's
  own shards (DTensors under FSDP2, whole tensors otherwise), for `torch.distributed.checkpoint` to write and read
  rank by rank (`repolm.train.checkpoint`), resharded to any number of processes on load.
- `no_sync` and `all_reduce_mean` are where a training step must know whether gradients and metrics live on
  one process or many (gradient clipping needs nothing from here: `repolm.train.optim.clip_gradients` reduces
  the norm of FSDP2's sharded gradients over all ranks).

It does not handle tensor, pipeline or context parallelism, CPU offloading of parameters, or choosing the data
each rank reads (that belongs to the data loader, which gets `rank` and `world_size` from `DistributedInfo`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

PARALLEL_MODES = ("none", "ddp", "fsdp")
DEVICE_PREFERENCES = ("auto", "cpu", "cuda")


@dataclass
class ParallelConfig:
    """How the model is spread over processes and how its activations are kept (the `parallel:` YAML section)."""

    mode: Literal["none", "ddp", "fsdp"] = "none"
    """"none": one process; "ddp": replicated weights, all-reduced gradients; "fsdp": FSDP2 sharded weights,
    gradients and optimizer state (for models that do not fit one device many times over)."""
    activation_checkpointing: bool = False
    """Recompute each transformer block's activations in the backward pass instead of storing them: less
    memory (one block's activations instead of all), about a third more compute."""
    compile: bool = False
    """Compile each transformer block with `torch.compile` (fullgraph); the first steps pay the compile time."""

    def __post_init__(self) -> None:
        if self.mode not in PARALLEL_MODES:
            raise RepolmError(f"parallel.mode must be one of {', '.join(PARALLEL_MODES)}; got {self.mode!r}")
        for name in ("activation_checkpointing", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise RepolmError(f"parallel.{name} must be true or false; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands among the processes of a run."""

    rank: int
    """Global rank, 0 .. world_size - 1, unique across all nodes."""
    world_size: int
    """Number of processes in the run (all nodes)."""
    local_rank: int
    """Rank on this node; picks the GPU."""
    device: torch.device
    """The device this process computes on (`cuda:LOCAL_RANK` or `cpu`)."""
    is_main: bool
    """True on global rank 0, the process that logs and writes checkpoints."""


def _environment_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise RepolmError(f"environment variable {name} must be an integer; got {value!r}") from None
    if number < 0:
        raise RepolmError(f"environment variable {name} must not be negative; got {number}")
    return number


def _pick_device(device_preference: str, local_rank: int) -> torch.device:
    if device_preference not in DEVICE_PREFERENCES:
        raise RepolmError(f"device must be one of {', '.join(DEVICE_PREFERENCES)}; got {device_preference!r}")
    use_cuda = device_preference == "cuda" or (device_preference == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RepolmError("device is 'cuda' but torch sees no CUDA device (use device: cpu or auto)")
    if local_rank >= torch.cuda.device_count():
        raise RepolmError(
            f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()} "
            "(start at most that many processes per node)"
        )
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto") -> DistributedInfo:
    """Join the run's process group if `torchrun` started this process; describe this process either way.

    `device_preference` is "auto" (CUDA when available, else CPU), "cpu" or "cuda". Under torchrun every
    process takes the GPU of its LOCAL_RANK; the rendezvous address comes from MASTER_ADDR and MASTER_PORT
    (torchrun sets them on every node). Calling it again in a process that has joined returns the same info.
    """
    rank, world_size, local_rank = (_environment_int(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if rank is None and world_size is None:  # a plain `python -m repolm ...`: one process, no group
        device = _pick_device(device_preference, local_rank=0)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistributedInfo(rank=0, world_size=1, local_rank=0, device=device, is_main=True)
    if rank is None or world_size is None:
        missing = "RANK" if rank is None else "WORLD_SIZE"
        raise RepolmError(f"environment variable {missing} is not set while the other is (launch with torchrun)")
    if rank >= world_size:
        raise RepolmError(f"environment variable RANK {rank} is not below WORLD_SIZE {world_size}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise RepolmError(f"environment variable {name} is not set (launch with torchrun)")
    local_rank = rank if local_rank is None else local_rank
    device = _pick_device(device_preference, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            # NCCL for the GPU tensors, gloo for CPU ones (metrics, consolidated state on rank 0)
            dist.init_process_group(backend="cpu:gloo,cuda:nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
        logger.info(
            "joined process group: rank %d of %d (local rank %d) on %s, backend %s",
            rank,
            world_size,
            local_rank,
            device,
            dist.get_backend(),
        )
    return DistributedInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def destroy_distributed() -> None:
    """Leave the process group, if this process joined one (call once at the end of a run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def parallelize(model: nn.Module, config: ParallelConfig, info: DistributedInfo) -> nn.Module:
    """Wrap a `repolm.model.Transformer` (already on `info.device`) for training as `config` says.

    Order as in torchtitan: activation checkpointing around each block, then `torch.compile` of each block,
    then the data-parallel wrapper, so that checkpointing and compilation act on unsharded blocks.
    With "ddp" the result is a `DistributedDataParallel` (use `unwrap_model` to reach the Transformer);
    otherwise it is `model` itself, changed in place. Every rank must hold the same initial weights (build
    with the same seed or load the same checkpoint); rank 0's are broadcast before sharding anyway.
    """
    distributed = dist.is_initialized()
    if config.mode == "none" and info.world_size > 1:
        raise RepolmError(f"parallel.mode is 'none' but {info.world_size} processes were started; use ddp or fsdp")
    if config.mode != "none" and not distributed:
        raise RepolmError(
            f"parallel.mode is {config.mode!r} but this process was not started by torchrun "
            "(RANK/WORLD_SIZE unset); launch with torchrun or set parallel.mode: none"
        )
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise RepolmError(f"parallelize expects a repolm Transformer with .layers; got {type(model).__name__}")

    if config.activation_checkpointing:
        for index, block in enumerate(layers):
            # no_reentrant checkpointing; the blocks draw no random numbers, so no RNG state is saved and restored
            layers.register_module(str(index), checkpoint_wrapper(block, preserve_rng_state=False))
    if config.compile:
        for index, block in enumerate(layers):
            layers.register_module(str(index), torch.compile(block, fullgraph=True))

    if config.mode == "ddp":
        model = DistributedDataParallel(
            model,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            broadcast_buffers=False,  # the only buffer is the RoPE table, computed identically on every rank
            gradient_as_bucket_view=True,
        )
    elif config.mode == "fsdp":
        _broadcast_from_rank0(model)
        if info.device.type == "cuda":
            precision = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        else:
            precision = MixedPrecisionPolicy()  # fp32 throughout: bf16 matmuls are very slow on CPUs
        for index, block in enumerate(layers):
            # the last block's parameters are needed again at once by the backward pass: keep them gathered
            fully_shard(block, mp_policy=precision, reshard_after_forward=index < len(layers) - 1)
        fully_shard(model, mp_policy=precision, reshard_after_forward=False)
    logger.info(
        "parallelized: mode %s, activation checkpointing %s, compile %s, %d process(es)",
        config.mode,
        config.activation_checkpointing,
        config.compile,
        info.world_size,
    )
    return model


@torch.no_grad()
def _broadcast_from_rank0(model: nn.Module) -> None:
    """Make every rank's parameters and buffers rank 0's (skipped for a model still on the meta device)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type != "meta":
            dist.broadcast(tensor, src=0)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The Transformer inside a `parallelize` result (reach `.config` and plain forward calls through it)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# Consolidated ("full") state: all shards gathered, CPU tensors, names as in the bare Transformer
# (DCP drops the "module.", "_orig_mod." and "_checkpoint_wrapped_module." parts of wrapped names).
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _scatter_options() -> StateDictOptions:
    # in a group, rank 0's full state is broadcast and each rank keeps its shard; other ranks may pass {}
    return StateDictOptions(full_state_dict=True, broadcast_from_rank0=dist.is_initialized())


def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights as CPU tensors with plain names, the same in every mode.

    In a process group every rank must call it (FSDP gathers shards); rank 0 gets the dict, the other
    ranks get an empty one (they do not need a second copy in CPU memory).
    """
    return get_model_state_dict(model, options=_GATHER)


def load_full_model_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a `full_model_state_dict` (from any mode) into `model` (any mode); every rank calls it.

    In a process group only rank 0's `state` is read (the other ranks may pass {}); missing or unexpected
    names raise. Non-persistent buffers (the RoPE table) are not part of the state and stay as they are.
    """
    set_model_state_dict(model, state, options=_scatter_options())


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state consolidated like `full_model_state_dict`: keyed by plain parameter names.

    {"state": {name: {"step", "exp_avg", ...}}, "param_groups": [{..., "params": [names]}]}. Every rank calls
    it; rank 0 gets the full state. An optimizer that has not stepped yet gives an empty "state" (and keeps
    none: DCP would otherwise create it with a zero-gradient step, which moves AdamW's step count to 1).
    """
    fresh = not optimizer.state
    state = get_optimizer_state_dict(model, optimizer, options=_GATHER)
    if fresh:
        optimizer.state.clear()
        state["state"] = {}
    return state


def load_full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a `full_optimizer_state_dict` (from any mode) into `optimizer` over `model` (any mode).

    Every rank calls it; in a process group rank 0's `state` is what counts. Hyperparameters of the param
    groups (lr, betas, weight decay...) are restored too.
    """
    has_state = bool(state.get("state")) if (not dist.is_initialized() or dist.get_rank() == 0) else False
    if dist.is_initialized():  # every rank must take the same branch
        flag = [has_state]
        dist.broadcast_object_list(flag, src=0)
        has_state = flag[0]
    if has_state:
        set_optimizer_state_dict(model, optimizer, state, options=_scatter_options())
        return
    # a checkpoint taken before the first step: restore the hyperparameters, keep no moments and no step count
    groups = state.get("param_groups") if (not dist.is_initialized() or dist.get_rank() == 0) else None
    if dist.is_initialized():
        box = [groups]
        dist.broadcast_object_list(box, src=0)
        groups = box[0]
    if groups is None or len(groups) != len(optimizer.param_groups):
        raise RepolmError("optimizer state: param_groups do not match this optimizer's")
    for saved, group in zip(groups, optimizer.param_groups, strict=True):
        group.update({key: value for key, value in saved.items() if key != "params"})
    optimizer.state.clear()


def sharded_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{"model": ..., "optimizer": ...} as each rank holds them, plain names: what `torch.distributed.checkpoint`
    saves shard by shard, and the structure it loads into (for loading, a fresh optimizer gets its state tensors
    created first, which `load_sharded_state_dict` then overwrites)."""
    return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}


def load_sharded_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Puts a `sharded_state_dict` that `torch.distributed.checkpoint` filled back into `model` and `optimizer`."""
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Context for the backward passes of the micro-steps before the last one of a gradient accumulation.

    DDP skips its all-reduce and FSDP2 its reduce-scatter inside it, so gradients are exchanged once per
    optimizer step, on the last micro-step's backward (run outside this context). A no-op without a wrapper.
    """
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if isinstance(model, FSDPModule):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model: FSDPModule) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def all_reduce_mean(value: float) -> float:
    """The mean of `value` over all processes (itself in a single process); every rank must call it."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return float(value)
    device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in str(dist.get_backend()) else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / dist.get_world_size()


__all__ = [
    "DistributedInfo",
    "ParallelConfig",
    "all_reduce_mean",
    "destroy_distributed",
    "full_model_state_dict",
    "full_optimizer_state_dict",
    "init_distributed",
    "load_full_model_state_dict",
    "load_full_optimizer_state_dict",
    "no_sync",
    "parallelize",
    "unwrap_model",
]
