"""Evaluation in the app: score a run on held-out problems, then browse the answers.

F5 asks the app's job owner (`app.jobs.evaluate`, trm_tui/jobs.py) to run `Backend.evaluate_run`
(greedy, with and without the calculator; the record and samples land in run_dir/eval/); its
progress and result come back on `jobs.eval_news`. The screen shows both accuracies and a table
of samples (✓/✗, gold, predicted, question) that F6 filters to the wrong ones. The last record
of the run is shown when the screen opens. Closing the screen stops its evaluation, as do the
app's stop, quit and hang-up (all through the job owner).

A depth study (F7): the checkpoint evaluated at every H-cycles × halting-threshold value typed in
the second row (`app.jobs.depth_study` → `Backend.depth_study`, written to RUN/depth.json as
`trm-tui eval --json` writes it), then its curve of accuracy against depth in place of the
samples; `trm-tui compare --depth depth.json` and the compare view's depth mode read the same file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Select, Static

from trm_core.evaluation.record import latest_eval

from ..messages import DepthProgress, DepthStudyDone, EvalFinished, EvalNews, EvalProgress
from ..widgets.depth_study import DepthStudyRow, depth_curve

if TYPE_CHECKING:
    from ..app import TrmApp
    from ..jobs import Evaluation

MAX_SAMPLES_BYTES = 16 << 20  # a samples file bigger than this is not shown


def read_samples(run_dir: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples a record points at (bounded; unreadable lines skipped)."""
    rel = record.get("samples")
    if not isinstance(rel, str):
        return []
    path = run_dir / rel
    try:
        if path.stat().st_size > MAX_SAMPLES_BYTES:
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if isinstance(s, dict):
            out.append(s)
    return out


def summary(record: dict[str, Any]) -> Text:
    t = Text()
    t.append(f"{record['accuracy']:.1%}", style="bold green")
    t.append(" with calculator")
    off = record.get("accuracy_no_calculator")
    if off is not None:
        t.append(" · ")
        t.append(f"{off:.1%}", style="bold")
        t.append(" without")
    t.append(
        f" · {record.get('n', '?')} {record.get('split', '')} problems, step {record.get('step', '?')}"
        f" · {record.get('seconds', 0):.1f} s · {record.get('tokens_per_second', 0):.0f} tok/s",
        style="dim",
    )
    return t


