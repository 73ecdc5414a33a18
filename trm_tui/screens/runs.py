"""The Runs tab: every run directory with its status, and the chart of the one opened.

The list is refreshed in a worker every few seconds; the opened run's metrics.jsonl is tailed
incrementally (read_events from the last offset) every second, so a headless `trm-tui train`
in another terminal shows up live.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from trm_core.events import DoneEvent, EarlyStopEvent, EvalEvent, StartEvent, StepEvent, read_events
from trm_core.printable import printable
from trm_core.runs.listing import RunInfo, list_runs

from ..messages import RunsListed
from ..widgets.loss_chart import LossChart
from .run_marks import MARK_BINDINGS, RunMarks
from .sweep_worker import SWEEP_BINDINGS, SweepRunner

if TYPE_CHECKING:
    from ..app import TrmApp

TAIL_S = 1.0
LIST_S = 5.0
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


class RunsPane(SweepRunner, RunMarks, Vertical):
    BINDINGS = [
        Binding("f5", "refresh", "Refresh", id="runs.refresh", tooltip="Re-read the runs directory"),
        Binding("f6", "open_repl", "Open in REPL", id="runs.open_repl", tooltip="Talk to this run's model"),
        Binding("f7", "toggle_log", "Log scale", id="runs.log_scale", tooltip="Toggle log-scale loss axis"),
        *MARK_BINDINGS,
        *SWEEP_BINDINGS,
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: list[RunInfo] = []
        self.opened: Path | None = None
        self._offset = 0
        self.train_pts: list[tuple[float, float]] = []
        self.val_pts: list[tuple[float, float]] = []
        self.tail_step = 0
        self.tail_total = 0
        self.tail_state = ""

    @property
    def tapp(self) -> TrmApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-detail")
        yield LossChart(id="runs-chart")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("run", "status", "steps", "best val", "changed")
        self.query_one("#runs-chart", LossChart).empty_message = "select a run (enter)"
        self.set_interval(TAIL_S, self._tail)
        self.set_interval(LIST_S, self.action_refresh)
        self.action_refresh()

    # ------------------------------------------------------------------ list

    def action_refresh(self) -> None:
        self._list(self.tapp.runs_dir)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list(self, runs_dir: Path) -> None:
        from trm_core.experiments.manifest import sweep_runs

        self.post_message(RunsListed(list_runs(runs_dir) + sweep_runs(runs_dir)))

    @on(RunsListed)
    def _on_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs-table", DataTable)
        selected = self._cursor_name()
        now = self.tapp.backend.clock()
        table.clear()
        for r in self.runs:
            steps = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "–"
            table.add_row(
                self.mark_label(r.name),
                Text(r.status, style=STATUS_STYLES.get(r.status, "")),
                steps,
                best,
                fmt_age(now - r.last_change),
                key=r.name,
            )
        names = [r.name for r in self.runs]
        if selected in names:
            table.move_cursor(row=names.index(selected), animate=False)
        if self.opened is None and self.runs:
            self.open_run(self.runs[0].path)
        elif not self.runs:
            self.query_one("#runs-detail", Static).update(
                Text(f"No runs in {self.tapp.runs_dir} yet: train a profile (F2).", style="dim")
            )

    def _cursor_name(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 — empty or stale cursor
            return None

    @on(DataTable.RowSelected, "#runs-table")
    def _on_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_run(self.tapp.runs_dir / str(event.row_key.value))

    @on(DataTable.RowHighlighted, "#runs-table")
    def _on_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            path = self.tapp.runs_dir / str(event.row_key.value)
            if path != self.opened:
                self.open_run(path)

    # ------------------------------------------------------------------ chart of one run

    def open_run(self, path: Path) -> None:
        self.opened = path
        self._offset = 0
        self.train_pts, self.val_pts = [], []
        self.tail_step = self.tail_total = 0
        self.tail_state = ""
        self._tail()

    def _tail(self) -> None:
        if self.opened is None:
            return
        events, self._offset = read_events(self.opened / "metrics.jsonl", self._offset)
        for ev in events:
            if isinstance(ev, StepEvent):
                self.train_pts.append((ev.step, ev.loss))
                self.tail_step, self.tail_total = ev.step, ev.total_steps
            elif isinstance(ev, EvalEvent):
                self.val_pts.append((ev.step, ev.val_loss))
            elif isinstance(ev, StartEvent):
                self.tail_state, self.tail_total = "training", ev.total_steps
            elif isinstance(ev, EarlyStopEvent):
                self.tail_state = f"training, early stopping {ev.label}"
            elif isinstance(ev, DoneEvent):
                self.tail_state = ev.reason + (f": {ev.message}" if ev.message else "")
                self.tail_step = max(self.tail_step, ev.step)
        if events or not self.train_pts:
            self.query_one("#runs-chart", LossChart).set_series(self.train_pts, self.val_pts)
        self._detail()

    def _detail(self) -> None:
        if self.opened is None:
            return
        info = next((r for r in self.runs if r.path == self.opened), None)
        t = Text(printable(self.opened.name), style="bold")
        status = info.status if info else "?"
        t.append(f"  {status}", style=STATUS_STYLES.get(status, ""))
        if info and info.pid:
            t.append(f" (pid {info.pid}, live)", style="green")
        t.append(f"  step {self.tail_step}/{self.tail_total or '?'}")
        best = min((v for _, v in self.val_pts if math.isfinite(v)), default=None)
        if best is not None:
            t.append(f"  best val {best:.4f}")
        if info and info.message and info.status == "failed":
            t.append(f"  {printable(info.message)}", style="red")
        self.query_one("#runs-detail", Static).update(t)

    def action_toggle_log(self) -> None:
        chart = self.query_one("#runs-chart", LossChart)
        chart.log_scale = not chart.log_scale

    def action_open_repl(self) -> None:
        if self.opened is None:
            return
        self.tapp.open_repl(self.opened)
