"""Fast, deterministic stand-ins for trm_core's Trainer and Generator, for app tests.

FakeTrainer follows the contract (docs/contracts.md): it emits Start/Step/Eval/EarlyStop/
Checkpoint/Done events through `on_event`, writes the run directory layout (profile.toml,
metrics.jsonl, checkpoints/step-…/profile.toml, .lock) and honours `request_stop` every step.
Event times are fixed (BASE_TIME + step) so snapshots never show a clock.
tests/test_fakes_contract.py runs the same assertions on FakeTrainer and the real Trainer; fresh
run-directory names are not faked (`fake_backend` keeps the real `propose_fresh_run_dir`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trm_core.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EvalEvent,
    Event,
    LogEvent,
    PhaseEvent,
    StartEvent,
    StepEvent,
)
from trm_core.profile import Mismatch, Profile, diff, parse_profile
from trm_core.runs.lock import acquire_lock
from trm_tui.backend import Backend

BASE_TIME = 1_700_000_000.0


def train_loss(step: int) -> float:
    return 0.6 + 2.4 * math.exp(-step / 12) + 0.05 * math.sin(step)


def val_loss(step: int, plateau_at: int | None) -> float:
    if plateau_at is not None and step > plateau_at:
        return val_loss(plateau_at, None) + 0.01 * (step - plateau_at)  # gets worse: early stop
    return 0.7 + 2.2 * math.exp(-step / 14)


@dataclass
class TrainerScript:
    """How fake training goes."""

    total_steps: int = 40
    eval_every: int = 5
    checkpoint_every: int = 20
    patience: int = 3
    plateau_at: int | None = None  # validation loss worsens after this step → early stop
    delay: float = 0.0  # seconds per step
    pause_at: int | None = None  # wait on `gate` after this step (mid-training snapshots)
    fail_at: int | None = None  # raise a RuntimeError at this step (a bug in the trainer)
    error_at: int | None = None  # end with DoneEvent("error") at this step (a user error)
    compiling_s: float | None = None  # a "compiling" phase begun this long ago, held until `gate`


class FakeTrainer:
    def __init__(
        self,
        profile: Profile,
        run_dir: Path,
        *,
        on_event: Callable[[Event], None] | None = None,
        resume: bool = True,
        script: TrainerScript | None = None,
        gate: threading.Event | None = None,
    ):
        self.profile = profile
        self.run_dir = Path(run_dir)
        self.on_event = on_event or (lambda ev: None)
        self.resume = resume
        self.script = script or TrainerScript()
        self.gate = gate or threading.Event()
        self._stop = threading.Event()
        self.stopped_via_request = False

    def request_stop(self) -> None:
        self._stop.set()
        self.gate.set()

    def _emit(self, ev: Event) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(ev.to_json() + "\n")
        self.on_event(ev)

    def _checkpoint(self, step: int, reason: str, is_best: bool) -> None:
        ckpt = self.run_dir / "checkpoints" / f"step-{step:07d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "profile.toml").write_text(self.profile.text or self.profile.to_toml(), encoding="utf-8")
        for link in ("latest",) + (("best",) if is_best else ()):
            p = self.run_dir / "checkpoints" / link
            if p.is_symlink() or p.exists():
                p.unlink()
            p.symlink_to(ckpt.name)
        self._emit(
            CheckpointEvent(step=step, path=str(ckpt), is_best=is_best, reason=reason, time=BASE_TIME + step)
        )

    def _start_step(self) -> int:
        latest = self.run_dir / "checkpoints" / "latest"
        if self.resume and latest.exists():
            return int(latest.resolve().name.split("-")[-1])
        return 0

    def run(self) -> DoneEvent:
        s = self.script
        if self.resume and self._start_step() >= s.total_steps:  # as the Trainer: nothing written
            step = self._start_step()
            done = DoneEvent(
                "nothing-to-train", step, f"{self.run_dir} already finished at step {step}; nothing to train"
            )
            self.on_event(done)
            return done
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "profile.toml").write_text(
            self.profile.text or self.profile.to_toml(), encoding="utf-8"
        )
        release = acquire_lock(self.run_dir)  # the real flock: the runs pane asks who holds it
        try:
            return self._run(s)
        finally:
            release()

    def _run(self, s: TrainerScript) -> DoneEvent:
        start = self._start_step()
        self._emit(
            StartEvent(
                run_dir=str(self.run_dir),
                profile=self.profile.name,
                step=start,
                total_steps=s.total_steps,
                resumed=start > 0,
                device="cpu",
                params=123_456,
                time=BASE_TIME,
            )
        )
        self._emit(LogEvent(message=f"fake training {self.profile.name} from step {start}", time=BASE_TIME))
        if s.compiling_s is not None:
            self._emit(PhaseEvent("compiling", start, "compiling (fake)", time=time.time() - s.compiling_s))
            self.gate.wait()
            self.gate.clear()
            self._emit(PhaseEvent("training", start, "compiled (fake)", seconds=s.compiling_s))
        best, best_step, since = math.inf, 0, 0
        for step in range(start + 1, s.total_steps + 1):
            if self._stop.is_set():
                self.stopped_via_request = True
                self._checkpoint(step - 1, "stop", False)
                return self._done("stopped", step - 1, best)
            if s.fail_at == step:
                raise RuntimeError("fake trainer bug")
            if s.error_at == step:
                return self._done("error", step - 1, best, "the fake data source is unreadable")
            if s.delay:
                time.sleep(s.delay)
            self._emit(
                StepEvent(
                    step=step,
                    total_steps=s.total_steps,
                    epoch=0,
                    loss=train_loss(step),
                    lr=1e-3 * min(1.0, step / 5),
                    grad_norm=1.0,
                    tokens_per_s=12_345.0,
                    elapsed_s=float(step),
                    eta_s=float(s.total_steps - step),
                    time=BASE_TIME + step,
                )
            )
            if step % s.eval_every == 0:
                v = val_loss(step, s.plateau_at)
                self._emit(EvalEvent(step=step, val_loss=v, val_token_acc=0.5, time=BASE_TIME + step))
                improved = v < best
                if improved:
                    best, best_step, since = v, step, 0
                else:
                    since += 1
                state = "improving" if improved else ("stopped" if since >= s.patience else "waiting")
                self._emit(
                    EarlyStopEvent(
                        step=step,
                        state=state,
                        best_val_loss=best,
                        best_step=best_step,
                        evals_since_best=since,
                        patience=s.patience,
                        patience_left=s.patience - since,
                        time=BASE_TIME + step,
                    )
                )
                if improved:
                    self._checkpoint(step, "best", True)
                if state == "stopped":
                    return self._done("early-stopped", step, best)
            elif step % s.checkpoint_every == 0:
                self._checkpoint(step, "periodic", False)
            if s.pause_at == step:
                self.gate.wait()
        self._checkpoint(s.total_steps, "final", False)
        return self._done("finished", s.total_steps, best)

    def _done(self, reason: str, step: int, best: float, message: str = "") -> DoneEvent:
        ev = DoneEvent(
            reason=reason,
            step=step,
            message=message,
            best_val_loss=None if math.isinf(best) else best,
            time=BASE_TIME + step,
        )
        self._emit(ev)
        return ev


@dataclass
class FakeTrainerFactory:
    script: TrainerScript = field(default_factory=TrainerScript)
    gate: threading.Event = field(default_factory=threading.Event)
    created: list[FakeTrainer] = field(default_factory=list)

    def __call__(self, profile: Profile, run_dir: Path, *, on_event, resume: bool = True) -> FakeTrainer:
        t = FakeTrainer(
            profile, run_dir, on_event=on_event, resume=resume, script=self.script, gate=self.gate
        )
        self.created.append(t)
        return t


@dataclass
class Piece:
    text: str
    source: str = "model"


ANSWER = [
    Piece(" Natalia sold 48/2 = "),
    Piece("<<48/2="),
    Piece("24", "calculator"),
    Piece(">>"),
    Piece("24 clips in May.\n"),
    Piece("She sold 48+24 = "),
    Piece("<<48+24="),
    Piece("72", "calculator"),
    Piece(">>"),
    Piece("72 clips.\n#### 72"),
]


class FakeGenerator:
    """Streams its pieces; counts a token per character; a sampled answer reports its seed."""

    def __init__(self, pieces: list[Piece], delay: float = 0.0):
        self.pieces = pieces
        self.delay = delay
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.last_stats: dict[str, Any] = {}
        self.last_seed: int | None = None
        self.next_seed = 1000  # the "fresh" seeds handed out, in order

    def stream(self, prompt: str, **kw: Any) -> Iterator[Piece]:
        self.calls.append((prompt, kw))
        seed = kw.get("seed")
        if kw.get("temperature", 0) > 0:
            if seed is None or seed < 0:
                seed, self.next_seed = self.next_seed, self.next_seed + 1
            self.last_seed = seed
        else:
            self.last_seed = None
        limit = kw.get("max_tokens", 10_000)
        tokens = 0
        for piece in self.pieces[:limit]:
            if self.delay:
                time.sleep(self.delay)
            if piece.source == "calculator" and not kw.get("calculator", True):
                continue
            tokens += len(piece.text)
            self.last_stats = {"new_tokens": tokens}
            yield piece


@dataclass
class FakeGeneratorFactory:
    pieces: list[Piece] = field(default_factory=lambda: list(ANSWER))
    delay: float = 0.0
    fail: str | None = None  # raise this as a UserError when loading
    opened: list[tuple[Path, str]] = field(default_factory=list)
    generators: list[FakeGenerator] = field(default_factory=list)

    def __call__(self, run_dir: Path, which: str) -> FakeGenerator:
        from trm_core.errors import CheckpointError

        self.opened.append((Path(run_dir), which))
        if self.fail:
            raise CheckpointError(self.fail)
        g = FakeGenerator(self.pieces, self.delay)
        self.generators.append(g)
        return g


def fake_check_run_dir(profile: Profile, run_dir: Path) -> list[Mismatch] | None:
    latest = Path(run_dir) / "checkpoints" / "latest"
    if not latest.exists():
        return None
    saved = parse_profile((latest / "profile.toml").read_text(encoding="utf-8"))
    return diff(saved, profile)


EXAMPLES = [
    ("Mia has 3 boxes of 4 pens. How many pens does she have?", "Mia has 3*4=<<3*4=12>>12 pens.\n#### 12"),
    ("Leo had 9 apples and ate 2. How many are left?", "Leo has 9-2=<<9-2=7>>7 apples left.\n#### 7"),
]


@dataclass
class FakeEvaluator:
    """Scores the fixed EXAMPLES (the second one wrong) and writes a real record into the run."""

    gate: threading.Event | None = None  # wait on it after the first answer (mid-evaluation checks)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, run_dir: Path, *, which: str, split: str, limit: int | None, progress):
        from trm_core.evaluation.evaluate import write_samples
        from trm_core.evaluation.record import write_eval_record

        self.calls.append({"run_dir": run_dir, "which": which, "split": split, "limit": limit})
        examples = EXAMPLES[:limit] if limit else EXAMPLES
        n = len(examples)
        progress(1, 2 * n)
        if self.gate is not None:
            self.gate.wait(10)
        samples = [
            {
                "index": i,
                "question": q,
                "expected": a.rsplit("#### ", 1)[-1],
                "generated": a if i == 0 else "#### 99",
                "predicted": a.rsplit("#### ", 1)[-1] if i == 0 else "99",
                "correct": i == 0,
                "generated_no_calculator": "#### 98",  # scored both ways, as the real evaluate_run
                "correct_no_calculator": False,
            }
            for i, (q, a) in enumerate(examples)
        ]
        progress(2 * n, 2 * n)
        rel = f"eval/{split}-step10.jsonl"
        write_samples(run_dir / rel, samples)
        record = {
            "version": 1, "checkpoint": which, "step": 10, "split": split, "data": "synthetic",
            "limit": limit, "n": n, "accuracy": 1 / n, "accuracy_no_calculator": 0.0,
            "seconds": 2.5, "tokens_per_second": 400.0, "settings": {"temperature": 0.0},
            "created": "2023-11-14T22:13:20+00:00", "samples": rel,
        }  # fmt: skip
        write_eval_record(run_dir, record)
        return record, samples


def fake_backend(
    trainer: FakeTrainerFactory | None = None,
    generator: FakeGeneratorFactory | None = None,
    now: float = BASE_TIME + 3600,
    evaluator: FakeEvaluator | None = None,
) -> Backend:
    return Backend(
        trainer_factory=trainer or FakeTrainerFactory(),
        generator_factory=generator or FakeGeneratorFactory(),
        check_run_dir=fake_check_run_dir,
        count_parameters=lambda profile: 1000 * profile.model.hidden_size,
        format_prompt=lambda q: f"Question: {q}\nAnswer:",
        examples=lambda run_dir: list(EXAMPLES),
        evaluate_run=evaluator or FakeEvaluator(),
        clock=lambda: now,
    )
