"""The Runs tab: every run directory with its status, and the chart of the one opened.

The list is refreshed in a worker every few seconds; the opened run's metrics.jsonl is tailed
incrementally (read_events from the last offset) every second, so a headless `trm-tui train`
in another terminal shows up live.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from trm_core.evaluation.record import latest_eval
from trm_core.printable import printable
from trm_core.runs.history import RunHistory
from trm_core.runs.listing import RunInfo, list_runs

from ..messages import RunsListed
from ..screens.plot import PlotRequested
from ..widgets.loss_chart import LossChart
from .base import Pane
from .run_marks import MARK_BINDINGS, RunMarks
from .runs_table import COLUMNS, STATUS_STYLES, RunRow
from .sweep_worker import SWEEP_BINDINGS, SweepRunner

TAIL_S = 1.0
LIST_S = 5.0


class RunsPane(SweepRunner, RunMarks, Pane):
    BINDINGS = [
        Binding("f5", "refresh", "Refresh", id="runs.refresh", tooltip="Re-read the runs directory"),
        Binding("f6", "open_repl", "Open in REPL", id="runs.open_repl", tooltip="Talk to this run's model"),
        Binding("f7", "toggle_log", "Log scale", id="runs.log_scale", tooltip="Toggle log-scale loss axis"),
        *MARK_BINDINGS,
        *SWEEP_BINDINGS,
        Binding("ctrl+e", "evaluate", "Evaluate", id="runs.evaluate", tooltip="Evaluate the selected run"),
        Binding("p", "plot", "Plot", id="runs.plot", tooltip="Plot any metric of the marked runs, overlaid"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: list[RunInfo] = []
        self.evals: dict[str, dict] = {}
        self.opened: Path | None = None
        self.history = RunHistory()

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-detail")
        yield LossChart(id="runs-chart")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns(*(c.title for c in COLUMNS))
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

        runs = list_runs(runs_dir) + sweep_runs(runs_dir)
        evals = {r.name: e for r in runs if (e := latest_eval(r.path)) is not None}
        self.post_message(RunsListed(runs, evals))

    @on(RunsListed)
    def _on_listed(self, msg: RunsListed) -> None:
        self.runs, self.evals = msg.runs, msg.evals
        table = self.query_one("#runs-table", DataTable)
        selected = self._cursor_name()
        now = self.tapp.backend.clock()
        table.clear()
        for r in self.runs:
            row = RunRow(r, self.evals.get(r.name), now)
            cells = [c.cell(row) for c in COLUMNS]
            cells[0] = self.mark_label(r.name)  # the name, escaped, marked for comparison
            table.add_row(*cells, key=r.name)
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
        self.history = RunHistory()
        self._tail()

    def _tail(self) -> None:
        if self.opened is None:
            return
        events = self.history.follow(self.opened / "metrics.jsonl")
        if events or not self.history.train:
            self.query_one("#runs-chart", LossChart).set_series(self.history.train, self.history.val)
        self._detail()

    def _detail(self) -> None:
        if self.opened is None:
            return
        h = self.history
        info = next((r for r in self.runs if r.path == self.opened), None)
        t = Text(printable(self.opened.name), style="bold")
        status = info.status if info else h.status
        t.append(f"  {status}", style=STATUS_STYLES.get(status, ""))
        if info and info.pid:
            t.append(f" (pid {info.pid}, live)", style="green")
        elif status == "running" and h.last_es is not None:
            t.append(f", early stopping {h.last_es.label}")
        t.append(f"  step {h.step}/{h.total_steps or '?'}")
        if h.best_val_loss is not None:
            t.append(f"  best val {h.best_val_loss:.4f}")
        record = self.evals.get(self.opened.name)
        if record:
            t.append(f"  acc {record['accuracy']:.1%} ({record.get('split', '?')})")
        if info and info.message and info.status == "failed":
            t.append(f"  {printable(info.message)}", style="red")
        self.query_one("#runs-detail", Static).update(t)

    def action_toggle_log(self) -> None:
        chart = self.query_one("#runs-chart", LossChart)
        chart.log_scale = not chart.log_scale

    def action_evaluate(self) -> None:
        if self.opened is None or not (self.opened / "checkpoints").is_dir():
            self.app.notify("Select a run with a checkpoint first.", severity="warning")
            return
        self.tapp.open_evaluation(self.opened)

    def action_plot(self) -> None:
        """The marked runs (or this run's sweep, or this run) on the plot screen (the app opens it)."""
        names = self.compare_targets() or ([self._cursor_name()] if self._cursor_name() else [])
        runs = [
            (n, self.tapp.runs_dir / n) for n in names if (self.tapp.runs_dir / n / "metrics.jsonl").is_file()
        ]
        if not runs:
            self.app.notify(
                "No run with metrics here: train one (F2), or mark runs with space.", severity="warning"
            )
            return
        self.post_message(PlotRequested(runs))

    def action_open_repl(self) -> None:
        if self.opened is None:
            return
        self.tapp.open_repl(self.opened)
