"""The training engine: one `Trainer` per run directory, driven by a profile, reporting through events.

A "step" is one optimizer step. With `supervision = "deep"` every supervision pass over a batch
is a step (S steps per batch, the carry handed from pass to pass); with `"accumulate"` the losses
of the S passes are summed and one step is taken per batch. The Trainer owns the run directory
while it runs (`.lock`), appends every event to `metrics.jsonl`, checkpoints atomically, and can
continue a run exactly where a checkpoint left off (model, EMA, optimizer, RNG, data position,
the carry of a half-finished batch, early-stopping counters).

This module is the loop; what it composes lives beside it in `training/` (setup, step, update,
run_files, state, schedule, meter, optim, ema, distributed).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trm_core.errors import UserError
from trm_core.events import CheckpointEvent, DoneEvent, EvalEvent, Event, LogEvent, StartEvent, StepEvent
from trm_core.profile import Profile
from trm_core.runs.inference import resolve_device
from trm_core.training import distributed as D
from trm_core.training.accel import compile_for_run
from trm_core.training.accuracy import AccuracyProbe
from trm_core.training.meter import Throughput
from trm_core.training.run_files import RunFiles
from trm_core.training.schedule import EarlyStopper
from trm_core.training.setup import TrainSetup, build_train_setup
from trm_core.training.state import (
    Position,
    TrainState,
    carry_tensors,
    validation_metrics,
)
from trm_core.training.step import Pass, pass_loss, supervision_step
from trm_core.training.update import apply_update, clip_and_check

__all__ = ["Trainer"]


class _Finish(Exception):
    """Internal: leave the loop with a DoneEvent reason."""

    def __init__(self, reason: str, message: str = ""):
        self.reason, self.message = reason, message


def _from_setup(name: str) -> Any:
    """A read-only Trainer attribute that is a field of the TrainSetup its run() built."""
    return property(lambda self: getattr(self._built(), name))


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
        extend_patience: int | None = None,
    ):
        self.profile = profile
        self.run_dir = Path(run_dir)
        self.on_event = on_event
        self.resume = resume
        self.device_request = device or profile.train.device
        self.max_steps_override = max_steps if max_steps and max_steps > 0 else None
        self.extend_patience = extend_patience  # continue past early stopping with this patience
        self._stop = threading.Event()
        self.dist = D.DistInfo()
        self.files = RunFiles(self.run_dir, profile)  # the lock, metrics.jsonl, checkpoints
        self.device = torch.device("cpu")  # resolved by run()
        self.setup: TrainSetup | None = None  # tokenizer, data, model, EMA, optimizer, …: built by run()
        self.fwd: nn.Module | None = None  # the model as training calls it (DDP-wrapped when distributed)
        self.meter = Throughput(0.0)  # restarted by the loop from the resumed elapsed time
        self.accuracy: AccuracyProbe | None = None  # answer accuracy at each evaluation: built by run()
        es = profile.early_stopping
        # where the run stands (step, position, carry, evaluations, saves, bad steps, early stopping)
        self.state = TrainState(EarlyStopper(es.enabled, es.patience, es.min_delta, es.stop_below))

    # ------------------------------------------------------------------ what run() built

    def _built(self) -> TrainSetup:
        assert self.setup is not None, "built by run()"
        return self.setup

    total_steps = _from_setup("total_steps")
    S = _from_setup("supervision_steps")  # passes per batch (1 for a model without a carry)
    deep = _from_setup("deep")
    data = _from_setup("data")
    tokenizer = _from_setup("tokenizer")
    optimizer = _from_setup("optimizer")
    accel = _from_setup("accel")
    depth = _from_setup("depth")  # the sampled H-cycles of each step (train.depth_sampling)
    cpu_share = _from_setup("cpu_share")  # intra-op threads, re-fitted to the load between steps
    batches_per_epoch = property(lambda self: self.data.batches_per_epoch)  # on this rank

    model = _from_setup("model")
    ema = _from_setup("ema")

    # ------------------------------------------------------------------ public

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> DoneEvent:
        try:
            done = self._run()
        except UserError as e:
            self._emit(LogEvent(str(e), level="error"))
            done = DoneEvent("error", self.state.step, str(e), best_val_loss=self._best())
            self._emit(done)
        finally:
            self.files.close()
            D.teardown(self.dist)
        return done

    # ------------------------------------------------------------------ events

    def _best(self) -> float | None:
        b = self.state.stopper.best_val_loss
        return None if math.isinf(b) else b

    def _emit(self, event: Event) -> None:
        if not self.dist.is_main:
            return
        self.files.metrics.write(event)
        if self.on_event is not None:
            self.on_event(event)

    def _log(self, message: str, level: str = "info") -> None:
        self._emit(LogEvent(message, level=level))

    # ------------------------------------------------------------------ setup

    def _run(self) -> DoneEvent:
        p, t = self.profile, self.profile.train
        dev = resolve_device(self.device_request)
        self.dist = D.setup(dev.type)
        if self.dist.enabled and dev.type == "cuda":
            dev = torch.device("cuda", self.dist.local_rank)
        self.device = dev
        if dev.type == "cuda":
            torch.set_float32_matmul_precision("high")
        # seeds, data (failing before the run dir exists), model, EMA, optimizer, the step budget
        self.setup = s = build_train_setup(
            p, dev, rank=self.dist.rank, world_size=self.dist.world_size, max_steps=self.max_steps_override
        )
        model = s.model
        self.accuracy = AccuracyProbe(p, s.tokenizer, dev, is_main=self.dist.is_main)  # off unless asked

        pending_logs: list[str] = []
        D.on_rank0(lambda: self.files.claim(pending_logs.append), self.dist)
        for msg in pending_logs:
            self._log(msg, "warning")

        r = self.files.resume(allowed=self.resume, model=model, ema=self.ema, optimizer=self.optimizer,
                              stopper=self.state.stopper, dist=self.dist, log=self._log)  # fmt: skip
        resumed = r is not None
        self.state.stopper.reopen(self.extend_patience)  # past early stopping, when asked to (else a no-op)
        if r is not None and (r.step >= self.total_steps or self.state.stopper.should_stop):
            return self._nothing_to_train(r.step)  # before anything is written (profile.toml too)
        if r is not None:
            self.state = r
        D.barrier(self.dist)
        # Only now is anything written: a checkpoint that cannot be resumed leaves the run as it was.
        D.on_rank0(self.files.metrics.open, self.dist)
        D.on_rank0(self.files.write_profile, self.dist)

        if self.deep and self.S > 1 and not t.detach_carry:
            self._log(
                "train.detach_carry = false has no effect with supervision = 'deep': each pass ends "
                "in an optimizer step, so gradients cannot flow into the previous pass",
                "warning",
            )
        self.fwd: nn.Module = D.wrap_ddp(model, self.dist, dev)

        params = sum(q.numel() for q in model.parameters())
        self._emit(
            StartEvent(
                str(self.run_dir), p.name, self.state.step, self.total_steps, resumed, str(dev), params
            )
        )
        if s.accel.reason:
            self._log(s.accel.reason)
        if s.accel.compile:  # its own phase (events), every graph built before the first step
            model_, fwd = model, self.fwd
            compile_for_run(model, self.data, s.accel, lambda ids: pass_loss(model_, fwd, ids, ids), self.state.step,
                            self._emit, ema=self.ema)  # fmt: skip
        if len(self.data.val_ds) == 0:
            self._log(
                "no validation slice (data.val_size = 0): no evaluation and no early stopping", "warning"
            )
        elif not resumed:
            # where the curve starts: the untrained model's validation loss (not judged by early
            # stopping, and it draws no random numbers, so the run is the same with or without it)
            val_loss, acc = self._evaluate()
            self._emit(EvalEvent(0, val_loss, acc))
        return self._loop()

    def _nothing_to_train(self, step: int) -> DoneEvent:
        """The checkpoint already reached the step budget (loaded, so a damaged one is still
        reported) or stopped early: said to `on_event` only; metrics.jsonl was never opened, the run stays byte for byte."""
        what = "stopped early" if self.state.stopper.should_stop and step < self.total_steps else "finished"
        self.state.step, msg = step, f"{self.run_dir} already {what} at step {step}; nothing to train"
        done = DoneEvent("nothing-to-train", step, msg)
        if self.on_event is not None and self.dist.is_main:
            self.on_event(done)
        return done

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> DoneEvent:
        t = self.profile.train
        model = self.model
        model.train()
        self.meter = Throughput(self.state.elapsed_s)
        reason, message = "finished", ""
        try:
            if self.state.step >= self.total_steps:
                raise _Finish("finished")
            first = True
            for epoch, b, batch in self.data.walk(self.state.pos):
                inp = batch.input_ids.to(self.device, non_blocking=True)
                lab = batch.labels.to(self.device, non_blocking=True)
                tokens = float(batch.num_tokens)
                carry = None
                start_pass = 0
                if first and self.state.pos.pass_ > 0 and self.state.carry is not None:
                    from trm_core.training.act import ActCarry

                    start_pass = self.state.pos.pass_
                    carry = ActCarry(*(None if x is None else x.to(self.device) for x in self.state.carry))
                first, how = (
                    False,
                    self.depth.forward_kw(self.state.step - start_pass, inp.shape[0], self.device),
                )
                if self.deep:
                    supervision_step(
                        model, inp, lab, carry, S=self.S, mode="deep", start_pass=start_pass,
                        forward=self.fwd, autocast=self.accel.autocast, halt_exploration=t.halt_exploration,
                        after_pass=functools.partial(self._after_pass, epoch=epoch, batch=b, tokens=tokens), **how,
                    )  # fmt: skip
                else:
                    r = supervision_step(
                        model, inp, lab, None, S=self.S, mode="accumulate", detach_carry=t.detach_carry,
                        forward=self.fwd, autocast=self.accel.autocast, halt_exploration=t.halt_exploration, **how,
                    )  # fmt: skip
                    assert r.total is not None
                    self.state.carry = None
                    nxt = self.data.next_position(epoch, b, 0, steps_per_batch=1)
                    self._finish_step(r.total / self.S, tokens * self.S, epoch, nxt)
        except _Finish as f:
            reason, message = f.reason, f.message
        return self._end(reason, message)

    def _after_pass(self, done: Pass, *, epoch: int, batch: int, tokens: float) -> None:
        """Deep supervision: every pass is an optimizer step; the carry is kept for a mid-batch checkpoint."""
        nxt = self.data.next_position(epoch, batch, done.index, steps_per_batch=self.S)
        c = done.carry
        self.state.carry = carry_tensors(c) if (c is not None and nxt.pass_ > 0) else None
        self._finish_step(done.loss, tokens, epoch, nxt)

    def _finish_step(self, loss_t: torch.Tensor, tokens: float, epoch: int, nxt: Position) -> None:
        """Clip, skip non-finite, step, then the per-step chores; raises _Finish to leave the loop."""
        t, model, opt = self.profile.train, self.model, self.optimizer
        c = clip_and_check(model, loss_t, tokens, grad_clip=t.grad_clip, dist=self.dist)
        loss_t, grad_norm_t, tokens = c.loss, c.grad_norm, c.tokens
        self.state.pos = nxt
        if not c.finite:
            opt.zero_grad(set_to_none=True)
            self.state.bad_steps += 1
            loss, grad_norm = float(loss_t), float(grad_norm_t)
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            self._log(
                f"step {self.state.step + 1}: the {what} is {loss if what == 'loss' else grad_norm}; "
                f"skipped the update ({self.state.bad_steps} of {t.max_bad_steps} in a row)",
                "warning",
            )
            if self.state.bad_steps >= t.max_bad_steps:
                last = self.files.latest()
                keep = f"; the last good checkpoint is {last}" if last else "; no checkpoint was written"
                raise _Finish(
                    "error", f"training stopped: {t.max_bad_steps} non-finite losses in a row{keep}"
                )
            self._check_stop()
            return
        self.state.bad_steps = 0
        lr = apply_update(opt, t, step=self.state.step, total_steps=self.total_steps)
        if self.ema is not None:
            self.ema.update(model, self.state.step)
        self.state.step += 1

        tps, eta = self.meter.step(tokens, self.total_steps - self.state.step)
        step = self.state.step
        if step % t.log_every == 0 or step == 1 or step == self.total_steps or len(self.meter.window) == 1:
            loss, grad_norm = float(loss_t), float(grad_norm_t)
            self._emit(
                StepEvent(
                    step, self.total_steps, epoch + 1, loss, lr, grad_norm, tps,
                    self.meter.elapsed(), eta, tokens=self.meter.tokens,
                )
            )  # fmt: skip
        improved = False
        if step % t.eval_every == 0 and len(self.data.val_ds):
            improved = self._eval_and_judge()
        if improved or step % t.checkpoint_every == 0:
            self._save("best" if improved else "periodic", improved)
        if threads := self.cpu_share.refit():  # another process started or ended beside this run
            self._log(threads)
        self.meter.resume()  # eval and checkpoint time is not training throughput
        if self.state.stopper.should_stop:
            raise _Finish("early-stopped", f"early stopping: {self.state.stopper.state} at step {step}")
        self._check_stop()
        if step >= self.total_steps:
            raise _Finish("finished")

    def _check_stop(self) -> None:
        if D.any_flag(self._stop.is_set(), self.dist, self.device):
            raise _Finish("stopped", f"stopped at step {self.state.step} on request")

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        """Validation loss and token accuracy of the model (EMA when enabled) after S passes."""
        m = self.ema.module if self.ema is not None else self.model
        m.eval()
        batches = self.data.val_batches()
        kw = dict(supervision_steps=self.S, device=self.device, autocast=self.accel.autocast, dist=self.dist)
        result = validation_metrics(m, batches, **kw)
        self.model.train()
        return result

    def _eval_and_judge(self) -> bool:
        val_loss, acc = self._evaluate()
        self.state.last_eval_step = self.state.step
        self._emit(EvalEvent(self.state.step, val_loss, acc))
        self.accuracy.measure(self.ema.module if self.ema else self.model, self.state.step, self._emit)
        _, improved = self.state.stopper.update(val_loss, self.state.step)
        self._emit(self.state.stopper.event(self.state.step))
        return improved

    # ------------------------------------------------------------------ checkpoints and the end

    def _save(self, reason: str, is_best: bool) -> None:
        self.state.saved_step, self.state.elapsed_s = self.state.step, self.meter.elapsed()
        path = self.files.save(
            self.state, model=self.model, ema=self.ema, optimizer=self.optimizer, total_steps=self.total_steps,
            vocab_size=self.tokenizer.vocab_size, dist=self.dist, reason=reason, is_best=is_best,
        )  # fmt: skip
        self._emit(CheckpointEvent(self.state.step, str(path), is_best, reason))

    def _end(self, reason: str, message: str) -> DoneEvent:
        if reason == "error":
            self._log(message, "error")
        else:
            improved = False
            if (
                reason == "finished"
                and self.state.last_eval_step != self.state.step
                and len(self.data.val_ds)
                and self.state.step > 0
            ):
                improved = self._eval_and_judge()
            if improved or self.state.saved_step != self.state.step:
                self._save("stop" if reason == "stopped" else "final", improved)
            if reason != "stopped" and self.profile.early_stopping.restore_best:
                self.files.restore_best(
                    stopper=self.state.stopper,
                    step=self.state.step,
                    model=self.model,
                    ema=self.ema,
                    log=self._log,
                )
        done = DoneEvent(reason, self.state.step, message, best_val_loss=self._best())
        self._emit(done)
        return done
