"""Marking runs in the Runs tab (space) and comparing them (F8): the compare view's entry point,
kept out of runs.py so the Runs tab's own code stays about one run at a time."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from trm_core.printable import printable

from ..screens.compare import CompareScreen

MARK = "● "
MARK_BINDINGS = [
    Binding("space", "toggle_mark", "Mark", id="runs.mark", tooltip="Mark or unmark this run for comparison"),
    Binding(
        "f8", "compare", "Compare", id="runs.compare", tooltip="Compare the marked runs (or this run's sweep)"
    ),
]


class RunMarks:
    """Mixin for the Runs pane: `marked` run names (relative to the runs dir; `sweep/run` for sweeps)."""

    _marked: set[str] | None = None

    @property
    def marked(self) -> set[str]:
        if self._marked is None:
            self._marked = set()
        return self._marked

    def mark_label(self, name: str) -> Text:
        shown = printable(name)  # a run name is echoed escaped (trm_core.printable)
        return Text(MARK + shown, style="bold") if name in self.marked else Text(shown)

    def action_toggle_mark(self) -> None:
        table = self.query_one("#runs-table", DataTable)  # type: ignore[attr-defined]
        name = self._cursor_name()  # type: ignore[attr-defined]
        if name is None:
            return
        self.marked.symmetric_difference_update({name})
        table.update_cell_at(Coordinate(table.cursor_row, 0), self.mark_label(name), update_width=True)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def compare_targets(self) -> list[str]:
        """The marked runs; without marks, every run of the highlighted run's sweep."""
        names = [r.name for r in self.runs]  # type: ignore[attr-defined]
        if self.marked:
            return [n for n in names if n in self.marked]
        current = self._cursor_name()  # type: ignore[attr-defined]
        if current and "/" in current:
            sweep = current.split("/")[0] + "/"
            return [n for n in names if n.startswith(sweep)]
        return []

    def action_compare(self) -> None:
        runs_dir: Path = self.app.runs_dir  # type: ignore[attr-defined]
        targets = [runs_dir / n for n in self.compare_targets()]
        targets = [p for p in targets if (p / "metrics.jsonl").is_file()]
        if not targets:
            self.app.notify(  # type: ignore[attr-defined]
                "Mark runs with space first (or highlight a run of a sweep), then F8.", severity="warning"
            )
            return
        self.app.push_screen(CompareScreen(targets))  # type: ignore[attr-defined]
