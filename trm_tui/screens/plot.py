"""The plot screen: one metric of several runs overlaid (the Runs tab's marked runs, `p`).

The chart is the Train tab's (`LossChart`): `m` cycles the metric, `x` the axis (step, tokens,
wall time), `s` the EMA smoothing, F7 the log scale; `e` exports the plot as SVG, PNG
(matplotlib) or CSV into `plots/`. The runs' metrics.jsonl are tailed, so running ones grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from trm_core.errors import UserError
from trm_core.metrics.series import PlotSpec
from trm_core.printable import printable
from trm_core.runs.history import RunHistory

from ..widgets.loss_chart import LossChart
from .modals import NameModal

TAIL_S = 2.0


@dataclass
class PlotRequested(Message):
    """Open the plot screen on these runs: (label, run directory) each."""

    runs: list[tuple[str, Path]]


class PlotScreen(Screen[None]):
    DEFAULT_CSS = """
    PlotScreen #plot-title { height: 1; color: $text-muted; }
    PlotScreen #plot-chart { height: 1fr; }
    PlotScreen #plot-legend { height: auto; max-height: 4; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back", id="plot.close"),
        Binding("f7", "toggle_log", "Log scale", id="plot.log_scale"),
        Binding("e", "export", "Export", id="plot.export", tooltip="Write the plot to SVG, PNG or CSV"),
    ]

    def __init__(
        self, runs: list[tuple[str, Path]], *, spec: PlotSpec | None = None, export_dir: Path
    ) -> None:
        super().__init__()
        self.run_dirs = runs
        self.histories = [(label, RunHistory()) for label, _ in runs]
        self.initial_spec = spec or PlotSpec()
        self.export_dir = export_dir

    def compose(self) -> ComposeResult:
        yield Static(id="plot-title")
        yield LossChart(id="plot-chart")
        yield Static(id="plot-legend")
        yield Footer()

    @property
    def chart(self) -> LossChart:
        return self.query_one("#plot-chart", LossChart)

    def on_mount(self) -> None:
        chart = self.chart
        chart.empty_message = "nothing logged yet"
        chart.spec = self.initial_spec
        self._tail()
        chart.set_runs(self.histories)
        chart.focus()
        self.watch(chart, "spec", self._describe)
        self.set_interval(TAIL_S, self._tail)

    def _tail(self) -> None:
        new = False
        for (_, path), (_, h) in zip(self.run_dirs, self.histories, strict=True):
            new = bool(h.follow(path / "metrics.jsonl")) or new
        if new and self.is_mounted:
            self.chart.refresh()
            self._describe()

    def _describe(self, _spec: object = None) -> None:
        n = len(self.run_dirs)
        self.query_one("#plot-title", Static).update(
            Text.assemble(
                f"{n} run{'s' if n != 1 else ''}", ("  m metric · x axis · s smooth · e export", "dim")
            )
        )
        legend = Text()
        for line in self.chart.lines():
            legend.append("━ ", style=line.style)
            legend.append(printable(line.label))
            legend.append(f" {line.points[-1][1]:.4g}" if line.points else " –", style="dim")
            legend.append("   ")
        self.query_one("#plot-legend", Static).update(legend)

    def action_toggle_log(self) -> None:
        self.chart.log_scale = not self.chart.log_scale

    def action_export(self) -> None:
        spec = self.chart.spec
        proposal = f"{spec.metric}-vs-{spec.x}.svg"
        self.app.push_screen(
            NameModal(f"Export to {self.export_dir}/ as .svg, .png or .csv", proposal), self._export
        )

    def _export(self, name: str | None) -> None:
        if not name:
            return
        from trm_core.metrics.export import export_plot, plotted

        spec = self.chart.spec
        try:
            path = export_plot(
                self.export_dir / name, plotted(self.histories, spec), spec, log_scale=self.chart.log_scale
            )
        except UserError as e:
            self.app.notify(printable(str(e)), title="Not exported", severity="error", markup=False)
            return
        self.app.notify(printable(f"wrote {path}"), markup=False)

    def action_close(self) -> None:
        self.app.pop_screen()
