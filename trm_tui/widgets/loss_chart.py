"""A braille line chart of a run's metrics, downsampled to the widget's width.

Each character cell holds 2×4 braille dots, so a 60-column chart has 120 x positions; each
series is averaged per dot column (the downsampling), later series drawn on top. By default it
shows training and validation loss against step. Given runs (`set_history`, `set_runs`), the
focused chart plots any logged metric: `m` cycles the metric, `x` the axis (step, tokens, wall
time), `s` the EMA smoothing (a `PlotSpec`, trm_core.metrics.series). Callers hand over their
data and call `refresh()` at most a few times a second; the chart renders on demand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from trm_core.metrics.series import PlotSpec, available_metrics, series
from trm_core.runs.history import RunHistory

TRAIN_STYLE = "#4ea1ff"
VAL_STYLE = "#ffa94d"
AXIS_STYLE = "#808080"
# one colour per run in an overlay (the first two are the train and val colours)
PALETTE = (TRAIN_STYLE, VAL_STYLE, "#69db7c", "#f783ac", "#e599f7", "#ffd43b", "#3bc9db", "#ff6b6b")
LABEL_WIDTH = 8  # "  12.345┤"

# dot (dx, dy) inside a cell -> braille bit
_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    label: str
    style: str
    points: Sequence[Point]


def downsample(points: Sequence[Point], x0: float, x1: float, columns: int) -> list[tuple[int, float]]:
    """Average the y values of `points` falling into each of `columns` equal x buckets."""
    if columns <= 0 or not points:
        return []
    span = (x1 - x0) or 1.0
    sums: dict[int, list[float]] = {}
    for x, y in points:
        col = min(columns - 1, max(0, int((x - x0) / span * (columns - 1) + 0.5)))
        acc = sums.setdefault(col, [0.0, 0])
        acc[0] += y
        acc[1] += 1
    return [(col, s / n) for col, (s, n) in sorted(sums.items())]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.01:
        return f"{v:.3f}"
    return f"{v:.1e}"


class LossChart(Widget, can_focus=True):
    """Train (blue) and validation (orange) loss against optimizer step, or any metric of runs."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 5; }
    LossChart:focus { background: $boost; }
    """
    BINDINGS = [
        Binding("m", "next_metric", "Metric", tooltip="Plot the next logged metric"),
        Binding("x", "next_x", "X axis", tooltip="Step, tokens or wall time"),
        Binding("s", "next_smoothing", "Smooth", tooltip="EMA smoothing: off, 0.6, 0.9, 0.99"),
    ]

    log_scale: reactive[bool] = reactive(False)
    spec: reactive[PlotSpec] = reactive(PlotSpec())

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.train: Sequence[Point] = []
        self.val: Sequence[Point] = []
        self.runs: list[tuple[str, RunHistory]] = []  # (label, history): the metric keys need these
        self.empty_message = "no data yet"

    def set_series(self, train: Sequence[Point], val: Sequence[Point]) -> None:
        """Plain train/val loss points (no metric choice)."""
        self.train, self.val, self.runs = train, val, []
        self.refresh()

    def set_history(self, history: RunHistory) -> None:
        """One run: its loss curves, or any metric it logged (the keys)."""
        self.set_runs([("", history)])

    def set_runs(self, runs: list[tuple[str, RunHistory]]) -> None:
        """Runs overlaid, one colour each (`PALETTE`, in this order)."""
        self.runs = runs
        self.train, self.val = (runs[0][1].train, runs[0][1].val) if len(runs) == 1 else ([], [])
        self.refresh()

    def metrics(self) -> list[str]:
        """The metrics any of the runs logged."""
        return list(dict.fromkeys(m for _, h in self.runs for m in available_metrics(h)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_metric", "next_x", "next_smoothing"):
            return bool(self.runs)  # plain points have no other metric: the keys hide
        return True

    def action_next_metric(self) -> None:
        self.spec = self.spec.next_metric(self.metrics())

    def action_next_x(self) -> None:
        self.spec = self.spec.next_x()

    def action_next_smoothing(self) -> None:
        self.spec = self.spec.next_smoothing()

    def lines(self) -> list[Line]:
        """What is drawn: the runs' series of the chosen metric (train and val for one run's loss)."""
        spec = self.spec
        if len(self.runs) == 1 and spec.metric == "loss":
            h = self.runs[0][1]
            return [
                Line("train", TRAIN_STYLE, series(h, spec)),
                Line("val", VAL_STYLE, series(h, spec, "val_loss")),
            ]
        return [
            Line(label or spec.metric, PALETTE[i % len(PALETTE)], series(h, spec))
            for i, (label, h) in enumerate(self.runs)
        ]

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self.runs or (len(self.runs) == 1 and self.spec.is_default):
            return render_chart(
                self.train, self.val, width, height, log_scale=self.log_scale, empty=self.empty_message
            )
        lines = self.lines()
        legend = spec_legend(self.spec, lines if len(self.runs) == 1 else [], self.log_scale)
        return render_lines(
            lines, width, height, legend=legend, x=self.spec.x, log_scale=self.log_scale,
            empty=f"{self.spec.metric} was not logged" if any(h.clock for _, h in self.runs) else self.empty_message,
        )  # fmt: skip


def render_chart(
    train: Sequence[Point],
    val: Sequence[Point],
    width: int,
    height: int,
    *,
    log_scale: bool = False,
    empty: str = "no data yet",
) -> Text:
    """Train and val loss against step as rich Text of `height` lines of `width` cells."""
    lines = [Line("train", TRAIN_STYLE, train), Line("val", VAL_STYLE, val)]
    return render_lines(
        lines, width, height, legend=_legend(train, val, log_scale), log_scale=log_scale, empty=empty
    )


def render_lines(
    lines: Sequence[Line],
    width: int,
    height: int,
    *,
    legend: Text,
    x: str = "step",
    log_scale: bool = False,
    empty: str = "no data yet",
) -> Text:
    """The chart as rich Text of `height` lines of `width` cells: `legend`, the plot, the x axis."""

    def ty(v: float) -> float | None:
        if not math.isfinite(v):
            return None
        if log_scale:
            return math.log10(v) if v > 0 else None
        return v

    series_ = []
    for line in lines:
        out = []
        for px, py in line.points:
            t = ty(py)
            if t is not None and math.isfinite(px):
                out.append((float(px), t))
        series_.append(out)
    if height < 1 or width < 1:
        return Text()
    legend = legend[:width] if legend.cell_len > width else legend
    if not any(series_):
        rows = [legend] + [Text("")] * (height - 1)
        if height > 2:
            rows[height // 2] = Text(empty.center(width), style=AXIS_STYLE)
        return Text("\n").join(rows[:height])
    if height < 4 or width < LABEL_WIDTH + 4:
        return legend

    plot_w, plot_h = width - LABEL_WIDTH, height - 2  # legend on top, x axis at the bottom
    xs = [px for s in series_ for px, _ in s]
    ys = [py for s in series_ for _, py in s]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    # a loss (or an accuracy) is never negative: on a linear axis the margin below stops at 0
    floor = 0.0 if y0 >= 0 and not log_scale else -math.inf
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = max(floor, y0 - pad), y1 + pad
    dots_w, dots_h = plot_w * 2, plot_h * 4
    grid = [[0] * plot_w for _ in range(plot_h)]
    owner = [[-1] * plot_w for _ in range(plot_h)]  # index of the line drawn last in the cell

    def plot(dx: int, dy: int, who: int) -> None:
        if 0 <= dx < dots_w and 0 <= dy < dots_h:
            cy, cx = dy // 4, dx // 2
            grid[cy][cx] |= _BITS[dx % 2][dy % 4]
            owner[cy][cx] = max(owner[cy][cx], who)

    def to_dy(y: float) -> int:
        return round((y1 - y) / (y1 - y0) * (dots_h - 1))

    for who, pts in enumerate(series_):
        cols = downsample(pts, x0, x1, dots_w)
        prev: tuple[int, int] | None = None
        for col, y in cols:
            cur = (col, to_dy(y))
            if prev is None:
                plot(*cur, who)
            else:
                n = max(abs(cur[0] - prev[0]), abs(cur[1] - prev[1]), 1)
                for i in range(1, n + 1):
                    plot(
                        round(prev[0] + (cur[0] - prev[0]) * i / n),
                        round(prev[1] + (cur[1] - prev[1]) * i / n),
                        who,
                    )
            prev = cur

    def label(row: int) -> str:
        y = y1 - (row * 4 + 1.5) / (dots_h - 1) * (y1 - y0)
        return _fmt(10**y if log_scale else y)

    label_rows = tick_rows(plot_h)
    out = [legend]
    for r in range(plot_h):
        row = Text()
        tick = "┤" if r in label_rows else "│"
        row.append(f"{label(r) if r in label_rows else '':>{LABEL_WIDTH - 1}}{tick}", style=AXIS_STYLE)
        for c in range(plot_w):
            bits = grid[r][c]
            if bits:
                row.append(chr(0x2800 + bits), style=lines[owner[r][c]].style)
            else:
                row.append(" ")
        out.append(row)
    out.append(Text(x_axis(x0, x1, plot_w, x)[:width], style=AXIS_STYLE))
    return Text("\n").join(out)


def tick_rows(plot_h: int, count: int = 5) -> set[int]:
    """Rows that carry a y label: top, bottom and evenly between (at least 4 when there is room)."""
    if plot_h <= 2:
        return set(range(plot_h))
    n = max(2, min(count, (plot_h + 1) // 2))  # never two labels on adjacent rows
    return {round(i * (plot_h - 1) / (n - 1)) for i in range(n)}


def nice_step(span: float, n: int) -> float:
    """A round tick spacing (1, 2 or 5 × 10^k) giving about `n` ticks over `span`."""
    raw = max(span, 1e-9) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def fmt_x(v: float, x: str) -> str:
    """A tick label on axis `x`: whole steps, tokens as 950 / 12k / 1.2M, wall time as m:ss."""
    if x == "tokens":
        for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                n = v / div
                return f"{n:.1f}{unit}" if n < 10 and n != int(n) else f"{n:.0f}{unit}"
        return f"{v:.0f}"
    if x == "wall":
        s = int(round(v))
        h, rem = divmod(s, 3600)
        return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"
    return f"{v:.0f}"


def x_axis(x0: float, x1: float, plot_w: int, x: str = "step") -> str:
    """The x axis: '└', round values where they fall, and 'step N' (tokens, wall) at the right end."""
    chars = [" "] * (LABEL_WIDTH - 1) + ["└"] + ["─"] * plot_w
    end = f"{x} {fmt_x(x1, x)}"
    end_at = LABEL_WIDTH + max(0, plot_w - len(end))
    chars[end_at : end_at + len(end)] = list(end)
    span = x1 - x0
    step = max(1.0, nice_step(span, max(1, plot_w // 12)))  # steps (and tokens, seconds) are whole
    if x == "wall" and step > 30:  # whole minutes
        step = 60.0 * max(1.0, nice_step(span / 60, max(1, plot_w // 12)))
    first = fmt_x(x0, x)
    chars[LABEL_WIDTH : LABEL_WIDTH + len(first)] = list(first)
    free = LABEL_WIDTH + len(first) + 2  # first column the next label may use
    v = math.ceil(x0 / step) * step
    while v < x1:
        col = LABEL_WIDTH + (round((v - x0) / span * (plot_w - 1)) if span > 0 else 0)
        label = fmt_x(v, x)
        if col >= free and col + len(label) < end_at:
            chars[col : col + len(label)] = list(label)
            free = col + len(label) + 2
        v += step
    return "".join(chars)


def spec_legend(spec: PlotSpec, lines: Sequence[Line], log_scale: bool) -> Text:
    """`grad norm vs tokens · ema 0.9  ━ 0.512   linear`: what is plotted, one run's last values."""
    t = Text(spec.label, style="bold")
    for line in lines:
        t.append("  ")
        t.append("━ " + (line.label if len(lines) > 1 else ""), style=line.style)
        if line.points:
            t.append(f"{' ' if len(lines) > 1 else ''}{_fmt(line.points[-1][1])}")
    t.append("   log scale" if log_scale else "   linear", style=AXIS_STYLE)
    return t


def _legend(train: Sequence[Point], val: Sequence[Point], log_scale: bool) -> Text:
    t = Text()
    t.append("━ train", style=TRAIN_STYLE)
    if train:
        t.append(f" {_fmt(train[-1][1])}")
    t.append("  ")
    t.append("━ val", style=VAL_STYLE)
    if val:
        t.append(f" {_fmt(val[-1][1])}")
    t.append("   log scale" if log_scale else "   linear", style=AXIS_STYLE)
    return t
