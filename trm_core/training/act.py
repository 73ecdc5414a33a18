"""One supervision pass of an ACT model (`model.halting = "act"`): LM loss, halting loss, decisions.

Per position and per pass: a position still running computes this pass; its LM loss is taken
over the positions running at this pass (deep supervision: one optimizer step per pass;
accumulate: the passes' losses summed), so a position's last LM loss is the one of the pass where
it halts. The Q-head learns, per token, whether the prediction is already right (binary
cross-entropy against argmax == label, TRM's target made per token). Then the model's own
decision, as at inference (sigmoid(q_halt) > 0.5), plus exploration (a random minimum depth per
token), says which positions run the next pass.

Positions without a label (the prompt under `data.loss_on = "answer"`, and padding) never halt
early: they run every pass, at training and in the decoder's prefill alike, so a prompt costs
and sees what it would in a fixed-depth model of depth S. Under `loss_on = "all"` every real
position is labelled and may halt (the generator then lets prompt positions halt too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trm_core.model.halting import exploration_min_depth, still_running
from trm_core.model.lm import IGNORE_INDEX, Carry

__all__ = ["ActCarry", "ActPass", "act_pass", "predictions_right", "HALT_LOSS_WEIGHT"]

HALT_LOSS_WEIGHT = 0.5  # the official TRM weighs its Q-losses by 0.5 against the LM loss


@dataclass
class ActCarry(Carry):
    """The model's carry plus exploration's minimum depths, kept from pass to pass of a batch."""

    min_depth: Tensor | None = None  # [B, T] long, or None without exploration


@dataclass
class ActPass:
    loss: Tensor  # what backward() takes: LM loss + HALT_LOSS_WEIGHT * halting loss
    lm_loss: Tensor  # detached, over the positions that ran this pass
    halt_loss: Tensor  # detached
    hidden: Tensor  # [B, T, D]: each position's z_H, frozen from the step where it halted
    carry: ActCarry
    ran: Tensor  # labelled positions that ran this pass (a 0-d tensor)


@torch.no_grad()
def predictions_right(model, hidden: Tensor, labels: Tensor, *, chunk_size: int = 1024) -> Tensor:
    """[B, T] bool: argmax of the logits equals the label (False where there is no label); in
    chunks, so the full [B*T, V] logits never exist."""
    h = hidden.reshape(-1, hidden.shape[-1])
    y = labels.reshape(-1)
    right = torch.zeros_like(y, dtype=torch.bool)
    keep = (y != IGNORE_INDEX).nonzero().squeeze(1)
    for i in range(0, keep.numel(), chunk_size):
        idx = keep[i : i + chunk_size]
        right[idx] = model.logits(h[idx]).argmax(-1) == y[idx]
    return right.view_as(labels)


def act_pass(
    model,
    input_ids: Tensor,
    labels: Tensor,
    carry: Carry | None,
    step: int,
    steps: int,
    *,
    exploration: float = 0.0,
    detach_carry: bool = True,
    forward=None,
    loss_fn=None,
    train: bool = True,
    forward_kw: dict[str, Any] | None = None,
) -> ActPass:
    """Supervision pass `step` (0-based) of `steps` for an ACT model. `forward` runs the model (a
    DDP or compiled wrapper; the model itself when None), `loss_fn(hidden, labels)` is the LM loss
    (`model.loss` when None). `train` False (validation): decisions only, no losses. `forward_kw`
    (depth, grad_cycles, init_seed: a sampled training depth) go to `forward`. Who runs
    the next pass is `halting.still_running`, the policy the decoders apply too."""
    forward = model if forward is None else forward
    loss_fn = model.loss if loss_fn is None else loss_fn
    B, T = input_ids.shape
    supervised = labels != IGNORE_INDEX
    if carry is None or carry.running is None:
        running = torch.ones(B, T, dtype=torch.bool, device=input_ids.device)
        min_depth = exploration_min_depth((B, T), steps, exploration, device=input_ids.device)
    else:
        running = carry.running
        min_depth = carry.min_depth if isinstance(carry, ActCarry) else None
    hidden, new = forward(input_ids, carry, detach_carry=detach_carry, **(forward_kw or {}))
    q = model.q_halt(hidden)
    nxt = still_running(step, steps, q.detach(), running, may_halt=supervised, min_depth=min_depth)
    out = ActCarry(new.z_H, new.z_L, nxt, min_depth)
    if not train:
        zero = q.new_zeros(())
        return ActPass(zero, zero, zero, hidden, out, zero)
    lm_loss = loss_fn(hidden, labels.masked_fill(~running, IGNORE_INDEX))
    judged = running & supervised
    right = predictions_right(model, hidden, labels)
    bce = F.binary_cross_entropy_with_logits(q, right.float(), reduction="none")
    ran = judged.sum()  # a tensor: no host read per pass
    halt_loss = (bce * judged).sum() / ran.clamp_min(1)  # 0 (with a grad_fn) when nothing ran
    loss = lm_loss + HALT_LOSS_WEIGHT * halt_loss
    return ActPass(loss, lm_loss.detach(), halt_loss.detach(), hidden, out, ran)
