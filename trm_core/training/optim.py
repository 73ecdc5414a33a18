"""The Trainer's optimizer: AdamW built from the profile, and its saved state loaded back on resume.

Kept apart from the loop in `trainer.py`; the learning rate itself comes from `schedule.lr_at`
and is set on the param groups before every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trm_core.errors import CheckpointError

__all__ = ["build_optimizer", "load_optimizer_state"]


def build_optimizer(model: nn.Module, cfg: Any, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D weight matrices only (not embeddings, norms or biases)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():  # deduplicated: a tied embedding appears once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **extra)


def _state_fits(st: Any, p: torch.Tensor) -> bool:
    """AdamW's state of one parameter: nothing yet, or exp_avg / exp_avg_sq of its shape and a scalar step."""
    if not isinstance(st, dict):
        return False
    if not st:
        return True
    moments = [st.get(k) for k in ("exp_avg", "exp_avg_sq")]
    if not all(isinstance(m, torch.Tensor) and m.is_floating_point() and m.shape == p.shape for m in moments):
        return False
    step = st.get("step")
    return isinstance(step, torch.Tensor) and step.numel() == 1 or isinstance(step, int | float)


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, payload: dict[str, Any], cfg: Any, path: Path
) -> None:
    """Load optimizer.pt's `optimizer` entry (checkpoint `path`); the current profile's
    weight decay and betas (`cfg` = profile.train) replace the saved ones."""
    where = f"{path}/optimizer.pt"
    saved = payload.get("optimizer")
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointError(f"{where} is not a trm-tui optimizer state (no AdamW state and param groups)")
    try:
        optimizer.load_state_dict(saved)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError):
        raise CheckpointError(f"{where} does not match this model's parameters") from None
    # load_state_dict checks how many parameters there are, not their shapes: a foreign state
    # would load and then fail inside the first optimizer step
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not _state_fits(optimizer.state.get(p, {}), p):
                raise CheckpointError(f"{where} does not match this model's parameters (their shapes differ)")
    # the saved param groups carry the old hyper-parameters; the current profile wins
    for g, wd in zip(optimizer.param_groups, (cfg.weight_decay, 0.0), strict=False):
        g["weight_decay"], g["betas"] = wd, (cfg.beta1, cfg.beta2)
