"""The run-directory side of a Trainer: its lock, metrics.jsonl, profile.toml and checkpoints.

Kept apart from the loop in `trainer.py`: what a Trainer writes into `runs/<name>/` and reads back
from it — the lock, the event log (held back until the run may be written), the profile, a
training checkpoint (saved through `checkpoint.save_checkpoint`: atomic, with retention and
`best`), the resume from one, and the best weights brought back into memory at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from trm_core.atomic import write_text_atomic
from trm_core.errors import CheckpointError
from trm_core.events import Event
from trm_core.profile import Profile, ProfileError, diff, parse_profile
from trm_core.runs.checkpoint import save_checkpoint
from trm_core.runs.inference import load_into
from trm_core.runs.lock import acquire_lock
from trm_core.runs.read import has_checkpoint, load_training_state, resolve_checkpoint
from trm_core.training import distributed as D
from trm_core.training.distributed import DistInfo
from trm_core.training.ema import EMA
from trm_core.training.optim import load_optimizer_state
from trm_core.training.schedule import EarlyStopper
from trm_core.training.state import (
    CARRY_FIELDS,
    Position,
    TrainState,
    carry_state,
    checkpoint_state,
    rng_state,
    set_rng_state,
)

__all__ = ["MetricsLog", "RunFiles"]


# --------------------------------------------------------------------------- metrics.jsonl


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


class MetricsLog:
    """metrics.jsonl, appended one event per line and flushed.

    Events written before `open()` are held back (so that a refused resume writes nothing) and
    go first into the file when it opens; after `close()` nothing more reaches the file.
    """

    def __init__(self, path: Path, mirror: Any = None):
        self.path = path
        self.mirror = mirror  # another log of the same events (TensorBoardLog) or None
        self._file: TextIO | None = None
        self._pending: list[Event] = []

    def write(self, event: Event) -> None:
        if self._file is not None:
            self._file.write(event.to_json() + "\n")
            self._file.flush()
            if self.mirror is not None:
                self.mirror.write(event)
        else:
            self._pending.append(event)

    def open(self) -> None:
        path = self.path
        if self.mirror is not None:
            self.mirror.open()  # the package missing: one sentence, before metrics.jsonl is touched
        try:
            torn = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise CheckpointError(f"could not open {path}: {e.strerror}") from None
        if torn:  # a crash mid-line: end that line, or our first event would be glued onto it
            self._file.write("\n")
        for event in self._pending:
            self._file.write(event.to_json() + "\n")
        self._file.flush()
        if self.mirror is not None:
            self.mirror.write_all(self._pending)
        self._pending = []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.mirror is not None:
            self.mirror.close()


def tensorboard_log(path: Path, profile: Profile) -> Any:
    """The TensorBoard mirror of metrics.jsonl when the profile asks for one (train.tensorboard)."""
    if not profile.train.tensorboard:
        return None
    from trm_core.metrics.tensorboard import TB_DIR, TensorBoardLog

    return TensorBoardLog(path / TB_DIR)


# --------------------------------------------------------------------------- the run directory


def _refuse_non_finite(step: int, model: nn.Module, ema: EMA | None, last: Path | None) -> None:
    """CheckpointError when any weight of `model` (or the EMA) is NaN or inf: such a checkpoint
    would replace `latest` (and maybe `best`) with a model that can only produce garbage."""
    for name, module in (("weights", model), ("EMA weights", ema.module if ema is not None else None)):
        if module is None:
            continue
        bad = total = 0
        with torch.no_grad():
            for t in module.state_dict().values():
                if t.is_floating_point():
                    bad += int((~torch.isfinite(t)).sum())
                    total += t.numel()
        if bad:
            keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
            raise CheckpointError(
                f"training stopped at step {step}: {bad:,} of {total:,} {name} are not finite (NaN or inf), "
                f"so no checkpoint was saved; {keep}"
            )


class RunFiles:
    """A Trainer's hold on its run directory `path`, trained with `profile`.

    Rank 0 alone writes (callers route writes through `distributed.on_rank0`); every rank reads
    a checkpoint to resume. The layout and the atomic checkpoint write live in `runs/checkpoint.py`,
    what goes into state.json in `state.py`.
    """

    def __init__(self, path: Path, profile: Profile):
        self.path = path
        self.profile = profile
        # events before metrics.jsonl opens are held back there (a refused resume writes nothing)
        self.metrics = MetricsLog(path / "metrics.jsonl", mirror=tensorboard_log(path, profile))
        self._release_lock: Callable[[], None] | None = None

    def claim(self, log: Callable[[str], None]) -> None:
        """Create the run directory and take its `.lock` (see checkpoint.acquire_lock)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder belongs, no permission, a read-only disk
            raise CheckpointError(f"cannot create the run directory {self.path} ({e.strerror})") from None
        self._release_lock = acquire_lock(self.path, log=log)

    def write_profile(self) -> None:
        """The profile text as trained, replaced atomically as profile.toml."""
        path = self.path / "profile.toml"
        try:
            write_text_atomic(path, self.profile.to_toml(), fsync=False)  # checkpoints hold it too
        except OSError as e:
            raise CheckpointError(f"could not write {path}: {e.strerror}") from None

    def close(self) -> None:
        """Close metrics.jsonl and release the lock (if this process holds them)."""
        self.metrics.close()
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None

    def latest(self) -> Path | None:
        """The run's `latest` checkpoint, or None when it has none yet."""
        return resolve_checkpoint(self.path, "latest") if has_checkpoint(self.path) else None

    def save(
        self,
        train_state: TrainState,
        *,
        model: nn.Module,
        ema: EMA | None,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        vocab_size: int,
        dist: DistInfo,
        reason: str,
        is_best: bool,
    ) -> Path | None:
        """Write checkpoint `train_state.step`: weights, EMA, optimizer + scheduler + RNG, the whole
        `train_state` (state.json, every rank's carry gathered into carry.safetensors) and the
        profile text; atomic, keeping `train.keep_last`. Every rank calls it, rank 0 writes (its
        path; None elsewhere). Weights that are not all finite are never written: CheckpointError."""
        mine = train_state.carry
        carries = D.gather_to_rank0(
            None if mine is None else tuple(None if x is None else x.cpu() for x in mine), dist
        )
        carry = carry_state(carries if mine is not None else None)
        state = checkpoint_state(
            train_state, total_steps=total_steps, world_size=dist.world_size, profile=self.profile,
            vocab_size=vocab_size, has_ema=ema is not None, has_carry=carry is not None, reason=reason,
        )  # fmt: skip
        step = train_state.step

        def write() -> Path:
            _refuse_non_finite(step, model, ema, self.latest())
            return save_checkpoint(
                self.path,
                step,
                model_state=model.state_dict(),
                ema_state=ema.state_dict() if ema is not None else None,
                optimizer_payload={
                    "optimizer": optimizer.state_dict(),
                    "scheduler": {"step": step, "total_steps": total_steps},
                    "rng": rng_state(),
                },
                state=state,
                profile_text=self.profile.to_toml(),
                is_best=is_best,
                keep_last=self.profile.train.keep_last,
                carry_state=carry,
            )

        return D.on_rank0(write, dist)

    def resume(
        self,
        *,
        allowed: bool,
        model: nn.Module,
        ema: EMA | None,
        optimizer: torch.optim.Optimizer,
        stopper: EarlyStopper,
        dist: DistInfo,
        log: Callable[[str, str], None],
    ) -> TrainState | None:
        """Load everything needed to continue exactly from the run's `latest` checkpoint (every rank
        reads it) into model, EMA, optimizer, the RNGs and `stopper`'s counters; `log(message, level)`.

        None when the run holds no checkpoint; a CheckpointError when it does and resuming is not
        `allowed`, or when its checkpoint cannot be resumed (nothing has been written by then).
        """
        run_dir, profile = self.path, self.profile
        if not has_checkpoint(run_dir):
            return None
        if not allowed:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints; resume it or train into a fresh run directory"
            )
        path = resolve_checkpoint(run_dir, "latest")
        state = load_training_state(path, "cpu")
        try:
            saved = parse_profile(state.profile_text, str(path / "profile.toml"), saved=True)
        except ProfileError as e:
            raise CheckpointError(f"{path}/profile.toml is not a valid profile: {e.problems[0]}") from None
        bad = [m for m in diff(saved, profile) if m.severity == "incompatible"]
        if bad:
            what = ", ".join(f"{m.key} ({m.saved!r} -> {m.current!r})" for m in bad)
            raise CheckpointError(
                f"cannot resume {run_dir}: {what} changed since the checkpoint, so its weights "
                "cannot be loaded; train into a fresh run directory"
            )
        load_into(model, state.model, path / "model.safetensors")
        if ema is not None:
            if state.ema is not None:
                load_into(ema.module, state.ema, path / "ema.safetensors")
            else:
                ema.module.load_state_dict(model.state_dict())
                log("the checkpoint has no EMA weights; the EMA starts from the current weights", "info")
        load_optimizer_state(optimizer, state.optimizer, profile.train, path)
        set_rng_state(state.optimizer.get("rng", {}), path)
        point = TrainState.restore(state.state, path, stopper)
        pos = point.pos
        if pos.pass_ > 0:
            key = f"rank{dist.rank}."
            try:
                same_world = int(state.state.get("world_size", 1)) == dist.world_size
            except (TypeError, ValueError):
                raise CheckpointError(
                    f"{path}/state.json is corrupted (world_size is not a number)"
                ) from None
            if state.carry is not None and f"{key}z_H" in state.carry and same_world:
                point.carry = tuple(state.carry.get(f"{key}{name}") for name in CARRY_FIELDS)
            else:
                log("the interrupted batch's carry cannot be restored here; that batch is skipped", "warning")
                point.pos = Position(pos.epoch, pos.batch + 1, 0)
        log(f"resumed from {path} (step {point.step})", "info")
        return point

    def restore_best(
        self,
        *,
        stopper: EarlyStopper,
        step: int,
        model: nn.Module,
        ema: EMA | None,
        log: Callable[[str, str], None],
    ) -> None:
        """Load the best checkpoint's weights into the in-memory model (and EMA); files stay as written."""
        best = stopper.best_step
        if best <= 0 or best == step:
            return
        try:
            path = resolve_checkpoint(self.path, "best")
        except CheckpointError:
            return
        state = load_training_state(path, "cpu")
        load_into(model, state.model, path / "model.safetensors")
        if ema is not None and state.ema is not None:
            load_into(ema.module, state.ema, path / "ema.safetensors")
        log(
            f"restored the best weights (step {best}, val loss {stopper.best_val_loss:.4f}) "
            f"into memory; `best` points at {path.name}",
            "info",
        )
