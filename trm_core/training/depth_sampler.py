"""Training for depth: how many H-cycles each optimizer step runs (`train.depth_sampling`).

Why H-cycles: an H-cycle is the unit of recurrence that re-injects the input — every H-cycle runs
L-cycles of z_L = net(z_L + z_H + x) before z_H = net(z_H + z_L) — so a model trained over many
numbers of H-cycles learns a refinement it can repeat, and at test time more H-cycles are more of
the same computation (Huginn re-injects the input the same way in every recurrence). L-cycles stay
fixed: they are the inner loop between two injections, and sampling them too would only add noise.

- "fixed": model.H_cycles every step (today's training).
- "poisson-lognormal": Huginn's sampler (seal-rg/recurrent-pretraining `randomized_iteration_sampler`):
  r = 1 + Poisson(λ), λ ~ LogNormal(ln r̄ − σ²/2, σ) with r̄ = train.depth_mean (E[λ] = r̄), σ =
  train.depth_sigma; heavy-tailed, so the model also sees depths several times the mean.
- "uniform": r ~ U{depth_min..depth_max}.
Every draw is clipped to [train.depth_min, train.depth_max].

The draw for a batch is a function of (train.seed, the batch's first optimizer step) alone — its
own generator, never the global one — so an exact resume draws the same sequence without saving
anything, and turning sampling on changes no other random number (data order, dropout-free init).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from trm_core.model.depth import Depth

if TYPE_CHECKING:
    from trm_core.profile import ModelConfig, TrainConfig

__all__ = ["DepthSampler"]

_SALT = 514229  # Huginn's offset; any constant keeps the stream apart from the seed's other uses


class DepthSampler:
    """The H-cycles of each training step, from the profile's `train.depth_*` keys."""

    def __init__(self, train: TrainConfig, model_cfg: ModelConfig):
        self.kind: str = train.depth_sampling
        self.seed: int = int(train.seed)
        self.mean = float(train.depth_mean or model_cfg.H_cycles)
        self.sigma = float(train.depth_sigma)
        self.low, self.high = int(train.depth_min), int(train.depth_max)
        self.trained = Depth.trained(model_cfg)
        self.backprop: int = int(train.backprop_depth)
        self.noise: bool = model_cfg.init_state == "noise"

    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"

    def H_cycles(self, step: int) -> int:
        """The H-cycles of the batch whose first optimizer step is `step` (0-based)."""
        if self.fixed:
            assert self.trained.H_cycles is not None
            return self.trained.H_cycles
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + _SALT + int(step)) % (2**63 - 1))
        if self.kind == "uniform":
            r = int(torch.randint(self.low, self.high + 1, (1,), generator=g))
        else:
            mu = math.log(self.mean) - self.sigma**2 / 2
            rate = (
                torch.empty(1).log_normal_(mu, self.sigma, generator=g)
                if self.sigma > 0
                else torch.full((1,), self.mean)
            )
            r = 1 + int(torch.poisson(rate, generator=g))
        return min(max(r, self.low), self.high)

    def init_seeds(self, step: int, batch_size: int) -> torch.Tensor:
        """One noise-start seed per sequence of the batch whose first optimizer step is `step`
        (model.init_state = "noise"): a function of (train.seed, step, row), so resumes redraw it."""
        base = ((self.seed % 2**31) * 1_000_003 + 317811 + int(step)) % 2**40
        return base * 4096 + torch.arange(batch_size, dtype=torch.long)

    def depth(self, step: int) -> Depth | None:
        """The depth the training forward runs at `step`; None = the model's own (fixed sampling,
        so a fixed-depth run calls the model exactly as before)."""
        return None if self.fixed else self.trained.with_H(self.H_cycles(step))

    def forward_kw(self, step: int, batch_size: int, device: torch.device) -> dict[str, Any]:
        """How the batch whose first optimizer step is `step` runs (`supervision_step`'s keywords):
        its depth, the H-cycles with gradients (train.backprop_depth), its noise-start seeds. Each
        is None where the key is at its default, so the model runs exactly as before these keys."""
        seeds = self.init_seeds(step, batch_size).to(device) if self.noise else None
        return {"depth": self.depth(step), "grad_cycles": self.backprop or None, "init_seed": seeds}
