"""The Evaluation screen's depth-study row: H-cycles and halting thresholds to evaluate a checkpoint
at. The screen asks the app's jobs to run the study (`Jobs.depth_study`: every combination, written
to RUN/depth.json) and draws its curve (`depth_curve`)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Static

__all__ = ["DepthStudyRow", "depth_curve"]


def depth_curve(run_dir: Path, width: int, height: int) -> Text:
    """The run's RUN/depth.json as the plot `compare --depth depth.json --plot` draws."""
    from trm_core.errors import UserError
    from trm_core.evaluation.depth_study import DEPTH_FILE
    from trm_core.experiments.depth_compare import depth_compare

    from ..depth_plot import render_depth_curves

    try:
        result = depth_compare([run_dir], DEPTH_FILE)
    except UserError as e:
        return Text(str(e), style="red")
    return Text.from_ansi(render_depth_curves(result, width=width, height=height))


class DepthStudyRow(Horizontal):
    DEFAULT_CSS = """
    DepthStudyRow { height: 1; padding: 0 1; }
    DepthStudyRow .eval-label { padding: 0 1 0 0; color: $text-muted; }
    DepthStudyRow #eval-H, DepthStudyRow #eval-halt { width: 14; }
    DepthStudyRow #eval-depth-hint { width: 1fr; padding: 0 0 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("H-cycles", classes="eval-label")
        yield Input(placeholder="1,2,4,8", id="eval-H", compact=True)
        yield Label(" halt", classes="eval-label")
        yield Input(placeholder="ACT: 0.3,0.9", id="eval-halt", compact=True)
        yield Static("F7 depth study → depth.json", id="eval-depth-hint")

    def lists(self) -> tuple[list[int], list[float]] | None:
        """The H-cycles and halt thresholds typed; None (with a notice) when there is nothing to run."""
        from trm_core.errors import UserError
        from trm_core.evaluation.depth_study import parse_list

        try:
            H = parse_list(self.query_one("#eval-H", Input).value, "H-cycles", int, 1, 64)
            halt = parse_list(self.query_one("#eval-halt", Input).value, "the halt threshold", float, 0, 1)
        except UserError as e:
            self.app.notify(str(e), severity="error")
            return None
        if not H and not halt:
            self.app.notify(
                "Type the H-cycles (e.g. 1,2,4,8) or halt thresholds to study.", severity="warning"
            )
            return None
        return H, halt
