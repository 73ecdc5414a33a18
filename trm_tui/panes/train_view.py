"""What the Train tab draws from a run's history: the header's state, the progress line, the Now panel."""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table
from rich.text import Text

from trm_core.printable import printable
from trm_core.runs.history import RunHistory
from trm_core.runs.listing import RunInfo

STATE_STYLES = {
    "idle": "dim",
    "new": "dim",
    "checking": "yellow",
    "starting": "yellow",
    "compiling": "bold yellow",
    "training": "bold green",
    "stopping": "bold yellow",
    "finished": "green",
    "early-stopped": "green",
    "stopped": "yellow",
    "interrupted": "red",
    "failed": "bold red",
    "error": "bold red",
}


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def short(run_dir: Path) -> str:
    """runs/quickstart rather than a long absolute path."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def run_label(r: RunInfo) -> str:
    """A run in the Train tab's picker: name, status, steps (a running one's are on the progress row)."""
    if r.status == "running":
        return f"{r.name} · running"
    steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
    return f"{r.name} · {r.status} {steps}"


def state_text(state: str, history: RunHistory, message: str = "") -> Text:
    """The pane's state while it works; otherwise the selected run's status."""
    shown = state if state != "idle" else history.status
    t = Text(f"● {shown}", style=STATE_STYLES.get(shown, ""))
    if message and state == "error":
        t.append(f" {printable(message)}", style="red")
    return t


def progress_text(history: RunHistory, training: bool) -> tuple[int, int, str]:
    """(step, total, "step s/t  ETA m:ss") for the progress row."""
    step, total = history.step, history.total_steps
    ev = history.last_step
    eta = fmt_duration(ev.eta_s) if ev is not None and training else "--:--"
    return step, total, f"step {step}/{total or '?'}  ETA {eta}"


def now_table(history: RunHistory) -> Table:
    """The Now panel: last loss, validation loss and token accuracy, lr, smoothed tokens/s, elapsed."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    ev, val = history.last_step, history.last_eval
    grid.add_row("loss", f"{ev.loss:.4f}" if ev else "–")
    grid.add_row("val", f"{val.val_loss:.4f}  acc {val.val_token_acc:.1%}" if val else "–")
    grid.add_row("lr", f"{ev.lr:.2e}" if ev else "–")
    # smoothed over the session's steps; the last step's own rate after it
    rate = f"{fmt_rate(history.tokens_per_s)} (now {fmt_rate(ev.tokens_per_s)})" if ev else "–"
    grid.add_row("tok/s", rate)
    grid.add_row("elapsed", fmt_duration(ev.elapsed_s) if ev else "–")
    return grid