class EvalScreen(Screen[None]):
    DEFAULT_CSS = """
    EvalScreen #eval-curve { height: 1fr; display: none; }
    EvalScreen.depth-shown #eval-curve { display: block; }
    EvalScreen.depth-shown #eval-samples, EvalScreen.depth-shown #eval-detail-box { display: none; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="eval.close"),
        Binding("f5", "start", "Evaluate", id="eval.start", tooltip="Evaluate with these settings"),
        Binding("f6", "toggle_wrong", "Wrong only", id="eval.wrong_only", tooltip="Show only wrong answers"),
        Binding(
            "f7",
            "depth_study",
            "Depth study",
            id="eval.depth_study",
            tooltip="Evaluate at every H-cycles / halt threshold listed; plot accuracy against depth",
        ),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.samples: list[dict[str, Any]] = []
        self.record: dict[str, Any] | None = None
        self.wrong_only = False
        self.running = False
        self.job: Evaluation | None = None  # this screen's evaluation, while the app's jobs run it

    @property
    def tapp(self) -> TrmApp:
        return cast("TrmApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Evaluate {self.run_dir.name}", style="bold"), id="eval-title")
        with Horizontal(id="eval-controls"):
            yield Select(
                [("best", "best"), ("latest", "latest")],
                value="best",
                id="eval-which",
                allow_blank=False,
                compact=True,
            )
            yield Select(
                [("held-out val", "val"), ("test split", "test")],
                value="val",
                id="eval-split",
                allow_blank=False,
                compact=True,
            )
            yield Label("limit", classes="eval-label")
            yield Input("100", id="eval-limit", type="integer", compact=True)
            yield Button("Evaluate", id="eval-start", variant="primary", compact=True)
        yield DepthStudyRow(id="eval-depth-row")
        with Horizontal(id="eval-progress-row"):
            yield ProgressBar(id="eval-progress", show_eta=False)
        yield Static(
            Text("F5 evaluates: greedy answers, with and without the calculator", style="dim"),
            id="eval-summary",
        )
        yield Static(id="eval-curve")
        yield DataTable(id="eval-samples", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="eval-detail-box"):
            yield Static(id="eval-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#eval-samples", DataTable)
        table.add_columns("#", "ok", "gold", "answer", "question")
        self.query_one("#eval-progress", ProgressBar).update(total=1, progress=0)
        record = latest_eval(self.run_dir)
        if record is not None:
            self._show(record, read_samples(self.run_dir, record))
        self.query_one("#eval-start", Button).focus()
        self.tapp.jobs.eval_news.subscribe(self, self._on_news)

    # ------------------------------------------------------------------ actions

    def action_close(self) -> None:
        if self.running:  # this screen's evaluation: it ends after its batch, writing nothing
            self.tapp.jobs.stop_evaluation()
        self.dismiss(None)

    def _refused(self) -> bool:
        """True (with a notice) while an evaluation runs: this screen's, or a closed one's, stopping."""
        if self.running:
            self.app.notify("Already evaluating.", severity="warning")
            return True
        if self.tapp.jobs.evaluation is not None:
            self.app.notify(
                "The last evaluation is still stopping; try again in a moment.", severity="warning"
            )
            return True
        return False

    @on(Button.Pressed, "#eval-start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if self._refused():
            return
        text = self.query_one("#eval-limit", Input).value.strip()
        try:
            limit = int(text) if text else None
        except ValueError:
            limit = -1
        if limit is not None and limit < 1:
            self.app.notify("limit must be a whole number ≥ 1 (empty = all problems).", severity="error")
            return
        which = str(self.query_one("#eval-which", Select).value)
        split = str(self.query_one("#eval-split", Select).value)
        self.job = self.tapp.jobs.evaluate(self.run_dir, which, split, limit)
        if self.job is None:
            return
        self.running = True
        self.remove_class("depth-shown")
        self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-summary", Static).update(
            Text(f"loading {which} and the {split} problems…", style="yellow")
        )

    def _limit(self) -> int | None:
        """The limit typed (empty = every problem); ValueError for anything but a number ≥ 1."""
        text = self.query_one("#eval-limit", Input).value.strip()
        limit = int(text) if text else None
        if limit is not None and limit < 1:
            raise ValueError
        return limit

    def action_depth_study(self) -> None:
        if self._refused():
            return
        try:
            limit = self._limit()
        except ValueError:
            self.app.notify("limit must be a whole number ≥ 1 (empty = all problems).", severity="error")
            return
        which = str(self.query_one("#eval-which", Select).value)
        split = str(self.query_one("#eval-split", Select).value)
        lists = self.query_one(DepthStudyRow).lists()
        if lists is None:
            return
        self.job = self.tapp.jobs.depth_study(self.run_dir, which, split, limit, *lists)
        if self.job is not None:
            self.running = True
            self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
            self.query_one("#eval-summary", Static).update(
                Text(f"depth study: loading {which} and the {split} problems…", style="yellow")
            )

    def _on_news(self, msg: EvalNews) -> None:
        """What the app's jobs report about an evaluation; only this screen's is shown."""
        if msg.job is None or msg.job is not self.job:
            return
        if isinstance(msg, EvalProgress):
            self._on_progress(msg)
        elif isinstance(msg, EvalFinished):
            self._on_finished(msg)
        elif isinstance(msg, DepthProgress):
            self._on_depth_progress(msg)
        elif isinstance(msg, DepthStudyDone):
            self._on_depth_done(msg)

    def _on_depth_progress(self, msg: DepthProgress) -> None:
        self.query_one("#eval-progress", ProgressBar).update(total=msg.total, progress=msg.done)
        self.query_one("#eval-summary", Static).update(
            Text(f"depth study at {msg.label}: {msg.done}/{msg.total} answers", style="yellow")
        )

    def _on_depth_done(self, msg: DepthStudyDone) -> None:
        self.running, self.job = False, None
        self.query_one("#eval-progress", ProgressBar).update(total=1, progress=1)
        if msg.cancelled:
            self.query_one("#eval-summary", Static).update(Text("depth study stopped", style="yellow"))
            return
        if msg.error:
            self.query_one("#eval-summary", Static).update(
                Text(f"depth study failed: {msg.error}", style="bold red")
            )
            return
        parts = []
        for r in msg.rows:
            label = f"H{r['H_cycles']}" + (
                "" if r["halt_threshold"] is None else f" t{r['halt_threshold']:g}"
            )
            parts.append(f"{label} {r['accuracy']:.1%}")
        self.query_one("#eval-summary", Static).update(
            Text("depth study (calculator as the profile says): " + " · ".join(parts) + " → depth.json")
        )
        self.add_class("depth-shown")
        self.set_timer(0.1, self._draw_curve)  # once the curve has taken the samples' place

    def _draw_curve(self) -> None:
        curve = self.query_one("#eval-curve", Static)
        width, height = curve.size.width or 78, curve.size.height or 10
        curve.update(depth_curve(self.run_dir, width, max(height, 8)))

    def on_resize(self) -> None:
        if self.has_class("depth-shown"):
            self._draw_curve()

    def action_toggle_wrong(self) -> None:
        self.wrong_only = not self.wrong_only
        self._fill()

    # ------------------------------------------------------------------ news from the app's jobs

    def _on_progress(self, msg: EvalProgress) -> None:
        self.query_one("#eval-progress", ProgressBar).update(total=msg.total, progress=msg.done)
        half = msg.total // 2
        what = "with calculator" if msg.done < half or not half else "without calculator"
        self.query_one("#eval-summary", Static).update(
            Text(f"evaluating {what}: {msg.done}/{msg.total} answers", style="yellow")
        )

    def _on_finished(self, msg: EvalFinished) -> None:
        self.running, self.job = False, None
        if msg.cancelled:
            self.query_one("#eval-summary", Static).update(Text("evaluation stopped", style="yellow"))
            return
        if msg.error or msg.record is None:
            self.query_one("#eval-summary", Static).update(
                Text(f"evaluation failed: {msg.error}", style="bold red")
            )
            return
        self._show(msg.record, msg.samples)
        self.app.notify(f"{self.run_dir.name}: {msg.record['accuracy']:.1%} on {msg.record['n']} problems")

    # ------------------------------------------------------------------ view

    def _show(self, record: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        self.record, self.samples = record, samples
        bar = self.query_one("#eval-progress", ProgressBar)
        bar.update(total=1, progress=1)
        self.query_one("#eval-summary", Static).update(summary(record))
        self._fill()

    def shown(self) -> list[dict[str, Any]]:
        return [s for s in self.samples if not (self.wrong_only and s.get("correct"))]

    def _fill(self) -> None:
        table = self.query_one("#eval-samples", DataTable)
        table.clear()
        for s in self.shown():
            ok = Text("✓", style="green") if s.get("correct") else Text("✗", style="bold red")
            table.add_row(
                str(s.get("index", "")),
                ok,
                str(s.get("expected") or "–"),
                str(s.get("predicted") or "–"),
                str(s.get("question", "")).replace("\n", " ")[:200],
                key=str(s.get("index", id(s))),
            )
        title = f"{'wrong answers' if self.wrong_only else 'all answers'} ({len(self.shown())}) · F6 toggles"
        table.border_title = title
        self._detail(self.shown()[0] if self.shown() else None)

    @on(DataTable.RowHighlighted, "#eval-samples")
    def _on_row(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        sample = next((s for s in self.shown() if str(s.get("index", id(s))) == key), None)
        self._detail(sample)

    @on(DataTable.RowSelected, "#eval-samples")
    def _on_enter(self, event: DataTable.RowSelected) -> None:
        """Enter: the answer in full, with the calculator and without (trm_tui/screens/answer.py)."""
        from .answer import AnswerModal

        key = event.row_key.value
        sample = next((s for s in self.shown() if str(s.get("index", id(s))) == key), None)
        if sample is not None:
            self.app.push_screen(AnswerModal(sample))

    def _detail(self, s: dict[str, Any] | None) -> None:
        box = self.query_one("#eval-detail", Static)
        if s is None:
            box.update("")
            return
        t = Text()
        t.append("Question: ", style="bold")
        t.append(str(s.get("question", "")) + "\n")
        t.append("Gold: ", style="bold")
        t.append(f"{s.get('expected')}   ")
        t.append("Generated: ", style="bold")
        t.append(str(s.get("generated", "")).strip())
        box.update(t)
