"""One supervision step: the S passes of one batch, each from the previous pass's carry.

The one place that runs supervision passes; the Trainer, the bench's train section and
validation all call `supervision_step`. Three modes:

- `deep`: every pass is backpropagated on its own and handed to `after_pass`, which takes the
  optimizer step (the paper's way); the carry is always detached between passes, since an
  optimizer step separates them.
- `accumulate`: the losses of the S passes are summed and backpropagated once; the caller takes
  one optimizer step afterwards. `detach_carry = False` lets gradients flow through the carry.
- `eval`: no gradients; the loss of the last pass only (what validation reports).

How a pass is run is passed in, not fixed here: `forward` (the model, or its DDP / compiled
wrapper), `autocast` (a context factory, e.g. bf16) and `loss_fn` (the chunked LM loss by default).
With `model.halting = "act"` each pass is `act.act_pass` (per token: the LM loss over the
positions still running, the halting loss, the model's halting decisions carried to the next pass;
`halt_exploration` is TRM's exploration); the losses reported are the LM losses, and validation's
is that of every position's output from the step where it halted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from trm_core.model.depth import Depth
from trm_core.training.act import act_pass

__all__ = ["Pass", "StepResult", "pass_loss", "supervision_step"]

Mode = Literal["deep", "accumulate", "eval"]


@dataclass
class Pass:
    """One finished supervision pass, as `after_pass` sees it (deep mode: gradients are in place)."""

    index: int  # 0-based pass within the batch
    loss: Tensor  # detached, fp32
    carry: Any  # the carry the next pass starts from (None for a model without one)


@dataclass
class StepResult:
    losses: list[Tensor] = field(default_factory=list)  # detached, one per pass run (eval: the last)
    total: Tensor | None = None  # accumulate: the detached sum of the pass losses
    hidden: Tensor | None = None  # the last pass's hidden states [B, T, D]
    carry: Any = None  # the last pass's carry


def pass_loss(
    model: Any, forward: Callable[..., tuple[Tensor, Any]], input_ids: Tensor, labels: Tensor
) -> Tensor:
    """The training loss of one pass from no carry (compile's warm-up): the LM loss, and under ACT
    also the halting loss, so that every parameter gets a gradient. DDP (`find_unused_parameters`
    off) needs that in every backward, and the Q-head runs outside the DDP-wrapped `forward`."""
    if getattr(model, "q_head", None) is not None:
        return act_pass(model, input_ids, labels, None, 0, 1, forward=forward).loss
    return model.loss(forward(input_ids)[0], labels)


def supervision_step(
    model: Any,
    input_ids: Tensor,
    labels: Tensor,
    carry: Any = None,
    *,
    S: int,
    mode: Mode,
    detach_carry: bool = True,
    start_pass: int = 0,
    forward: Callable[..., tuple[Tensor, Any]] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    after_pass: Callable[[Pass], None] | None = None,
    halt_exploration: float = 0.0,
    depth: Depth | None = None,
    grad_cycles: int | None = None,
    init_seed: Tensor | None = None,
) -> StepResult:
    """Run passes `start_pass..S-1` of one batch from `carry`; see the module docstring for `mode`.

    `S` is the effective number of passes (`ModelConfig.supervision_passes`). `forward(input_ids,
    carry, detach_carry=..., depth=..., grad_cycles=..., init_seed=...)` defaults to `model`; `loss_fn(hidden,
    labels)` to `model.loss`. `depth` (the H/L of every pass; the model's trained depth when None)
    and `grad_cycles` (the last H-cycles with gradients; model.grad_cycles when None) are what a
    sampled training depth changes; `init_seed` [B] seeds each sequence's noise start
    (model.init_state = "noise"). In deep mode `after_pass` is called after each pass's backward
    (it may raise to stop).
    """
    fwd = model if forward is None else forward
    loss_of = model.loss if loss_fn is None else loss_fn
    detach = True if mode != "accumulate" else detach_carry
    train = mode != "eval"
    result = StepResult()
    total: Tensor | None = None
    hidden: Tensor | None = None
    act = getattr(model, "q_head", None) is not None
    how = {"depth": depth, "grad_cycles": grad_cycles, "init_seed": init_seed}  # forward's keywords
    with torch.no_grad() if not train else contextlib.nullcontext():
        for index in range(start_pass, S):
            with autocast():
                if act:  # the halting policy (halting.still_running) decides who runs the next pass
                    p = act_pass(
                        model, input_ids, labels, carry, index, S, forward=fwd, loss_fn=loss_of,
                        detach_carry=detach, exploration=halt_exploration if train else 0.0,
                        train=train, forward_kw=how,
                    )  # fmt: skip
                    hidden, carry, loss, reported = p.hidden, p.carry, p.loss, p.lm_loss
                else:
                    hidden, carry = fwd(input_ids, carry, detach_carry=detach, **how)
                    if train:
                        loss = loss_of(hidden, labels)
                        reported = loss.detach()
                if not train:
                    if index < S - 1:
                        continue  # validation reports the last pass only:
                    loss = loss_of(hidden, labels)  # each position's output from its halting step
                    reported = loss.detach()
            result.losses.append(reported.float())
            if mode == "deep":
                loss.backward()
                if after_pass is not None:
                    after_pass(Pass(index, result.losses[-1], carry))
            elif mode == "accumulate":
                total = loss if total is None else total + loss
    if total is not None:
        total.backward()
        result.total = total.detach().float()
    result.hidden, result.carry = hidden, carry
    return result
