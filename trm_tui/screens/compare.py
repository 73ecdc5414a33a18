"""The compare view: the selected runs grouped by what differs (seeds pooled), a table of
mean ± 95 % interval half-width per group, the verdicts, and the groups' validation curves
overlaid with a legend. Opened from the Runs tab (space marks runs, F8 compares them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from trm_core.experiments.report import best_resolved, caveats, fmt, group_label, metric_verdicts

from ..curves import render_curves

COLUMNS = [
    ("best_val_loss", "best val"),
    ("exact_calculator", "exact calc"),
    ("exact_no_calculator", "exact none"),
]


class CompareReady(Message):
    def __init__(self, result: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


def half_width_cell(metric: str, s: dict[str, Any], best: bool) -> Text:
    """`0.0783 ±0.0120`: the mean and the 95 % interval's half-width (the std when n is too small: none)."""
    if s["mean"] is None:
        return Text("–", style="dim")
    text = fmt(metric, s["mean"])
    if s["ci95"] is not None:
        text += f" ±{fmt(metric, (s['ci95'][1] - s['ci95'][0]) / 2)}"
    return Text(text + (" *" if best else ""), style="bold green" if best else "")


class CompareScreen(Screen[None]):
    DEFAULT_CSS = """
    CompareScreen #compare-title { height: 1; color: $text-muted; }
    CompareScreen #compare-table { height: auto; max-height: 8; }
    CompareScreen #compare-verdict { height: auto; max-height: 4; color: $text-muted; }
    CompareScreen #compare-plot { height: 1fr; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back", id="compare.close"),
        Binding("f7", "toggle_log", "Log scale", id="compare.log_scale"),
    ]

    def __init__(self, run_dirs: list[Path]) -> None:
        super().__init__()
        self.run_dirs = run_dirs
        self.result: dict[str, Any] | None = None
        self.log_scale = False

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {len(self.run_dirs)} runs …", id="compare-title")
        yield DataTable(id="compare-table", cursor_type="none", zebra_stripes=True)
        yield Static(id="compare-verdict")
        yield Static(id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        self._load(self.run_dirs)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load(self, run_dirs: list[Path]) -> None:
        from trm_core.errors import UserError
        from trm_core.experiments.compare import compare, summarize_run

        try:
            runs = [summarize_run(p) for p in run_dirs]
            self.post_message(CompareReady(compare(runs, metrics=[m for m, _ in COLUMNS])))
        except UserError as e:
            self.post_message(CompareReady(None, str(e)))

    @on(CompareReady)
    def _on_ready(self, msg: CompareReady) -> None:
        title = self.query_one("#compare-title", Static)
        if msg.result is None:
            title.update(Text(f"cannot compare: {msg.error}", style="red"))
            return
        self.result = r = msg.result
        n = len(r["groups"])
        title.update(
            f"{len(self.run_dirs)} runs in {n} group{'s' if n != 1 else ''} · ± = 95% t-interval half-width · * resolved"
        )
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_columns("group", "n", *(label for _, label in COLUMNS))
        best = {m: best_resolved(r, m) for m, _ in COLUMNS}
        for i, g in enumerate(r["groups"]):
            cells = [half_width_cell(m, g["metrics"][m], best[m] == i) for m, _ in COLUMNS]
            table.add_row(group_label(g["key"]), str(g["n"]), *cells)
        warned, lines = caveats(r), metric_verdicts(r)
        said = [v for v in lines if "nothing" not in v]  # the resolved pairs, else why nothing is
        said = said or [f"every metric: {t}" for t in dict.fromkeys(v.split(": ", 1)[1] for v in lines)]
        self.query_one("#compare-verdict", Static).update(Text(" ".join(warned + said), overflow="ellipsis"))
        self.call_after_refresh(self._draw)  # once the table has taken its rows, the plot knows its height

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self.result is None:
            return
        plot = self.query_one("#compare-plot", Static)
        width, height = plot.size.width or 80, plot.size.height or 12
        text = render_curves(self.result["groups"], width=width, height=max(height, 8), log=self.log_scale)
        plot.update(Text.from_ansi(text))

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._draw()

    def action_close(self) -> None:
        self.app.pop_screen()
