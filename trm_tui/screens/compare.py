"""The compare view: the selected runs grouped by what differs (seeds pooled), a table of
mean ± 95 % interval half-width per group, the verdicts, and the groups' validation curves
overlaid with a legend. Opened from the Runs tab (space marks runs, F8 compares them).

F6 switches to the depth mode: each run's depth study (RUN/depth.json, from the Evaluation
screen's F7 or `trm-tui eval … --json RUN/depth.json`) as `compare --depth depth.json --paired`
reports it — accuracy per recipe and depth, the paired difference against the trained depth, and
the curve of accuracy against depth with its interval band."""

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

from trm_core.experiments.report import best_resolved, caveats, cell, group_label, metric_verdicts

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
    """`7.8% ± 1.2%`: the CLI's cell (`report.cell`: mean ± 95 % CI half-width, cut at the bounds)."""
    if s["mean"] is None:
        return Text("–", style="dim")
    return Text(cell(metric, s) + (" *" if best else ""), style="bold green" if best else "")


class DepthReady(Message):
    def __init__(self, result: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


def depth_rows(result: dict[str, Any]) -> list[tuple[str, str, str, Text, Text]]:
    """(group, depth, n, accuracy ± half-width, paired Δ against the trained depth) per depth row."""
    from trm_core.experiments.depth_report import diff_cell

    paired = {(p["group"], p["label"]): p for p in result.get("paired", [])}
    refs = {p["group"]: p["reference"] for p in result.get("paired", [])}
    out = []
    previous = None
    for row in result["depth_groups"]:
        p = paired.get((row["group"], row["label"]))
        if p is not None:
            delta = Text(diff_cell(p["diff"]), style="bold green" if p["resolved"] == "higher" else "")
        else:
            delta = Text("reference" if refs.get(row["group"]) == row["label"] else "–", style="dim")
        name = group_label(row["key"]) if row["group"] != previous else ""
        acc = half_width_cell("accuracy", row["metrics"]["accuracy"], False)
        out.append((name, row["label"], str(row["n"]), acc, delta))
        previous = row["group"]
    return out


class CompareScreen(Screen[None]):
    DEFAULT_CSS = """
    CompareScreen #compare-title { height: 1; color: $text-muted; }
    CompareScreen #compare-table { height: auto; max-height: 8; }
    CompareScreen #compare-verdict { height: auto; max-height: 4; color: $text-muted; }
    CompareScreen #compare-plot { height: 1fr; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back", id="compare.close"),
        Binding("f6", "toggle_depth", "Depth mode", id="compare.depth_mode"),
        Binding("f7", "toggle_log", "Log scale", id="compare.log_scale"),
    ]

    def __init__(self, run_dirs: list[Path]) -> None:
        super().__init__()
        self.run_dirs = run_dirs
        self.result: dict[str, Any] | None = None
        self.depth: dict[str, Any] | None = None
        self.depth_mode = False
        self.depth_files: list[str] = []  # the depth studies the runs hold; F6 steps through them
        self.depth_file = ""
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
        if self.depth_mode:
            return
        title = self.query_one("#compare-title", Static)
        if msg.result is None:
            title.update(Text(f"cannot compare: {msg.error}", style="red"))
            return
        self.result = r = msg.result
        n = len(r["groups"])
        title.update(
            f"{len(self.run_dirs)} runs in {n} group{'s' if n != 1 else ''} · ± 95% CI half-width · * resolved"
        )
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_columns("group", "n", *(label for _, label in COLUMNS))
        best = {m: best_resolved(r, m) for m, _ in COLUMNS}
        for i, g in enumerate(r["groups"]):
            cells = [half_width_cell(m, g["metrics"][m], best[m] == i) for m, _ in COLUMNS]
            table.add_row(group_label(g["key"]), str(g["n"]), *cells)
        warned, lines = caveats(r), metric_verdicts(r)
        said = [v for v in lines if "nothing" not in v]  # resolved pairs and equal values first
        why = list(dict.fromkeys(v.split(": ", 1)[1] for v in lines if "nothing" in v))  # then why not
        said += [f"{'the other metrics' if said else 'every metric'}: {' '.join(why)}"] if why else []
        self.query_one("#compare-verdict", Static).update(Text(" ".join(warned + said), overflow="ellipsis"))
        self.call_after_refresh(self._draw)  # once the table has taken its rows, the plot knows its height

    def action_toggle_depth(self) -> None:
        """Off -> each depth study the runs hold (depth.json, a sweep's depth-hard.json, …) -> off."""
        if not self.depth_mode:
            from trm_core.evaluation.depth_study import DEPTH_FILE

            found = sorted({p.name for d in self.run_dirs for p in d.glob("depth*.json") if p.is_file()})
            self.depth_files = found or [DEPTH_FILE]  # none: the message says how to write one
            self.depth_file = self.depth_files[0]
        elif self.depth_file != self.depth_files[-1]:
            self.depth_file = self.depth_files[self.depth_files.index(self.depth_file) + 1]
        else:
            self.depth_mode = False
            if self.result is not None:
                self._on_ready(CompareReady(self.result))
            return
        self.depth_mode = True
        self.query_one("#compare-title", Static).update(f"reading the runs' {self.depth_file} …")
        self._load_depth(self.run_dirs, self.depth_file)

    @work(thread=True, exclusive=True, group="compare-depth", exit_on_error=False)
    def _load_depth(self, run_dirs: list[Path], name: str) -> None:
        from trm_core.errors import UserError
        from trm_core.experiments.depth_compare import depth_compare

        try:
            try:
                result = depth_compare(run_dirs, name, paired=True)
            except UserError:  # seeds that do not pair up: the table and curve without Δ
                result = depth_compare(run_dirs, name)
            self.post_message(DepthReady(result))
        except UserError as e:
            self.post_message(DepthReady(None, str(e)))

    @on(DepthReady)
    def _on_depth(self, msg: DepthReady) -> None:
        if not self.depth_mode:
            return
        title = self.query_one("#compare-title", Static)
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        verdict = self.query_one("#compare-verdict", Static)
        if msg.result is None:
            title.update(Text(f"depth mode: {msg.error}", style="red"))
            verdict.update(Text("A depth study: Evaluation screen (ctrl+e on Runs), F7.", style="dim"))
            self.query_one("#compare-plot", Static).update("")
            self.depth = None
            return
        self.depth = r = msg.result
        skipped = f" · {len(r['skipped'])} without it" if r["skipped"] else ""
        more = " · F6 next" if self.depth_file != self.depth_files[-1] else ""
        title.update(f"{self.depth_file} · ± 95% CI · Δ paired vs trained{skipped}{more}")
        table.add_columns("group", "depth", "n", "accuracy", "Δ vs trained")
        for cells in depth_rows(r):
            table.add_row(*cells)
        verdict.update(Text(" ".join(r.get("paired_notes", [])), overflow="ellipsis"))
        self.call_after_refresh(self._draw)

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        plot = self.query_one("#compare-plot", Static)
        if self.depth_mode:
            if self.depth is not None:
                from ..depth_plot import render_depth_curves

                w, h = plot.size.width or 80, max(plot.size.height or 12, 8)
                plot.update(Text.from_ansi(render_depth_curves(self.depth, width=w, height=h)))
            return
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
