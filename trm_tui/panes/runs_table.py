"""The Runs table's model: one `Column` per shown fact of a run, so a new column is one line.

A row is a `RunRow` (the listing's `RunInfo` plus the run's newest evaluation record); each
column turns a row into a cell. The pane only adds the columns' titles and the rows' cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from trm_core.runs.listing import RunInfo

from .train_view import fmt_duration, fmt_rate

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


@dataclass(frozen=True)
class Column:
    title: str
    cell: Callable[[RunRow], str | Text]


def _steps(r: RunRow) -> str:
    i = r.info
    return f"{i.step}/{i.total_steps}" if i.total_steps else str(i.step)


def _accuracy(r: RunRow) -> str:
    return f"{r.eval['accuracy']:.1%}" if r.eval else "–"


COLUMNS = [
    Column("run", lambda r: r.info.name),
    Column("status", lambda r: Text(r.info.status, style=STATUS_STYLES.get(r.info.status, ""))),
    Column("steps", _steps),
    Column("best val", lambda r: f"{r.info.best_val_loss:.4f}" if r.info.best_val_loss is not None else "–"),
    Column("acc", _accuracy),
    Column("wall", lambda r: fmt_duration(r.info.wall_s) if r.info.wall_s is not None else "–"),
    Column("tok/s", lambda r: fmt_rate(r.info.tokens_per_s)),
    Column("changed", lambda r: fmt_age(r.now - r.info.last_change)),
]
