"""What a Trainer writes into a checkpoint and reads back to resume, and its validation pass.

Kept apart from the loop in `trainer.py`: the state.json fields, the random-number state in
optimizer.pt, the carry of a half-finished batch, and the validation loss / token accuracy.
Everything read back from a file is checked; a wrong type is a CheckpointError, never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trm_core.errors import CheckpointError
from trm_core.training import distributed as D
from trm_core.training.schedule import EarlyStopper
from trm_core.training.step import supervision_step

__all__ = [
    "Position",
    "TrainState",
    "carry_state",
    "carry_tensors",
    "CARRY_FIELDS",
    "checkpoint_state",
    "evaluate_sums",
    "rng_state",
    "set_rng_state",
    "validation_metrics",
]


@dataclass
class Position:
    """Where the next unit of work starts: epoch, batch within the epoch, supervision pass."""

    epoch: int = 0
    batch: int = 0
    pass_: int = 0


# --------------------------------------------------------------------------- random numbers


def rng_state() -> dict[str, Any]:
    # plain containers and tensors only, so torch.load(weights_only=True) can read it back
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], path: Path | None = None) -> None:
    """Restore what rng_state() saved; a damaged state → CheckpointError naming optimizer.pt."""
    try:
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "python" in state:
            version, internal, gauss = state["python"]
            random.setstate((int(version), tuple(int(x) for x in internal), gauss))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (TypeError, ValueError, RuntimeError):
        where = f"{path}/optimizer.pt" if path is not None else "the optimizer state"
        raise CheckpointError(f"{where} holds a random-number state this trm-tui cannot use") from None


# --------------------------------------------------------------------------- state.json


@dataclass
class TrainState:
    """Where a run stands, besides weights, optimizer and random numbers: the one object state.json
    saves (`checkpoint_state`) and a resume restores whole (`TrainState.restore`)."""

    stopper: EarlyStopper  # early stopping's counters, with the best validation loss and its step
    step: int = 0  # optimizer steps taken
    pos: Position = field(default_factory=Position)  # where the next unit of work starts
    carry: tuple[torch.Tensor | None, ...] | None = None  # this rank's carry of a half-finished batch
    last_eval_step: int = -1  # the step last evaluated (-1: none)
    saved_step: int = -1  # the step last checkpointed (-1: none)
    bad_steps: int = 0  # non-finite losses in a row
    elapsed_s: float = 0.0  # training time at the last save or restore

    def fields(self) -> dict[str, Any]:
        """Its state.json fields (the carry goes to carry.safetensors beside it)."""
        best = self.stopper.best_val_loss
        return {
            "epoch": self.pos.epoch,
            "batch_in_epoch": self.pos.batch,
            "pass_in_batch": self.pos.pass_,
            "early_stop": self.stopper.to_dict(),
            "best_val_loss": None if math.isinf(best) else best,
            "best_step": self.stopper.best_step,
            "last_eval_step": self.last_eval_step,
            "saved_step": self.saved_step,
            "bad_steps": self.bad_steps,
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], path: Path, stopper: EarlyStopper) -> TrainState:
        """The state a checkpoint's state.json holds (types checked; `stopper` loaded and kept);
        the carry is the caller's (carry.safetensors). A damaged field is a CheckpointError."""
        try:
            early_stop = state.get("early_stop", {})
            if not isinstance(early_stop, dict):
                raise TypeError
            stopper.load(early_stop)
            step = int(state["step"])
            return cls(
                stopper,
                step=step,
                pos=Position(
                    int(state.get("epoch", 0)),
                    int(state.get("batch_in_epoch", 0)),
                    int(state.get("pass_in_batch", 0)),
                ),
                last_eval_step=int(state.get("last_eval_step", -1)),
                saved_step=int(state.get("saved_step", step)),  # older checkpoints: their own step
                bad_steps=int(state.get("bad_steps", 0)),
                elapsed_s=float(state.get("elapsed_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            # hand-edited or damaged: a list or null where a number belongs
            raise CheckpointError(
                f"{path}/state.json is corrupted (a field holds a value of the wrong type)"
            ) from None


def checkpoint_state(
    train_state: TrainState,
    *,
    total_steps: int,
    world_size: int,
    profile: Any,
    vocab_size: int,
    has_ema: bool,
    has_carry: bool,
    reason: str,
) -> dict[str, Any]:
    """The trainer's fields of state.json (save_checkpoint adds format, version, step, time)."""
    return {
        **train_state.fields(),
        "total_steps": total_steps,
        "world_size": world_size,
        "tokenizer": profile.tokenizer.name,
        "vocab_size": vocab_size,
        "arch": profile.model.arch,
        "has_ema": has_ema,
        "has_carry": has_carry,
        "reason": reason,
    }


# --------------------------------------------------------------------------- the carry


CARRY_FIELDS = ("z_H", "z_L", "running", "min_depth")  # the last two under ACT only


def carry_tensors(carry: Any) -> tuple[torch.Tensor | None, ...]:
    """The tensors of a carry worth saving mid-batch: (z_H, z_L), plus ACT's halting state
    (`running`, exploration's `min_depth` or None) when there is one."""
    running = getattr(carry, "running", None)
    if running is None:
        return (carry.z_H, carry.z_L)
    return (carry.z_H, carry.z_L, running, getattr(carry, "min_depth", None))


def carry_state(carries: list[tuple[torch.Tensor | None, ...]] | None) -> dict[str, torch.Tensor] | None:
    """Every rank's carry of the half-finished batch as `rank{r}.z_H`, `rank{r}.z_L` (and under
    ACT `rank{r}.running`, `rank{r}.min_depth`) tensors."""
    if carries is None:
        return None
    out: dict[str, torch.Tensor] = {}
    for r, c in enumerate(carries):
        for name, tensor in zip(CARRY_FIELDS, c, strict=False):
            if tensor is not None:
                out[f"rank{r}.{name}"] = tensor
    return out


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def evaluate_sums(
    model: Any,
    batches: Iterable[Any],
    *,
    supervision_steps: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> tuple[float, float, float]:
    """(loss sum, correct tokens, supervised tokens) of `model` after S passes, on this rank's batches."""
    loss_sum = correct = count = 0.0
    for batch in batches:
        inp, lab = batch.input_ids.to(device), batch.labels.to(device)
        n = int((lab != -100).sum())
        if n == 0:
            continue
        r = supervision_step(model, inp, lab, S=supervision_steps, mode="eval", autocast=autocast)
        assert r.hidden is not None
        loss_sum += float(r.losses[-1]) * n
        with autocast():
            h = r.hidden.reshape(-1, r.hidden.shape[-1])
            y = lab.reshape(-1)
            keep = (y != -100).nonzero().squeeze(1)
            for i in range(0, keep.numel(), 1024):  # never the full [B*T, V] logits
                idx = keep[i : i + 1024]
                correct += float((model.logits(h[idx]).argmax(-1) == y[idx]).sum())
        count += n
    return loss_sum, correct, count


def validation_metrics(
    model: Any,
    batches: Iterable[Any],
    *,
    supervision_steps: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
    dist: D.DistInfo,
) -> tuple[float, float]:
    """Validation loss and token accuracy of `model` after S passes, over every rank's `batches`
    (NaN, NaN when they hold no supervised token)."""
    loss_sum, correct, count = evaluate_sums(
        model, batches, supervision_steps=supervision_steps, device=device, autocast=autocast
    )
    loss_sum, correct, count = D.all_reduce_sum([loss_sum, correct, count], dist, device)
    if count == 0:
        return math.nan, math.nan
    return loss_sum / count, correct / count
