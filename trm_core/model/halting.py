"""Per-token adaptive recursion (ACT): when a position stops thinking, and what it may attend to.

After every supervision step each position either halts (its output is that step's z_H; its
state is frozen from then on) or runs the next step. At step s a position attends only to the
positions still running at step s (and to itself), so a halted position never needs K/V for a
later step: in the KV-cached decoder its later steps are skipped, not merely masked. The
parallel forward applies the same per-step key masks, which is why cached decoding stays exact.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "halt_logit",
    "still_running",
    "keep_halted",
    "running_key_mask",
    "exploration_min_depth",
]


def halt_logit(threshold: float) -> float:
    """The q_halt logit above which a position halts: sigmoid(q) > threshold.

    threshold 0 halts every position after its first step, 1 never halts early.
    """
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold / (1.0 - threshold))


def still_running(
    step: int,
    steps: int,
    q_halt: Tensor,
    running: Tensor,
    *,
    threshold: float = 0.5,
    may_halt: Tensor | None = None,
    min_depth: Tensor | None = None,
    halt_steps: Tensor | None = None,
) -> Tensor:
    """The positions that run the step after 0-based `step` of `steps` ([B, T] bool): the policy
    every caller applies (training's `act_pass`, the parallel `infer_depth` and the KV-cached
    decoder alike). Every position still running halts after the last step. `halt_steps` [B, T]
    (depths 1..S) replaces the Q-head's decisions (tests replay a decoder's decisions with it);
    otherwise a position halts when q_halt > logit(threshold), it `may_halt` and it has run
    `min_depth` steps."""
    if step >= steps - 1:
        return torch.zeros_like(running)
    if halt_steps is not None:
        return running & (halt_steps != step + 1)
    halt = q_halt > halt_logit(threshold)
    if may_halt is not None:
        halt &= may_halt
    if min_depth is not None:
        halt &= min_depth <= step + 1
    return running & ~halt


def keep_halted(running: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """A state after a step: `new` where the position ran it, `old` (frozen) where it had halted."""
    return torch.where(running[..., None], new, old)


def running_key_mask(base: Tensor, running_keys: Tensor, diagonal: Tensor) -> Tensor:
    """Attention mask of one supervision step (True = attend): `base` (causal, padding) restricted
    to keys still running at this step, plus each query's own key so no softmax row is empty
    (a halted query's output is discarded anyway).

    base [B or 1, 1, n, L]; running_keys [B, L]; diagonal [n, L] -> [B, 1, n, L].
    """
    return base & (running_keys[:, None, None, :] | diagonal)


def exploration_min_depth(
    shape: torch.Size | tuple[int, ...], steps: int, probability: float, *, device: torch.device
) -> Tensor | None:
    """TRM's halting exploration, per token: with `probability` a position must run a random
    number of steps in [2, steps] before it may halt; otherwise 1 (no constraint). None when off."""
    if probability <= 0.0 or steps < 2:
        return None
    explore = torch.rand(shape, device=device) < probability
    depth = torch.randint(2, steps + 1, shape, device=device)
    return torch.where(explore, depth, torch.ones_like(depth))
