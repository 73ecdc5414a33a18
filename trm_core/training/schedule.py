"""The learning-rate schedule and early stopping: small pure pieces the Trainer composes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from trm_core.events import EarlyStopEvent

__all__ = ["lr_at", "EarlyStopper"]


def lr_at(step: int, *, lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Learning rate for the optimizer step that follows `step` steps done: linear warmup, then cosine.

    A pure function of the step, so resuming needs nothing but the step count.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class EarlyStopper:
    """Patience-based early stopping on the validation loss, with an optional target.

    `update` returns the state the EarlyStopEvent reports: "improving" | "waiting" | "stopped" |
    "target-reached" | "disabled". The best loss is tracked even when disabled (it names `best`).
    """

    enabled: bool
    patience: int
    min_delta: float
    stop_below: float
    best_val_loss: float = math.inf
    best_step: int = 0
    evals_since_best: int = 0
    state: str = "waiting"

    def update(self, val_loss: float, step: int) -> tuple[str, bool]:
        """Record an evaluation; return (state, improved)."""
        improved = math.isfinite(val_loss) and val_loss < self.best_val_loss - self.min_delta
        if improved:
            self.best_val_loss, self.best_step, self.evals_since_best = val_loss, step, 0
        else:
            self.evals_since_best += 1
        if not self.enabled:
            self.state = "disabled"
        elif self.stop_below > 0 and math.isfinite(val_loss) and val_loss < self.stop_below:
            self.state = "target-reached"
        elif improved:
            self.state = "improving"
        elif self.evals_since_best >= self.patience:
            self.state = "stopped"
        else:
            self.state = "waiting"
        return self.state, improved

    def reopen(self, patience: int | None) -> None:
        """Continue past early stopping: the best so far is kept, the count of evaluations without
        improvement restarts, judged against `patience` (None or 0: nothing changes)."""
        if patience and patience > 0:
            self.patience, self.evals_since_best, self.state = patience, 0, "waiting"

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.state in ("stopped", "target-reached")

    @property
    def patience_left(self) -> int:
        return max(0, self.patience - self.evals_since_best)

    def event(self, step: int) -> EarlyStopEvent:
        """The status after the evaluation at `step`, as the event the trainer emits."""
        return EarlyStopEvent(
            step, self.state, self.best_val_loss, self.best_step, self.evals_since_best,
            self.patience, self.patience_left,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return d

    def load(self, d: dict[str, Any]) -> None:
        """Restore counters from a checkpoint; the thresholds stay those of the current profile."""
        best = d.get("best_val_loss")
        self.best_val_loss = math.inf if best is None else float(best)
        self.best_step = int(d.get("best_step", 0))
        self.evals_since_best = int(d.get("evals_since_best", 0))
        self.state = str(d.get("state", "waiting"))
        if self.state in ("stopped", "waiting", "improving") and self.enabled:
            # re-grade with the current patience (a user may have raised it to continue)
            self.state = "stopped" if self.evals_since_best >= self.patience else "waiting"
        if self.state == "target-reached" and not (
            self.enabled and self.stop_below > 0 and self.best_val_loss < self.stop_below
        ):
            self.state = "waiting"
