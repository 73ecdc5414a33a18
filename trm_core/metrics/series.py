"""Any logged metric of a run as a series against step, tokens or wall time, optionally smoothed.

What is plotted is one small value, `PlotSpec` (metric, x axis, smoothing), shared by the app's
chart, its overlay screen, `trm-tui plot` and the exports. The points come from the one event fold
(`trm_core.runs.history.RunHistory`): it keeps every metric of `METRIC_FIELDS` as (step, value)
and a clock of (step, tokens, wall seconds) from the step events; this module maps a metric's steps
onto the chosen x axis (linear between logged steps) and smooths. No Textual here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from trm_core.events import METRIC_FIELDS, event_metrics

if TYPE_CHECKING:
    from trm_core.runs.history import RunHistory

__all__ = [
    "METRIC_FIELDS",
    "METRIC_LABELS",
    "X_AXES",
    "SMOOTHING",
    "PlotSpec",
    "Point",
    "event_metrics",
    "available_metrics",
    "series",
    "ema",
    "x_at",
    "x_mapper",
]

Point = tuple[float, float]

METRIC_LABELS = {
    "loss": "train loss",
    "val_loss": "val loss",
    "val_token_acc": "val token accuracy",
    "accuracy": "answer accuracy",
    "grad_norm": "grad norm",
    "lr": "learning rate",
    "tokens_per_s": "tokens/s",
}
X_AXES = ("step", "tokens", "wall")
X_LABELS = {"step": "step", "tokens": "tokens", "wall": "wall time (s)"}
SMOOTHING = (0.0, 0.6, 0.9, 0.99)  # EMA weights the app cycles through (0 = raw)


@dataclass(frozen=True)
class PlotSpec:
    """What a chart shows: `metric` against `x` ("step", "tokens", "wall"), EMA-smoothed by `smoothing`."""

    metric: str = "loss"
    x: str = "step"
    smoothing: float = 0.0  # 0 = raw; 0.9 = TensorBoard's debiased EMA with weight 0.9

    def __post_init__(self) -> None:
        if self.x not in X_AXES:
            raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {self.x!r}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), not {self.smoothing}")

    @property
    def is_default(self) -> bool:
        return self == PlotSpec()

    def next_metric(self, available: Sequence[str]) -> PlotSpec:
        """The next of `available` (wrapping); the first when the current one is not there."""
        if not available:
            return self
        i = available.index(self.metric) + 1 if self.metric in available else 0
        return replace(self, metric=available[i % len(available)])

    def next_x(self) -> PlotSpec:
        return replace(self, x=X_AXES[(X_AXES.index(self.x) + 1) % len(X_AXES)])

    def next_smoothing(self) -> PlotSpec:
        i = SMOOTHING.index(self.smoothing) + 1 if self.smoothing in SMOOTHING else 0
        return replace(self, smoothing=SMOOTHING[i % len(SMOOTHING)])

    @property
    def label(self) -> str:
        """`grad norm vs tokens · ema 0.9`"""
        text = f"{metric_label(self.metric)} vs {self.x}"
        return text + (f" · ema {self.smoothing:g}" if self.smoothing else "")

    @property
    def x_label(self) -> str:
        return X_LABELS[self.x]


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def available_metrics(history: RunHistory) -> list[str]:
    """The metrics this run logged at least once, in a fixed order (the known ones first)."""
    known = [m for names in METRIC_FIELDS.values() for m in names]
    have = [m for m in known if history.samples.get(m)]
    return have + sorted(m for m, pts in history.samples.items() if pts and m not in known)


def x_at(history: RunHistory, x: str, step: float) -> float:
    """Where step `step` lies on axis `x` (see `x_mapper`)."""
    return x_mapper(history, x)(step)


def x_mapper(history: RunHistory, x: str) -> Callable[[float], float]:
    """Step -> position on axis `x`: linear between the logged steps' (tokens, wall seconds);
    before the first logged step from (0, 0, 0); after the last at the rate of the last stretch."""
    if x == "step":
        return float
    clock = [(0, 0.0, 0.0), *history.clock] if history.clock else []
    steps = [c[0] for c in clock]
    col = 1 if x == "tokens" else 2

    def at(step: float) -> float:
        if len(clock) < 2:
            return math.nan
        i = min(max(bisect.bisect_left(steps, step), 1), len(clock) - 1)
        lo, hi = clock[i - 1], clock[i]
        span = hi[0] - lo[0]
        return lo[col] + (hi[col] - lo[col]) * ((step - lo[0]) / span if span > 0 else 0.0)

    return at


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first value is kept."""
    if weight <= 0:
        return list(values)
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return out


def series(history: RunHistory, spec: PlotSpec, metric: str | None = None) -> list[Point]:
    """`metric` (default: the spec's) of one run as (x, y) points on the spec's axis, finite values
    only, smoothed as the spec says."""
    at = x_mapper(history, spec.x)
    pts = [(at(s), v) for s, v in history.samples.get(metric or spec.metric, [])]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    ys = ema([y for _, y in pts], spec.smoothing)
    return [(x, y) for (x, _), y in zip(pts, ys, strict=True)]
