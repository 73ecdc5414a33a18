"""The training engine: one `Trainer` per run directory, driven by a profile, reporting through events.

A "step" is one optimizer step. With `supervision = "deep"` every supervision pass over a batch
is a step (S steps per batch, the carry handed from pass to pass); with `"accumulate"` the losses
of the S passes are summed and one step is taken per batch. The Trainer owns the run directory
while it runs (`.lock`), appends every event to `metrics.jsonl`, checkpoints atomically, and can
continue a run exactly where a checkpoint left off (model, EMA, optimizer, RNG, data position,
the carry of a half-finished batch, early-stopping counters).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed as D
from .checkpoint import resolve_device
from .ema import EMA
from .errors import CheckpointError, DataError, UserError
from .events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EvalEvent,
    Event,
    LogEvent,
    StartEvent,
    StepEvent,
)
from .profile import Profile, ProfileError, diff, parse_profile
from .schedule import EarlyStopper, lr_at
from .trainer_state import (
    Position,
    carry_state,
    checkpoint_state,
    evaluate_sums,
    resume_point,
    rng_state,
    set_rng_state,
)

__all__ = ["Trainer", "build_optimizer", "resolve_device"]


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


class _Finish(Exception):
    """Internal: leave the loop with a DoneEvent reason."""

    def __init__(self, reason: str, message: str = ""):
        self.reason, self.message = reason, message


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


class Trainer:
    """Trains `profile` into `run_dir`; `run()` blocks, `request_stop()` may come from any thread."""

    def __init__(
        self,
        profile: Profile,
        run_dir: str | Path,
        *,
        on_event: Callable[[Event], None] | None = None,
        resume: bool = True,
        device: str | None = None,
        max_steps: int | None = None,
    ):
        self.profile = profile
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self.resume = resume
        self.device_request = device or profile.train.device
        self.max_steps_override = max_steps if max_steps and max_steps > 0 else None
        self._stop = threading.Event()
        self.step = 0
        self.total_steps = 0
        self.model: nn.Module | None = None
        self.ema: EMA | None = None
        self.stopper = EarlyStopper(
            profile.early_stopping.enabled,
            profile.early_stopping.patience,
            profile.early_stopping.min_delta,
            profile.early_stopping.stop_below,
        )
        self.dist = D.DistInfo()
        self._metrics: Any = None
        # events before metrics.jsonl opens (held back so that a refused resume writes nothing)
        self._pending: list[Event] = []
        self._release_lock: Callable[[], None] | None = None

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> DoneEvent:
        try:
            done = self._run()
        except UserError as e:
            self._emit(LogEvent(str(e), level="error"))
            done = DoneEvent("error", self.step, str(e), best_val_loss=self._best())
            self._emit(done)
        finally:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            if self._release_lock is not None:
                self._release_lock()
                self._release_lock = None
            D.teardown(self.dist)
        return done

    # ------------------------------------------------------------------ events

    def _best(self) -> float | None:
        b = self.stopper.best_val_loss
        return None if math.isinf(b) else b

    def _emit(self, event: Event) -> None:
        if not self.dist.is_main:
            return
        if self._metrics is not None:
            self._metrics.write(event.to_json() + "\n")
            self._metrics.flush()
        else:
            self._pending.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _log(self, message: str, level: str = "info") -> None:
        self._emit(LogEvent(message, level=level))

    def _on_rank0(self, fn: Callable[[], Any]) -> Any:
        """Run fn on rank 0; a UserError there is raised on every rank (nobody waits forever)."""
        result, err = None, None
        if self.dist.is_main:
            try:
                result = fn()
            except UserError as e:
                err = str(e)
        err = D.broadcast_from_rank0(err, self.dist)
        if err is not None:
            raise CheckpointError(err)
        return result

    # ------------------------------------------------------------------ setup

    def _run(self) -> DoneEvent:
        from .data import build_datasets, iterate_batches, num_batches
        from .model import build_model
        from .tokenizer import build_tokenizer

        p, t = self.profile, self.profile.train
        dev = resolve_device(self.device_request)
        self.dist = D.setup(dev.type)
        if self.dist.enabled and dev.type == "cuda":
            dev = torch.device("cuda", self.dist.local_rank)
        self.device = dev
        self._iterate_batches = iterate_batches
        if dev.type == "cuda":
            torch.set_float32_matmul_precision("high")
        random.seed(t.seed)
        torch.manual_seed(t.seed)

        # Data and tokenizer first: a missing dataset must fail before the run dir exists.
        self.tokenizer = build_tokenizer(p.tokenizer.name)
        self.train_ds, self.val_ds = build_datasets(p, self.tokenizer)
        world = self.dist.world_size
        self.batches_per_epoch = num_batches(self.train_ds, t.batch_size, world)
        if self.batches_per_epoch <= 0:
            raise DataError(
                f"{len(self.train_ds)} training examples are too few for one batch of {t.batch_size}"
                + (f" on each of {world} processes" if world > 1 else "")
            )

        torch.manual_seed(t.seed)  # the initial weights depend on the seed alone
        model = build_model(p.model, self.tokenizer.vocab_size).to(dev)
        self.model = model
        self.S = t.supervision_steps if getattr(model, "uses_carry", True) else 1
        self.deep = t.supervision == "deep"
        per_batch = self.S if self.deep else 1
        self.total_steps = (
            self.max_steps_override or t.max_steps or self.batches_per_epoch * t.epochs * per_batch
        )
        self.ema = EMA(model, t.ema_decay) if t.ema else None
        self.optimizer = build_optimizer(model, t, dev)
        self.precision = {"auto": "bf16" if dev.type == "cuda" else "fp32"}.get(t.precision, t.precision)

        pending_logs: list[str] = []

        def claim_run_dir() -> None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._release_lock = ckpt.acquire_lock(self.run_dir, log=pending_logs.append)

        self._on_rank0(claim_run_dir)
        for msg in pending_logs:
            self._log(msg, "warning")

        self.pos, self._carry0, resumed, self._elapsed0 = Position(), None, False, 0.0
        self._last_eval_step, self._saved_step = -1, -1
        if ckpt.has_checkpoint(self.run_dir):
            if not self.resume:
                raise CheckpointError(
                    f"{self.run_dir} already holds checkpoints; resume it or train into a fresh run directory"
                )
            self._restore(ckpt.resolve_checkpoint(self.run_dir, "latest"))
            resumed = True
        D.barrier(self.dist)
        # Only now is anything written: a checkpoint that cannot be resumed leaves the run as it was.
        self._on_rank0(self._open_metrics)
        self._on_rank0(self._write_profile)

        if self.deep and self.S > 1 and not t.detach_carry:
            self._log(
                "train.detach_carry = false has no effect with supervision = 'deep': each pass ends "
                "in an optimizer step, so gradients cannot flow into the previous pass",
                "warning",
            )
        if (t.compile == "on") or (t.compile == "auto" and dev.type == "cuda"):
            model.compile_regions()  # regional: one compiled block reused by every recursion
            if self.ema is not None:
                self.ema.module.compile_regions()
        self.fwd: nn.Module = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # every parameter gets a gradient each step (no_grad cycles only skip graph building)
            self.fwd = DDP(
                model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=False
            )

        params = sum(q.numel() for q in model.parameters())
        self._emit(
            StartEvent(str(self.run_dir), p.name, self.step, self.total_steps, resumed, str(dev), params)
        )
        if len(self.val_ds) == 0:
            self._log(
                "no validation slice (data.val_size = 0): no evaluation and no early stopping", "warning"
            )
        elif not resumed:
            # where the curve starts: the untrained model's validation loss (not judged by early
            # stopping, and it draws no random numbers, so the run is the same with or without it)
            val_loss, acc = self._evaluate()
            self._emit(EvalEvent(0, val_loss, acc))
        return self._loop()

    def _open_metrics(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        try:
            torn = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise CheckpointError(f"could not open {path}: {e.strerror}") from None
        if torn:  # a crash mid-line: end that line, or our first event would be glued onto it
            self._metrics.write("\n")
        for event in self._pending:
            self._metrics.write(event.to_json() + "\n")
        self._metrics.flush()
        self._pending = []

    def _write_profile(self) -> None:
        path = self.run_dir / "profile.toml"
        tmp = path.with_name(".profile.toml.tmp")
        try:
            tmp.write_text(self.profile.to_toml(), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as e:
            raise CheckpointError(f"could not write {path}: {e.strerror}") from None

    def _restore(self, path: Path) -> None:
        """Load everything needed to continue exactly from checkpoint `path` (every rank reads it)."""
        assert self.model is not None
        state = ckpt.load_training_state(path, "cpu")
        try:
            saved = parse_profile(state.profile_text, str(path / "profile.toml"))
        except ProfileError as e:
            raise CheckpointError(f"{path}/profile.toml is not a valid profile: {e.problems[0]}") from None
        bad = [m for m in diff(saved, self.profile) if m.severity == "incompatible"]
        if bad:
            what = ", ".join(f"{m.key} ({m.saved!r} -> {m.current!r})" for m in bad)
            raise CheckpointError(
                f"cannot resume {self.run_dir}: {what} changed since the checkpoint, so its weights "
                "cannot be loaded; train into a fresh run directory"
            )
        ckpt.load_into(self.model, state.model, path / "model.safetensors")
        if self.ema is not None:
            if state.ema is not None:
                ckpt.load_into(self.ema.module, state.ema, path / "ema.safetensors")
            else:
                self.ema.module.load_state_dict(self.model.state_dict())
                self._log("the checkpoint has no EMA weights; the EMA starts from the current weights")
        try:
            self.optimizer.load_state_dict(state.optimizer["optimizer"])
        except (KeyError, ValueError, RuntimeError):
            raise CheckpointError(f"{path}/optimizer.pt does not match this model's parameters") from None
        t = self.profile.train
        # the saved param groups carry the old hyper-parameters; the current profile wins
        for g, wd in zip(self.optimizer.param_groups, (t.weight_decay, 0.0), strict=False):
            g["weight_decay"], g["betas"] = wd, (t.beta1, t.beta2)
        set_rng_state(state.optimizer.get("rng", {}), path)
        point = resume_point(state.state, path, self.stopper)
        self.step, self.pos = point.step, point.pos
        self._last_eval_step, self._elapsed0 = point.last_eval_step, point.elapsed_s
        self._saved_step = self.step
        if self.pos.pass_ > 0:
            key = f"rank{self.dist.rank}."
            if (
                state.carry is not None
                and f"{key}z_H" in state.carry
                and point.world_size == self.dist.world_size
            ):
                self._carry0 = (state.carry[f"{key}z_H"], state.carry[f"{key}z_L"])
            else:
                self._log(
                    "the interrupted batch's carry cannot be restored here; that batch is skipped", "warning"
                )
                self.pos = Position(self.pos.epoch, self.pos.batch + 1, 0)
        self._log(f"resumed from {path} (step {self.step})")

    # ------------------------------------------------------------------ the loop

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batches(self) -> Iterator[tuple[int, int, Any]]:
        t, nb = self.profile.train, self.batches_per_epoch
        epoch, start = self.pos.epoch, self.pos.batch
        while True:
            if start < nb:
                it = self._iterate_batches(
                    self.train_ds, t.batch_size, seed=t.seed, epoch=epoch,
                    rank=self.dist.rank, world_size=self.dist.world_size, start_batch=start,
                )  # fmt: skip
                for i, batch in enumerate(it, start=start):
                    if i >= nb:  # every rank takes the same number of batches (DDP needs it)
                        break
                    yield epoch, i, batch
            epoch, start = epoch + 1, 0

    def _next_pos(self, epoch: int, batch: int, pass_: int) -> Position:
        if self.deep and pass_ + 1 < self.S:
            return Position(epoch, batch, pass_ + 1)
        if batch + 1 < self.batches_per_epoch:
            return Position(epoch, batch + 1, 0)
        return Position(epoch + 1, 0, 0)

    def _loop(self) -> DoneEvent:
        t = self.profile.train
        model = self.model
        assert model is not None
        model.train()
        self._t_start = time.perf_counter()
        self._t_last = self._t_start
        self._window: deque[tuple[float, float]] = deque(maxlen=20)
        self._bad = 0
        self._carry_now: tuple[torch.Tensor, torch.Tensor] | None = None
        reason, message = "finished", ""
        try:
            if self.stopper.should_stop:
                raise _Finish(
                    "early-stopped", f"this run already stopped early (best at step {self.stopper.best_step})"
                )
            if self.step >= self.total_steps:
                raise _Finish("finished")
            first = True
            for epoch, b, batch in self._batches():
                inp = batch.input_ids.to(self.device, non_blocking=True)
                lab = batch.labels.to(self.device, non_blocking=True)
                tokens = float(batch.num_tokens)
                carry = None
                start_pass = 0
                if first and self.pos.pass_ > 0 and self._carry0 is not None:
                    from .model import Carry

                    start_pass = self.pos.pass_
                    carry = Carry(self._carry0[0].to(self.device), self._carry0[1].to(self.device))
                first = False
                if self.deep:
                    for s in range(start_pass, self.S):
                        with self._autocast():
                            hidden, carry = self.fwd(inp, carry, detach_carry=True)
                            loss = model.loss(hidden, lab)
                        loss.backward()
                        nxt = self._next_pos(epoch, b, s)
                        self._carry_now = (
                            (carry.z_H, carry.z_L) if (carry is not None and nxt.pass_ > 0) else None
                        )
                        self._finish_step(loss.detach().float(), tokens, epoch, nxt)
                else:
                    total = None
                    for _ in range(self.S):
                        with self._autocast():
                            hidden, carry = self.fwd(inp, carry, detach_carry=t.detach_carry)
                            loss = model.loss(hidden, lab)
                        total = loss if total is None else total + loss
                    assert total is not None
                    total.backward()
                    self._carry_now = None
                    self._finish_step(
                        total.detach().float() / self.S, tokens * self.S, epoch, self._next_pos(epoch, b, 0)
                    )
        except _Finish as f:
            reason, message = f.reason, f.message
        return self._end(reason, message)

    def _finish_step(self, loss_t: torch.Tensor, tokens: float, epoch: int, nxt: Position) -> None:
        """Clip, skip non-finite, step, then the per-step chores; raises _Finish to leave the loop."""
        t, model, opt = self.profile.train, self.model, self.optimizer
        assert model is not None
        # The loss and the gradient norm stay on the device: every host read waits for the GPU
        # to drain. One scalar, "both finite", is read per step (the skip decision); the numbers
        # themselves only on logging steps and bad steps.
        max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
        grad_norm_t = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if self.dist.enabled:  # one collective, one read: summed loss, tokens (and a NaN anywhere)
            summed = torch.stack([loss_t.double(), loss_t.new_tensor(tokens, dtype=torch.float64)])
            torch.distributed.all_reduce(summed)
            loss_t = summed[0] / self.dist.world_size
            tokens = float(summed[1])
        finite = bool(torch.isfinite(loss_t) & torch.isfinite(grad_norm_t))
        self.pos = nxt
        if not finite:
            opt.zero_grad(set_to_none=True)
            self._bad += 1
            loss, grad_norm = float(loss_t), float(grad_norm_t)
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            self._log(
                f"step {self.step + 1}: the {what} is {loss if what == 'loss' else grad_norm}; "
                f"skipped the update ({self._bad} of {t.max_bad_steps} in a row)",
                "warning",
            )
            if self._bad >= t.max_bad_steps:
                last = (
                    ckpt.resolve_checkpoint(self.run_dir, "latest")
                    if ckpt.has_checkpoint(self.run_dir)
                    else None
                )
                keep = f"; the last good checkpoint is {last}" if last else "; no checkpoint was written"
                raise _Finish(
                    "error", f"training stopped: {t.max_bad_steps} non-finite losses in a row{keep}"
                )
            self._check_stop()
            return
        self._bad = 0
        lr = lr_at(
            self.step,
            lr=t.lr,
            warmup_steps=t.warmup_steps,
            total_steps=self.total_steps,
            min_lr_ratio=t.min_lr_ratio,
        )
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(model, self.step)
        self.step += 1

        now = time.perf_counter()
        self._window.append((now - self._t_last, tokens))
        self._t_last = now
        dt = sum(w[0] for w in self._window)
        tps = sum(w[1] for w in self._window) / dt if dt > 0 else 0.0
        eta = (self.total_steps - self.step) * dt / len(self._window)
        step = self.step
        if step % t.log_every == 0 or step == 1 or step == self.total_steps or len(self._window) == 1:
            loss, grad_norm = float(loss_t), float(grad_norm_t)
            self._emit(
                StepEvent(
                    step, self.total_steps, epoch + 1, loss, lr, grad_norm, tps,
                    self._elapsed0 + now - self._t_start, eta,
                )
            )  # fmt: skip
        improved = False
        if step % t.eval_every == 0 and len(self.val_ds):
            improved = self._eval_and_judge()
        if improved or step % t.checkpoint_every == 0:
            self._save("best" if improved else "periodic", improved)
        self._t_last = time.perf_counter()  # eval and checkpoint time is not training throughput
        if self.stopper.should_stop:
            raise _Finish("early-stopped", f"early stopping: {self.stopper.state} at step {step}")
        self._check_stop()
        if step >= self.total_steps:
            raise _Finish("finished")

    def _check_stop(self) -> None:
        if D.any_flag(self._stop.is_set(), self.dist, self.device):
            raise _Finish("stopped", f"stopped at step {self.step} on request")

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        """Validation loss and token accuracy of the model (EMA when enabled) after S passes."""
        assert self.model is not None
        t = self.profile.train
        m = self.ema.module if self.ema is not None else self.model
        m.eval()
        batches = self._iterate_batches(
            self.val_ds, t.batch_size, seed=t.seed, epoch=0, rank=self.dist.rank,
            world_size=self.dist.world_size, shuffle=False,
        )  # fmt: skip
        loss_sum, correct, count = evaluate_sums(
            m, batches, supervision_steps=self.S, device=self.device, autocast=self._autocast
        )
        self.model.train()
        loss_sum, correct, count = D.all_reduce_sum([loss_sum, correct, count], self.dist, self.device)
        if count == 0:
            return math.nan, math.nan
        return loss_sum / count, correct / count

    def _eval_and_judge(self) -> bool:
        val_loss, acc = self._evaluate()
        self._last_eval_step = self.step
        self._emit(EvalEvent(self.step, val_loss, acc))
        state, improved = self.stopper.update(val_loss, self.step)
        es = self.stopper
        self._emit(
            EarlyStopEvent(
                self.step,
                state,
                es.best_val_loss,
                es.best_step,
                es.evals_since_best,
                es.patience,
                es.patience_left,
            )
        )
        return improved

    # ------------------------------------------------------------------ checkpoints and the end

    def _save(self, reason: str, is_best: bool) -> None:
        assert self.model is not None
        t = self.profile.train
        carries = D.gather_to_rank0(
            None if self._carry_now is None else (self._carry_now[0].cpu(), self._carry_now[1].cpu()),
            self.dist,
        )
        carry = carry_state(carries if self._carry_now is not None else None)
        state = checkpoint_state(
            pos=self.pos,
            total_steps=self.total_steps,
            world_size=self.dist.world_size,
            profile=self.profile,
            vocab_size=self.tokenizer.vocab_size,
            stopper=self.stopper,
            best_val_loss=self._best(),
            last_eval_step=self._last_eval_step,
            has_ema=self.ema is not None,
            has_carry=carry is not None,
            elapsed_s=self._elapsed0 + time.perf_counter() - self._t_start,
            reason=reason,
        )

        def write() -> Path:
            return ckpt.save_checkpoint(
                self.run_dir,
                self.step,
                model_state=self.model.state_dict(),
                ema_state=self.ema.state_dict() if self.ema is not None else None,
                optimizer_payload={
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": {"step": self.step, "total_steps": self.total_steps},
                    "rng": rng_state(),
                },
                state=state,
                profile_text=self.profile.to_toml(),
                is_best=is_best,
                keep_last=t.keep_last,
                carry_state=carry,
            )

        path = self._on_rank0(write)
        self._saved_step = self.step
        self._emit(CheckpointEvent(self.step, str(path), is_best, reason))

    def _end(self, reason: str, message: str) -> DoneEvent:
        if reason == "error":
            self._log(message, "error")
        else:
            improved = False
            if (
                reason == "finished"
                and self._last_eval_step != self.step
                and len(self.val_ds)
                and self.step > 0
            ):
                improved = self._eval_and_judge()
            if improved or self._saved_step != self.step:
                self._save("stop" if reason == "stopped" else "final", improved)
            if reason != "stopped" and self.profile.early_stopping.restore_best:
                self._restore_best()
        done = DoneEvent(reason, self.step, message, best_val_loss=self._best())
        self._emit(done)
        return done

    def _restore_best(self) -> None:
        """Load the best checkpoint's weights into the in-memory model (and EMA); files stay as written."""
        best = self.stopper.best_step
        if best <= 0 or best == self.step:
            return
        try:
            path = ckpt.resolve_checkpoint(self.run_dir, "best")
        except CheckpointError:
            return
        state = ckpt.load_training_state(path, "cpu")
        assert self.model is not None
        ckpt.load_into(self.model, state.model, path / "model.safetensors")
        if self.ema is not None and state.ema is not None:
            ckpt.load_into(self.ema.module, state.ema, path / "ema.safetensors")
        self._log(
            f"restored the best weights (step {best}, val loss {self.stopper.best_val_loss:.4f}) "
            f"into memory; `best` points at {path.name}"
        )
