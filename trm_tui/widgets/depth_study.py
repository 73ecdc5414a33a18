"""The Evaluation screen's depth-study row: H-cycles and halting thresholds to evaluate a checkpoint
at, and the worker that runs `Backend.depth_study` (every combination, written to RUN/depth.json)
and posts its progress and result to the screen, which draws the curve (`depth_curve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

__all__ = ["DepthProgress", "DepthStudyDone", "DepthStudyRow", "depth_curve"]


class _Cancelled(Exception):
    """Raised from the progress callback to end a study nobody waits for."""


class DepthStudyDone(Message):
    def __init__(self, rows: list[dict[str, Any]], error: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.error = error


class DepthProgress(Message):
    def __init__(self, done: int, total: int, label: str) -> None:
        super().__init__()
        self.done, self.total, self.label = done, total, label


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

    def start(self, run_dir: Path, which: str, split: str, limit: int | None) -> bool:
        """Check the lists typed and start the study; False (with a notice) when there is nothing to run."""
        from trm_core.errors import UserError
        from trm_core.evaluation.depth_study import parse_list

        try:
            H = parse_list(self.query_one("#eval-H", Input).value, "H-cycles", int, 1, 64)
            halt = parse_list(self.query_one("#eval-halt", Input).value, "the halt threshold", float, 0, 1)
        except UserError as e:
            self.app.notify(str(e), severity="error")
            return False
        if not H and not halt:
            self.app.notify(
                "Type the H-cycles (e.g. 1,2,4,8) or halt thresholds to study.", severity="warning"
            )
            return False
        self._run(run_dir, which, split, limit, H, halt)
        return True

    @work(thread=True, exclusive=True, group="depth-study", exit_on_error=False)
    def _run(
        self, run_dir: Path, which: str, split: str, limit: int | None, H: list[int], halt: list[float]
    ) -> None:
        from trm_core.errors import UserError

        post = self.post_message
        worker = get_current_worker()

        def progress(done: int, total: int, label: str) -> None:
            if worker.is_cancelled:  # the screen closed or the app quits: stop after this batch
                raise _Cancelled
            post(DepthProgress(done, total, label))

        try:
            rows = cast(Any, self.app).backend.depth_study(
                run_dir, which=which, split=split, limit=limit, H_cycles=H, thresholds=halt, progress=progress
            )
        except _Cancelled:
            return
        except UserError as e:
            post(DepthStudyDone([], error=str(e)))
            return
        except Exception as e:  # noqa: BLE001 — shown on the screen; the app stays up
            post(DepthStudyDone([], error=f"{type(e).__name__}: {e}"))
            return
        post(DepthStudyDone(rows))
