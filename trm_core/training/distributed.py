"""Several processes under `torchrun`: process group setup, the DDP wrapper, and the few collectives
(and the rank-0-writes helper) the Trainer needs.

With WORLD_SIZE unset or 1 every helper is a no-op, so the single-process path has no branches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trm_core.errors import CheckpointError, UserError

__all__ = [
    "DistInfo",
    "setup",
    "teardown",
    "wrap_ddp",
    "all_reduce_sum",
    "any_flag",
    "barrier",
    "gather_to_rank0",
    "broadcast_from_rank0",
    "on_rank0",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str) -> DistInfo:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); no-op when alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_kind == "cuda":
        torch.cuda.set_device(local)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        created = True
    return DistInfo(rank, world, local, created)


def teardown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """The module the training forward runs through: DistributedDataParallel(model), or model alone."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    # every parameter gets a gradient in every backward (no_grad cycles only skip graph building);
    # ACT's Q-head and the LM head run on the forward's output, outside DDP's forward, and DDP's
    # per-parameter gradient hooks all-reduce their gradients all the same (tests/test_ddp_act.py)
    return DDP(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
    )


def all_reduce_sum(values: list[float], info: DistInfo, device: Any) -> list[float]:
    """Sum a few Python numbers over all ranks (one collective)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_flag(flag: bool, info: DistInfo, device: Any) -> bool:
    """True on every rank when any rank says True (a stop request seen by one rank stops all)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_to_rank0(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (None elsewhere); `[obj]` when alone."""
    if not info.enabled:
        return [obj]
    out: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_rank0(obj: Any, info: DistInfo) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank0(fn: Callable[[], Any], info: DistInfo) -> Any:
    """Run fn on rank 0; a UserError there is raised on every rank (nobody waits forever)."""
    result, err = None, None
    if info.is_main:
        try:
            result = fn()
        except UserError as e:
            err = str(e)
    err = broadcast_from_rank0(err, info)
    if err is not None:
        raise CheckpointError(err)
    return result
