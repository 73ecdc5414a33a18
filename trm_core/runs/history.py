"""The one fold over a run's events: what the Train tab, the Runs tab and the run listing show.

`RunHistory` is a small state object updated one event at a time (`update`), from the trainer's
callback or from `metrics.jsonl` (`follow` reads what was appended since the last call, so a file
another process is still writing can be tailed). Every logged metric is kept as (step, value) in
`samples` (which ones: `events.METRIC_FIELDS`), beside a clock of (step, tokens, wall seconds)
that puts them on a tokens or wall-time axis. No Textual here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from trm_core.events import (
    AccuracyEvent,
    DoneEvent,
    EarlyStopEvent,
    EvalEvent,
    Event,
    StartEvent,
    StepEvent,
    event_metrics,
    read_events,
)

__all__ = ["RunHistory", "DONE_STATUS", "TOKENS_PER_S_SMOOTHING"]

DONE_STATUS = {  # DoneEvent.reason -> the run's status
    "finished": "finished",
    "early-stopped": "early-stopped",
    "stopped": "stopped",
    "error": "failed",
}
TOKENS_PER_S_SMOOTHING = 0.1  # weight of the newest step in the smoothed tokens/s

Point = tuple[float, float]
Tick = tuple[int, float, float]  # (step, supervised tokens since step 0, training seconds)


@dataclass
class RunHistory:
    """Curves and headline numbers of one run; `points=False` keeps only the headline numbers."""

    points: bool = True
    samples: dict[str, list[Point]] = field(default_factory=dict)  # metric -> (step, value)
    clock: list[Tick] = field(default_factory=list)  # one per logged step
    tokens_before: float = 0.0  # tokens at the step this session resumed from (StepEvent.tokens counts on)
    step: int = 0  # optimizer steps done (the last step seen)
    total_steps: int = 0  # 0 while unknown
    best_val_loss: float | None = None
    profile: str = ""  # the profile name of the last StartEvent
    start: StartEvent | None = None
    last_step: StepEvent | None = None
    last_eval: EvalEvent | None = None
    last_es: EarlyStopEvent | None = None
    done: DoneEvent | None = None  # the DoneEvent after the last StartEvent, if any
    tokens_per_s: float | None = None  # smoothed over the steps of the current session
    rate_sum: float = 0.0  # tokens/s of every step seen, summed (for the mean)
    rate_count: int = 0
    offset: int = 0  # bytes of metrics.jsonl already folded (see `follow`)

    # ------------------------------------------------------------------ the fold

    @property
    def train(self) -> list[Point]:
        return self.samples.setdefault("loss", [])

    @property
    def val(self) -> list[Point]:
        return self.samples.setdefault("val_loss", [])

    def update(self, ev: Event) -> None:
        if self.points and isinstance(ev, StepEvent | EvalEvent | AccuracyEvent):
            for name, v in event_metrics(ev):
                self.samples.setdefault(name, []).append((ev.step, v))
        if isinstance(ev, StepEvent):
            self.last_step = ev
            self.step, self.total_steps = ev.step, ev.total_steps or self.total_steps
            if self.points:
                self._tick(ev)
            if math.isfinite(ev.tokens_per_s):
                self.rate_sum += ev.tokens_per_s
                self.rate_count += 1
                a = TOKENS_PER_S_SMOOTHING
                prev = self.tokens_per_s
                self.tokens_per_s = ev.tokens_per_s if prev is None else a * ev.tokens_per_s + (1 - a) * prev
        elif isinstance(ev, EvalEvent):
            self.last_eval = ev
            self._best(ev.val_loss)
        elif isinstance(ev, EarlyStopEvent):
            self.last_es = ev
            self._best(ev.best_val_loss)
        elif isinstance(ev, StartEvent):
            self.start, self.done, self.tokens_per_s = ev, None, None
            self.total_steps, self.profile = ev.total_steps, ev.profile
            self.step = ev.step
            # a resume from an older checkpoint replays steps: the curve continues from there
            keep = ev.step if ev.resumed else -1
            self.samples = {k: [p for p in pts if p[0] <= keep] for k, pts in self.samples.items()}
            self.clock = [c for c in self.clock if c[0] <= keep]
            # the session's StepEvent.tokens count from here (the steps after the last logged one
            # and before the checkpoint are not in the log: a slight undercount)
            self.tokens_before = self.clock[-1][1] if self.clock else 0.0
        elif isinstance(ev, DoneEvent):
            self.done = ev
            self.step = max(self.step, ev.step)

    def _tick(self, ev: StepEvent) -> None:
        """The step's place on the tokens and wall-time axes. Older logs have no token count:
        tokens/s times the training time since the last logged step stands in for it."""
        prev = self.clock[-1] if self.clock else (0, self.tokens_before, 0.0)
        if ev.tokens >= 0:
            tokens = self.tokens_before + ev.tokens
        elif math.isfinite(ev.tokens_per_s):
            tokens = prev[1] + ev.tokens_per_s * max(0.0, ev.elapsed_s - prev[2])
        else:
            tokens = prev[1]
        self.clock.append((ev.step, tokens, ev.elapsed_s))

    def _best(self, v: float) -> None:
        if math.isfinite(v) and (self.best_val_loss is None or v < self.best_val_loss):
            self.best_val_loss = v

    def extend(self, events: list[Event]) -> None:
        for ev in events:
            self.update(ev)

    def follow(self, metrics: str | Path) -> list[Event]:
        """Fold the complete lines appended to `metrics` since the last call; return them."""
        events, self.offset = read_events(metrics, self.offset)
        self.extend(events)
        return events

    @classmethod
    def read(cls, run_dir: str | Path, *, points: bool = True) -> RunHistory:
        h = cls(points=points)
        h.follow(Path(run_dir) / "metrics.jsonl")
        return h

    # ------------------------------------------------------------------ what it says

    @property
    def status(self) -> str:
        """How the last session ended, from the events alone (`running` needs the lock: listing.py)."""
        if self.done is not None:
            return DONE_STATUS.get(self.done.reason, "failed")
        return "interrupted" if self.start is not None else "new"

    @property
    def mean_tokens_per_s(self) -> float | None:
        return self.rate_sum / self.rate_count if self.rate_count else None

    @property
    def wall_s(self) -> float | None:
        """Training time so far (the last step's elapsed time, which carries across resumes)."""
        return self.last_step.elapsed_s if self.last_step is not None else None

    @property
    def message(self) -> str:
        return self.done.message if self.done is not None else ""
