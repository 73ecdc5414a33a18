"""Typed events the Trainer emits: the contract between the training engine and its viewers.

Every event is a frozen dataclass with a `kind`; `to_json()` is the line written to the run's
`metrics.jsonl`, and `event_from_dict()` reads such a line back (the TUI's run browser and
chart attach to a file another process is still writing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_args, get_type_hints

__all__ = [
    "Event",
    "StepEvent",
    "EvalEvent",
    "AccuracyEvent",
    "EarlyStopEvent",
    "CheckpointEvent",
    "LogEvent",
    "PhaseEvent",
    "StartEvent",
    "DoneEvent",
    "METRIC_FIELDS",
    "event_metrics",
    "event_from_dict",
    "read_events",
]


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)  # wall clock, seconds since epoch

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=True)


@dataclass(frozen=True)
class StartEvent(Event):
    """Training (re)started: where from and how far it will go."""

    kind: ClassVar[str] = "start"
    run_dir: str
    profile: str  # profile name
    step: int  # first step that will run (0, or the resumed step)
    total_steps: int
    resumed: bool
    device: str
    params: int


@dataclass(frozen=True)
class StepEvent(Event):
    kind: ClassVar[str] = "step"
    step: int  # optimizer steps done so far (1-based after the first step)
    total_steps: int
    epoch: int
    loss: float  # mean training loss of the batch (over supervision passes)
    lr: float
    grad_norm: float
    tokens_per_s: float  # supervised tokens through the model per second, recent average
    elapsed_s: float
    eta_s: float
    tokens: float = -1.0  # supervised tokens since this session's StartEvent; -1: not logged (older runs)


@dataclass(frozen=True)
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    step: int
    val_loss: float
    val_token_acc: float


@dataclass(frozen=True)
class AccuracyEvent(Event):
    """Exact-answer accuracy on a few held-out problems during training (train.eval_accuracy_problems)."""

    kind: ClassVar[str] = "accuracy"
    step: int
    accuracy: float
    correct: int
    total: int
    split: str = "val"


@dataclass(frozen=True)
class EarlyStopEvent(Event):
    """Early-stopping status after each evaluation.

    state: "improving" | "waiting" | "stopped" | "target-reached" | "disabled"
    """

    kind: ClassVar[str] = "early_stop"
    step: int
    state: str
    best_val_loss: float
    best_step: int
    evals_since_best: int
    patience: int
    patience_left: int

    @property
    def label(self) -> str:
        if self.state == "waiting":
            return f"waiting {self.evals_since_best} of {self.patience}"
        return self.state


@dataclass(frozen=True)
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    is_best: bool
    reason: str  # "periodic" | "best" | "final" | "stop"


@dataclass(frozen=True)
class LogEvent(Event):
    kind: ClassVar[str] = "log"
    message: str
    level: str = "info"  # "info" | "warning" | "error"


@dataclass(frozen=True)
class PhaseEvent(Event):
    """The Trainer entered a phase: "compiling" (before the first step; may take a while) or
    "training" (stepping; `seconds` is how long the phase before it took)."""

    kind: ClassVar[str] = "phase"
    phase: str
    step: int
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class DoneEvent(Event):
    """Training ended. reason: "finished" | "early-stopped" | "stopped" | "error" | "nothing-to-train".

    "nothing-to-train" (a resume of a run that already reached its step budget) is never written
    to metrics.jsonl: such a resume leaves the run directory untouched.
    """

    kind: ClassVar[str] = "done"
    reason: str
    step: int
    message: str = ""
    best_val_loss: float | None = None


# event class -> its fields that are metrics (the fold records these, by the field's name)
METRIC_FIELDS: dict[type[Event], tuple[str, ...]] = {
    StepEvent: ("loss", "grad_norm", "lr", "tokens_per_s"),
    EvalEvent: ("val_loss", "val_token_acc"),
    AccuracyEvent: ("accuracy",),
}
# a step event's numeric fields that are not metrics (counters and times); any other numeric field
# a later StepEvent gains (memory, say) becomes plottable without a change here
_NOT_METRICS = {"step", "total_steps", "epoch", "elapsed_s", "eta_s", "tokens", "time"}


def event_metrics(ev: Event) -> Iterator[tuple[str, float]]:
    """(metric name, value) for every metric `ev` carries (non-finite values included)."""
    names = METRIC_FIELDS.get(type(ev), ())
    if isinstance(ev, StepEvent):  # a numeric field added to StepEvent later is a metric too
        extra = (k for k, v in vars(ev).items() if k not in _NOT_METRICS and k not in names)
        names = (*names, *(k for k in extra if isinstance(getattr(ev, k), float)))
    for name in names:
        v = getattr(ev, name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            yield name, float(v)


_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        StartEvent,
        StepEvent,
        EvalEvent,
        AccuracyEvent,
        EarlyStopEvent,
        CheckpointEvent,
        LogEvent,
        PhaseEvent,
        DoneEvent,
    )
}
_HINTS = {cls: {k: v for k, v in get_type_hints(cls).items() if k != "kind"} for cls in _KINDS.values()}


# A diverged run logs NaN/inf losses and norms (and an ETA before the first step); every other float
# field must be finite, and every int must fit 64 bits (a record is data from outside: 1e400, 10**400).
_MAY_BE_NONFINITE = frozenset({"loss", "val_loss", "best_val_loss", "grad_norm", "eta_s"})
_INT_BOUND = 2**63


def _fits(value: Any, tp: Any, name: str = "") -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) and -_INT_BOUND <= value < _INT_BOUND
    if tp is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return -_INT_BOUND <= value < _INT_BOUND
        return isinstance(value, float) and (math.isfinite(value) or name in _MAY_BE_NONFINITE)
    if tp is str:
        return isinstance(value, str)
    if tp is type(None):
        return value is None
    args = get_args(tp)
    return any(_fits(value, a, name) for a in args) if args else True


def event_from_dict(d: Any) -> Event | None:
    """Rebuild an event from its JSON dict; None for unknown kinds or malformed rows (a field of
    the wrong type included: a hand-edited or hostile metrics.jsonl must not break a reader)."""
    if not isinstance(d, dict):
        return None
    cls = _KINDS.get(d.get("kind", "")) if isinstance(d.get("kind"), str) else None
    if cls is None:
        return None
    hints = _HINTS[cls]
    kwargs = {k: v for k, v in d.items() if k in hints}
    if not all(_fits(v, hints[k], k) for k, v in kwargs.items()):
        return None
    try:
        return cls(**kwargs)
    except TypeError:
        return None


READ_LIMIT = 64 << 20  # bytes read per call; the rest (a huge log) on the next call
LINE_LIMIT = 1 << 20  # an event is a few hundred bytes; a longer line is skipped (and named), not read
SKIP_LIMIT = 256 << 20  # a line without a newline this far is not a log: the rest of the file is left


def _skip_long_line(fd: int, start: int, size: int) -> int:
    """The offset just past the newline that ends the line beginning at `start` (scanned 1 MiB at a
    time, nothing kept), or -1 when the line has no end yet."""
    pos = start
    while pos < size and pos - start < SKIP_LIMIT:
        chunk = os.pread(fd, min(LINE_LIMIT, size - pos), pos)
        if not chunk:
            break
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)
    return size if pos - start >= SKIP_LIMIT else -1


def read_events(path, offset: int = 0, problems: list[str] | None = None) -> tuple[list[Event], int]:
    """Read complete lines of a metrics.jsonl from byte `offset`; return (events, new offset).

    A trailing partial line (another process mid-write) is left for the next call. A line that is not
    an event (bad JSON, a wrong field type, a non-finite time, a line over LINE_LIMIT) is skipped and,
    with `problems`, named there ("PATH line at byte N: …"); the lines after it are still read.
    """
    events: list[Event] = []
    try:  # O_NONBLOCK: a FIFO planted as metrics.jsonl must not hang the reader (the app's Runs tab)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return events, offset
    except OSError as e:
        if problems is not None:
            problems.append(f"{path}: cannot be read ({e.strerror})")
        return events, offset
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # /dev/zero would never end
            if problems is not None:
                problems.append(f"{path}: not a regular file, so it was not read")
            return events, offset
        while True:
            data = os.pread(fd, max(0, min(st.st_size - offset, READ_LIMIT)), offset)
            if len(data) <= LINE_LIMIT or b"\n" in data[: LINE_LIMIT + 1]:
                break
            end = _skip_long_line(fd, offset, st.st_size)  # a line too long to be an event
            if end < 0:
                return events, offset  # still being written (or never ended): left for later
            if problems is not None:
                problems.append(
                    f"{path} line at byte {offset:,}: {end - offset:,} bytes, not an event; skipped"
                )
            offset = end
    except OSError as e:
        if problems is not None:
            problems.append(f"{path}: cannot be read ({e.strerror})")
        return events, offset
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    if end < 0:
        return events, offset
    pos = 0
    for line in data[: end + 1].splitlines(keepends=True):
        at, pos = offset + pos, pos + len(line)
        ev = None
        if len(line) <= LINE_LIMIT:
            try:
                ev = event_from_dict(json.loads(line))
            except (ValueError, UnicodeDecodeError, RecursionError):
                ev = None
        if ev is not None:
            events.append(ev)
        elif problems is not None and line.strip():
            problems.append(f"{path} line at byte {at:,}: not a valid event; skipped")
    return events, offset + end + 1
