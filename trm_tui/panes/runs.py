"""The Runs tab: every run directory with its status, and the chart of the one opened.

The list is refreshed in a worker every few seconds; the opened run's metrics.jsonl is tailed
incrementally (read_events from the last offset) every second, so a headless `trm-tui train`
in another terminal shows up live. One concept, the table of runs, and what a user does to its
rows: mark and compare them, sort and filter them, hide them or move them to the trash, and
start a sweep whose runs join them (the app's `Jobs` runs it; this tab shows its progress).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static

from trm_core.errors import UserError
from trm_core.evaluation.record import latest_eval
from trm_core.printable import printable
from trm_core.runs.history import RunHistory
from trm_core.runs.listing import RunInfo, list_runs

from ..jobs import SweepProgress
from ..messages import OpenInRepl, RunsChanged, RunsListed
from ..run_shelf import hidden_runs, set_hidden, short_names, trash
from ..screens.compare import CompareScreen
from ..screens.modals import ConfirmModal
from ..screens.plot import PlotRequested
from ..screens.sweep_start import BUILD, SweepBuildModal, SweepPickModal, sweep_files
from ..sweep_plan import SweepPlan, plan_sweep
from ..widgets.loss_chart import LossChart
from .base import Pane
from .runs_table import COLUMNS, SORTS, STATUS_STYLES, RunRow, fmt_age, matches, sort_rows
from .train_view import fmt_rate

TAIL_S = 1.0
LIST_S = 5.0
MARK = "● "


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --:--"
    s = int(seconds)
    return (
        f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"
    )


class RunsPane(Pane):
    BINDINGS = [
        Binding("f5", "refresh", "Refresh", id="runs.refresh", show=False, tooltip="Re-read the runs directory (also every 5 s)"),
        Binding("f6", "open_repl", "REPL", id="runs.open_repl", tooltip="Talk to this run's model"),
        Binding("f7", "toggle_log", "Log", id="runs.log_scale", show=False, tooltip="Toggle log-scale loss axis"),
        Binding("space", "toggle_mark", "Mark (moves down)", id="runs.mark", show=False,
                tooltip="Mark or unmark this run for comparison, and move down"),
        Binding("f8", "compare", "Compare", id="runs.compare",
                tooltip="Compare the marked runs (or this run's sweep)"),
        Binding("f9", "sweep", "Sweep", id="runs.sweep", tooltip="Run a sweep (grid × seeds) as a queue"),
        Binding("ctrl+e", "evaluate", "Evaluate", id="runs.evaluate", tooltip="Evaluate the selected run"),
        Binding("s", "sort", "Sort", id="runs.sort", show=False,
                tooltip="Sort by name, status, val loss, accuracy or wall time"),
        Binding("slash", "filter", "Filter", id="runs.filter", show=False,
                tooltip="Filter: words of a name, sweep or status; acc>50%, val<1.2"),
        Binding("h", "hide", "Hide", id="runs.hide", show=False,
                tooltip="Hide the marked runs (or this run); its files stay"),
        Binding("full_stop", "show_hidden", "Show hidden", id="runs.show_hidden", show=False,
                tooltip="Show or leave out the hidden runs"),
        Binding("delete", "trash", "Trash", id="runs.trash", show=False,
                tooltip="Move this run (or its whole sweep) to RUNS_DIR/.trash"),
        Binding("p", "plot", "Plot", id="runs.plot", tooltip="Plot any metric of the marked runs, overlaid"),
    ]  # fmt: skip

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs: list[RunInfo] = []  # as listed
        self.rows: list[RunRow] = []  # as shown: filtered, sorted
        self.evals: dict[str, dict] = {}
        self.shorts: dict[str, str] = {}
        self.opened: Path | None = None
        self.history = RunHistory()
        self.marked: set[str] = set()  # run names relative to the runs dir (`sweep/run` for sweeps)
        self.hidden: set[str] = set()
        self.show_hidden = False
        self.sort = 0
        self.query_text = ""

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Input(id="runs-filter", placeholder="filter: words of a name/sweep/status, acc>50%, val<1.2")
        yield Static(id="sweep-status")
        yield Static(id="runs-detail")
        yield LossChart(id="runs-chart")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns(*(c.title for c in COLUMNS))
        self.query_one("#runs-filter").display = False
        self.query_one("#sweep-status").display = False
        self.query_one("#runs-chart", LossChart).empty_message = "select a run (enter)"
        self.set_interval(TAIL_S, self._tail)
        self.set_interval(LIST_S, self.action_refresh)
        self.tapp.jobs.sweep_news.subscribe(self, self._on_sweep_news)
        self.action_refresh()

    def on_show(self) -> None:
        self.action_refresh()

    @on(RunsChanged)
    def _runs_changed(self, msg: RunsChanged) -> None:
        self.action_refresh()

    # ------------------------------------------------------------------ list

    def action_refresh(self) -> None:
        self._list(self.tapp.runs_dir)

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list(self, runs_dir: Path) -> None:
        from trm_core.experiments.manifest import read_manifest, sweep_runs

        runs = list_runs(runs_dir) + sweep_runs(runs_dir)
        evals = {r.name: e for r in runs if (e := latest_eval(r.path)) is not None}
        sweeps = {r.name.split("/")[0] for r in runs if "/" in r.name}
        manifests = {s: (read_manifest(runs_dir / s) or {}).get("runs", []) for s in sweeps}
        self.shorts = short_names({s: [e for e in m if isinstance(e, dict)] for s, m in manifests.items()})
        self.hidden = hidden_runs(runs_dir)
        self.post_message(RunsListed(runs, evals))

    @on(RunsListed)
    def _on_listed(self, msg: RunsListed) -> None:
        self.runs, self.evals = msg.runs, msg.evals
        self._fill()
        if self.opened is None and self.rows:
            self.open_run(self.rows[0].info.path)
        elif not self.runs:
            self.query_one("#runs-detail", Static).update(
                Text(f"No runs in {self.tapp.runs_dir} yet: train a profile (F2).", style="dim")
            )

    def _fill(self) -> None:
        """The table from `runs`: hidden ones left out (unless shown), filtered, sorted."""
        table = self.query_one("#runs-table", DataTable)
        selected = self._cursor_name()
        now = self.tapp.backend.clock()
        rows = [RunRow(r, self.evals.get(r.name), now, self.shorts.get(r.name, "")) for r in self.runs]
        rows = [r for r in rows if self.show_hidden or r.info.name not in self.hidden]
        self.rows = sort_rows([r for r in rows if matches(r, self.query_text)], self.sort)
        table.clear()
        for row in self.rows:
            cells = [c.cell(row) for c in COLUMNS]
            cells[0] = self.mark_label(row.info.name, str(cells[0]))
            table.add_row(*cells, key=row.info.name)
        names = [r.info.name for r in self.rows]
        if selected in names:
            table.move_cursor(row=names.index(selected), animate=False)
        self._view_title()

    def _view_title(self) -> None:
        parts = [f"sort: {SORTS[self.sort][0]}"] if self.sort else []
        if self.query_text:
            parts.append(f"filter: {self.query_text}")
        out = sum(1 for r in self.runs if r.name in self.hidden)
        if out:
            parts.append(f"{out} hidden ({'shown, ' if self.show_hidden else ''}. toggles)")
        table = self.query_one("#runs-table", DataTable)
        table.border_title = printable(" · ".join(parts)) if parts else None
        table.set_class(bool(parts), "-titled")

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

    # ------------------------------------------------------------------ sort, filter, hide, trash

    def action_sort(self) -> None:
        self.sort = (self.sort + 1) % len(SORTS)
        self._fill()
        self.app.notify(f"Runs sorted by {SORTS[self.sort][0]} (s: next order).", timeout=2)

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.value = self.query_text
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._fill()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = bool(self.query_text)
        self.query_one("#runs-table").focus()

    def key_escape(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.display:
            box.value, box.display = "", False
            self.query_one("#runs-table").focus()

    def _targets(self) -> list[str]:
        """The marked runs, else the highlighted one."""
        names = [r.info.name for r in self.rows]
        picked = [n for n in names if n in self.marked]
        current = self._cursor_name()
        return picked or ([current] if current else [])

    def action_hide(self) -> None:
        targets = self._targets()
        if not targets:
            return
        unhide = all(n in self.hidden for n in targets)
        what = f"{len(targets)} runs" if len(targets) > 1 else targets[0]
        verb = "Show" if unhide else "Hide"

        def decided(yes: bool | None) -> None:
            if yes:
                self.hidden = set_hidden(self.tapp.runs_dir, targets, hidden=not unhide)
                self.marked -= set(targets)
                self._fill()
                done = "Shown again" if unhide else "Hidden"
                self.app.notify(printable(f"{done}: {what}. '.' shows hidden runs."), markup=False, timeout=4)

        question = f"{verb} {what}? Nothing on disk changes; '.' shows hidden runs, h again unhides."
        self.app.push_screen(ConfirmModal(question, yes=verb), decided)

    def action_show_hidden(self) -> None:
        self.show_hidden = not self.show_hidden
        self._fill()

    def action_trash(self) -> None:
        name = self._cursor_name()
        if name is None:
            return
        sweep = name.split("/")[0] if "/" in name else None
        target = sweep or name  # a sweep's run cannot leave its sweep alone: the sweep goes whole
        if self.tapp.jobs.busy and (self.tapp.runs_dir / target).resolve() in self._busy_dirs():
            self.app.notify("It is running; stop it first.", severity="warning")
            return
        n = sum(1 for r in self.runs if r.name.startswith(f"{sweep}/")) if sweep else 1
        what = f"the whole sweep {sweep} ({n} runs)" if sweep else f"run {name}"
        question = (
            f"Move {what} to {self.tapp.runs_dir}/.trash/? Nothing is deleted; move it back to restore."
        )

        def decided(yes: bool | None) -> None:
            if not yes:
                return
            try:
                dest = trash(self.tapp.runs_dir, target)
            except OSError as e:
                self.app.notify(printable(f"Not moved: {e.strerror or e}"), severity="error", markup=False)
                return
            self.app.notify(printable(f"Moved to {dest}"), markup=False, timeout=6)
            if self.opened is not None and self.opened.is_relative_to(self.tapp.runs_dir / target):
                self.opened = None
            self.action_refresh()

        self.app.push_screen(ConfirmModal(question, yes="Move to trash", danger=True), decided)

    def _busy_dirs(self) -> set[Path]:
        jobs = self.tapp.jobs
        out = set()
        if jobs.sweep is not None:
            out.add(jobs.sweep.root.resolve())
        out |= {r.path.resolve() for r in self.runs if r.status == "running"}
        return out

    # ------------------------------------------------------------------ marks and compare

    def mark_label(self, name: str, shown: str | None = None) -> Text:
        shown = printable(shown if shown is not None else name)  # a run name is echoed escaped
        return Text(MARK + shown, style="bold") if name in self.marked else Text(shown)

    def action_toggle_mark(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        name = self._cursor_name()
        if name is None:
            return
        self.marked.symmetric_difference_update({name})
        row = next(r for r in self.rows if r.info.name == name)
        label = self.mark_label(name, str(COLUMNS[0].cell(row)))
        table.update_cell_at(Coordinate(table.cursor_row, 0), label, update_width=True)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def compare_targets(self) -> list[str]:
        """The marked runs; without marks, every run of the highlighted run's sweep."""
        names = [r.name for r in self.runs]
        if self.marked:
            return [n for n in names if n in self.marked]
        current = self._cursor_name()
        if current and "/" in current:
            sweep = current.split("/")[0] + "/"
            return [n for n in names if n.startswith(sweep)]
        return []

    def action_compare(self) -> None:
        runs_dir = self.tapp.runs_dir
        targets = [runs_dir / n for n in self.compare_targets()]
        targets = [p for p in targets if (p / "metrics.jsonl").is_file()]
        if not targets:
            self.app.notify(
                "Mark runs with space first (or highlight a run of a sweep), then F8.", severity="warning"
            )
            return
        self.app.push_screen(CompareScreen(targets))

    # ------------------------------------------------------------------ sweeps (run by the app's Jobs)

    def action_sweep(self) -> None:
        app = self.tapp
        if app.jobs.busy:
            app.notify(
                f"A {app.jobs.busy} is running; F6 on Train (or the palette's Stop) stops it.",
                severity="warning",
            )
            return
        profile = app.profile_path

        def picked(choice: Path | str | None) -> None:
            if choice == BUILD and profile is not None:
                app.push_screen(
                    SweepBuildModal(profile, app.profiles_dir), lambda p: p and self.confirm_sweep(p)
                )
            elif isinstance(choice, Path):
                self.confirm_sweep(choice)

        app.push_screen(SweepPickModal(sweep_files(app.profiles_dir), profile), picked)

    def confirm_sweep(self, path: Path) -> None:
        """Check the sweep, show its size and time, and run it once the user says so."""
        app = self.tapp
        try:
            plan = plan_sweep(path, app.profiles_dir, app.runs_dir)
        except UserError as e:
            app.notify(
                printable(str(e)), title=f"{path.name} cannot run", severity="error", timeout=20, markup=False
            )
            return
        if plan.todo == 0:
            app.notify(f"Every run of {plan.sweep.name} is done; nothing to run.")
            return
        app.push_screen(ConfirmModal(plan.question, yes="Run sweep"), lambda yes: yes and self._run(plan))

    def _run(self, plan: SweepPlan) -> None:
        if self.tapp.jobs.run_sweep(plan.sweep):
            self._sweep_line(Text(f"sweep {plan.sweep.name}: starting {plan.todo} runs…"))

    def _sweep_line(self, line: Text) -> None:
        status = self.query_one("#sweep-status", Static)
        status.display = True
        status.update(line)

    def _on_sweep_news(self, msg: SweepProgress) -> None:
        order = ("done", "running", "trained", "stopped", "queued", "failed")
        counts = " · ".join(f"{msg.counts[s]} {s}" for s in order if msg.counts.get(s))
        line = Text(f"sweep {msg.name}: {counts}  ", style="bold", no_wrap=True, overflow="ellipsis")
        if msg.done:
            line.append(msg.current)
        else:
            line.append(f"{fmt_eta(msg.eta_s)}  {msg.current}", style="dim")
        self._sweep_line(line)
        self.action_refresh()

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
        record = self.evals.get(info.name if info else self.opened.name)
        if record:
            t.append(f"  acc {record['accuracy']:.1%} ({record.get('split', '?')})")
        if info and info.tokens_per_s:
            t.append(f"  {fmt_rate(info.tokens_per_s)} tok/s", style="dim")
        if info:
            t.append(f"  {fmt_age(self.tapp.backend.clock() - info.last_change)}", style="dim")
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
        if self.opened is not None:
            self.post_message(OpenInRepl(self.opened))
