"""The optimizer update of one step: clip, the finite check, the scheduled learning rate, the step.

The loss and the gradient norm stay on the device: every host read waits for the GPU to drain.
One scalar, "both finite", is read per step (the skip decision); the numbers themselves only on
logging steps and bad steps (the caller reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from trm_core.training import distributed as D
from trm_core.training.schedule import lr_at

__all__ = ["Checked", "apply_update", "clip_and_check"]


@dataclass
class Checked:
    loss: Tensor  # averaged over ranks, on the device
    grad_norm: Tensor  # before clipping, on the device
    tokens: float  # summed over ranks
    finite: bool  # loss and gradient norm both finite: the update may be applied


def clip_and_check(
    model: nn.Module, loss: Tensor, tokens: float, *, grad_clip: float, dist: D.DistInfo
) -> Checked:
    """Clip the gradients (grad_clip <= 0: measure only), combine ranks' loss and tokens, check finiteness."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    if dist.enabled:  # one collective, one read: summed loss, tokens (and a NaN anywhere)
        summed = torch.stack([loss.double(), loss.new_tensor(tokens, dtype=torch.float64)])
        torch.distributed.all_reduce(summed)
        loss, tokens = summed[0] / dist.world_size, float(summed[1])
    return Checked(loss, grad_norm, tokens, bool(torch.isfinite(loss) & torch.isfinite(grad_norm)))


def apply_update(optimizer: torch.optim.Optimizer, train: Any, *, step: int, total_steps: int) -> float:
    """Step `optimizer` at the scheduled learning rate of `step` (0-based); returns that rate."""
    lr = lr_at(
        step,
        lr=train.lr,
        warmup_steps=train.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=train.min_lr_ratio,
    )
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return lr
