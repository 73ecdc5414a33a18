"""Exponential moving average of a model's weights (a full shadow module, so ties survive)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """ema = decay * ema + (1 - decay) * param after every optimizer step; buffers are copied."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        # deepcopy keeps tied parameters tied (its memo maps the shared tensor once)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """`step` = optimizer steps done; early on the decay is lowered so the EMA is not stuck at
        the initial weights (evaluation and early stopping read the EMA). A function of the step
        alone, so resume stays exact."""
        decay = min(self.decay, (1 + step) / (10 + step))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(sd, strict=True)
