"""A braille line chart of training and validation loss, downsampled to the widget's width.

Each character cell holds 2×4 braille dots, so a 60-column chart has 120 x positions; the
training series is averaged per dot column (the downsampling), validation is drawn on top.
Callers hand over their lists with `set_series` and call `refresh()` at most a few times a
second; the chart renders from those lists on demand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

TRAIN_STYLE = "#4ea1ff"
VAL_STYLE = "#ffa94d"
AXIS_STYLE = "#808080"
LABEL_WIDTH = 8  # "  12.345┤"

# dot (dx, dy) inside a cell -> braille bit
_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))

Point = tuple[float, float]


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


class LossChart(Widget):
    """Train (blue) and validation (orange) loss against optimizer step."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 5; }
    """

    log_scale: reactive[bool] = reactive(False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.train: Sequence[Point] = []
        self.val: Sequence[Point] = []
        self.empty_message = "no data yet"

    def set_series(self, train: Sequence[Point], val: Sequence[Point]) -> None:
        self.train, self.val = train, val
        self.refresh()

    def _y(self, v: float) -> float | None:
        if not math.isfinite(v):
            return None
        if self.log_scale:
            return math.log10(v) if v > 0 else None
        return v

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        return render_chart(
            self.train, self.val, width, height, log_scale=self.log_scale, empty=self.empty_message
        )


def render_chart(
    train: Sequence[Point],
    val: Sequence[Point],
    width: int,
    height: int,
    *,
    log_scale: bool = False,
    empty: str = "no data yet",
) -> Text:
    """The chart as rich Text of `height` lines of `width` cells."""

    def ty(v: float) -> float | None:
        if not math.isfinite(v):
            return None
        if log_scale:
            return math.log10(v) if v > 0 else None
        return v

    series = []
    for pts in (train, val):
        out = []
        for x, y in pts:
            t = ty(y)
            if t is not None:
                out.append((float(x), t))
        series.append(out)
    legend = _legend(train, val, log_scale)
    if height < 1 or width < 1:
        return Text()
    if not series[0] and not series[1]:
        lines = [legend] + [Text("")] * (height - 1)
        if height > 2:
            lines[height // 2] = Text(empty.center(width), style=AXIS_STYLE)
        return Text("\n").join(lines[:height])
    if height < 4 or width < LABEL_WIDTH + 4:
        return legend

    plot_w, plot_h = width - LABEL_WIDTH, height - 2  # legend on top, x axis at the bottom
    xs = [x for s in series for x, _ in s]
    ys = [y for s in series for _, y in s]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    # a loss is never negative: on a linear axis the margin below stops at 0 (no "-0.011" label)
    floor = 0.0 if y0 >= 0 and not log_scale else -math.inf
    y0, y1 = max(floor, y0 - pad), y1 + pad
    dots_w, dots_h = plot_w * 2, plot_h * 4
    grid = [[0] * plot_w for _ in range(plot_h)]
    owner = [[0] * plot_w for _ in range(plot_h)]  # 1 train, 2 val (val wins)

    def plot(dx: int, dy: int, who: int) -> None:
        if 0 <= dx < dots_w and 0 <= dy < dots_h:
            cy, cx = dy // 4, dx // 2
            grid[cy][cx] |= _BITS[dx % 2][dy % 4]
            owner[cy][cx] = max(owner[cy][cx], who)

    def to_dy(y: float) -> int:
        return round((y1 - y) / (y1 - y0) * (dots_h - 1))

    for who, pts in ((1, series[0]), (2, series[1])):
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
    lines = [legend]
    for r in range(plot_h):
        line = Text()
        tick = "┤" if r in label_rows else "│"
        line.append(f"{label(r) if r in label_rows else '':>{LABEL_WIDTH - 1}}{tick}", style=AXIS_STYLE)
        for c in range(plot_w):
            bits = grid[r][c]
            if bits:
                line.append(chr(0x2800 + bits), style=TRAIN_STYLE if owner[r][c] == 1 else VAL_STYLE)
            else:
                line.append(" ")
        lines.append(line)
    lines.append(Text(x_axis(x0, x1, plot_w)[:width], style=AXIS_STYLE))
    return Text("\n").join(lines)


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


def x_axis(x0: float, x1: float, plot_w: int) -> str:
    """The step axis: '└', round step numbers where they fall, and 'step N' at the right end."""
    chars = [" "] * (LABEL_WIDTH - 1) + ["└"] + ["─"] * plot_w
    end = f"step {x1:.0f}"
    end_at = LABEL_WIDTH + max(0, plot_w - len(end))
    chars[end_at : end_at + len(end)] = list(end)
    span = x1 - x0
    step = max(1.0, nice_step(span, max(1, plot_w // 12)))  # steps are whole numbers
    first = f"{x0:.0f}"
    chars[LABEL_WIDTH : LABEL_WIDTH + len(first)] = list(first)
    free = LABEL_WIDTH + len(first) + 2  # first column the next label may use
    v = math.ceil(x0 / step) * step
    while v < x1:
        col = LABEL_WIDTH + (round((v - x0) / span * (plot_w - 1)) if span > 0 else 0)
        label = f"{v:.0f}"
        if col >= free and col + len(label) < end_at:
            chars[col : col + len(label)] = list(label)
            free = col + len(label) + 2
        v += step
    return "".join(chars)


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
