"""The Runs table's model: one `Column` per shown fact of a run, so a new column is one line.

A row is a `RunRow` (the listing's `RunInfo` plus the run's newest evaluation record); each
column turns a row into a cell. The pane only adds the columns' titles and the rows' cells.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from trm_core.runs.listing import RunInfo

from .train_view import fmt_duration

STATUS_STYLES = {
    "running": "bold green",
    "finished": "green",
    "early-stopped": "cyan",
    "stopped": "yellow",
    "failed": "bold red",
    "interrupted": "red",
    "new": "dim",
}


def fmt_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.0f}d ago"


@dataclass(frozen=True)
class RunRow:
    info: RunInfo
    eval: dict[str, Any] | None  # the newest evaluation record, if any
    now: float  # the clock the ages are measured against
    short: str = ""  # the shown name (a sweep run's varying keys), "" = info.name

    @property
    def accuracy(self) -> float | None:
        return self.eval["accuracy"] if self.eval else None


@dataclass(frozen=True)
class Column:
    title: str
    cell: Callable[[RunRow], str | Text]


def _steps(r: RunRow) -> str:
    i = r.info
    return f"{i.step}/{i.total_steps}" if i.total_steps else str(i.step)


def _accuracy(r: RunRow) -> str:
    return f"{r.accuracy:.1%}" if r.accuracy is not None else "–"


NAME_WIDTH = 28  # so the six columns fit 80 columns with the scrollbar


def fit(name: str, width: int = NAME_WIDTH) -> str:
    """A name cut in its middle (the sweep and the varying values stay readable)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


COLUMNS = [  # name, status, steps, val loss, accuracy, wall: fits 80 columns (tok/s is in the detail line)
    Column("run", lambda r: fit(r.short or r.info.name)),
    Column("status", lambda r: Text(r.info.status, style=STATUS_STYLES.get(r.info.status, ""))),
    Column("steps", _steps),
    Column("val", lambda r: f"{r.info.best_val_loss:.3f}" if r.info.best_val_loss is not None else "–"),
    Column("acc", _accuracy),
    Column("wall", lambda r: fmt_duration(r.info.wall_s) if r.info.wall_s is not None else "–"),
]

# sort orders the `s` key cycles through: (label, key, reverse); None values sort last
SORTS: list[tuple[str, Callable[[RunRow], Any], bool]] = [
    ("newest", lambda r: 0, False),  # the listing's own order: newest first, a sweep's runs together
    ("name", lambda r: r.short or r.info.name, False),
    ("status", lambda r: r.info.status, False),
    ("val loss", lambda r: r.info.best_val_loss, False),
    ("accuracy", lambda r: r.accuracy, True),
    ("wall", lambda r: r.info.wall_s, True),
]

_METRIC = re.compile(r"^(acc|val|steps|wall)([<>]=?)([0-9.]+)(%?)$")


def sort_rows(rows: list[RunRow], which: int) -> list[RunRow]:
    _, key, reverse = SORTS[which % len(SORTS)]
    known = [r for r in rows if key(r) is not None]
    return sorted(known, key=key, reverse=reverse) + [r for r in rows if key(r) is None]


def matches(row: RunRow, query: str) -> bool:
    """Every word must hold: a piece of the name, sweep or status (`stopped`, `arch-mini/`), or a
    metric bound (`acc>50%`, `val<1.2`, `steps>=100`, `wall<600` seconds)."""
    for word in query.lower().split():
        m = _METRIC.match(word)
        if m is None:
            text = f"{row.info.name} {row.short} {row.info.status}".lower()
            if word not in text:
                return False
            continue
        what, op, number, pct = m.groups()
        value = {
            "acc": row.accuracy,
            "val": row.info.best_val_loss,
            "steps": float(row.info.step),
            "wall": row.info.wall_s,
        }[what]
        bound = float(number) / (100 if pct or (what == "acc" and float(number) > 1) else 1)
        if value is None or not _compare(value, op, bound):
            return False
    return True


def _compare(value: float, op: str, bound: float) -> bool:
    return {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound}[op]
