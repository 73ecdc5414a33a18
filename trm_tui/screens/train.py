"""The Train tab: start, stop and resume the selected profile in a background worker.

The worker thread constructs the Trainer and runs it; its `on_event` callback only posts
`TrainEvent` messages. Handlers append to plain lists (cheap) and mark the view dirty; a timer
redraws the chart, progress and panels at most four times a second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState

from trm_core.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EvalEvent,
    LogEvent,
    PhaseEvent,
    StartEvent,
    StepEvent,
)
from trm_core.printable import printable
from trm_core.profile import Profile, ProfileError, load_profile
from trm_core.runs.listing import run_info

from ..formatting import fmt_duration, fmt_rate
from ..messages import TrainEvent, TrainPrepared
from ..widgets.early_stop import EarlyStopPanel
from ..widgets.loss_chart import LossChart
from .mismatch import MismatchModal

if TYPE_CHECKING:
    from ..app import TrmApp

REDRAW_S = 0.25
STATE_STYLES = {
    "idle": "dim",
    "checking": "yellow",
    "starting": "yellow",
    "compiling": "bold yellow",
    "training": "bold green",
    "stopping": "bold yellow",
    "finished": "green",
    "early-stopped": "green",
    "stopped": "yellow",
    "error": "bold red",
}


def run_dir_for(runs_dir: Path, profile: Profile) -> Path:
    return runs_dir / profile.name


def short(run_dir: Path) -> str:
    """runs/quickstart rather than a long absolute path."""
    return f"{run_dir.parent.name}/{run_dir.name}"


class TrainPane(Vertical):
    BINDINGS = [
        Binding("f5", "start", "Start/resume", id="train.start", tooltip="Train the selected profile"),
        Binding("f6", "stop", "Stop", id="train.stop", tooltip="Stop training; a checkpoint is saved"),
        Binding("f7", "toggle_log", "Log scale", id="train.log_scale", tooltip="Toggle log-scale loss axis"),
        Binding("f8", "start_fresh", "Fresh run", id="train.fresh", tooltip="Train into a new run directory"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = "idle"
        self.profile: Profile | None = None
        self.run_dir: Path | None = None
        self._trainer = None
        self._stop_requested = False
        self._quit_after = False
        self._log_new = False
        self._reset_data()

    @property
    def tapp(self) -> TrmApp:
        return self.app  # type: ignore[return-value]

    def _reset_data(self) -> None:
        self.train_pts: list[tuple[float, float]] = []
        self.val_pts: list[tuple[float, float]] = []
        self.last_step: StepEvent | None = None
        self.last_eval: EvalEvent | None = None
        self.last_es: EarlyStopEvent | None = None
        self.start_event: StartEvent | None = None
        self.done: DoneEvent | None = None
        self.compiling_since: float | None = None  # wall clock of the "compiling" PhaseEvent
        self.message = ""
        self._dirty = True

    @property
    def training(self) -> bool:
        return self.state in ("starting", "compiling", "training", "stopping")

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="train-head")
        with Horizontal(id="train-progress-row"):
            yield ProgressBar(id="train-progress", show_eta=False)
            yield Static(id="train-progress-text")
        with Horizontal(id="train-body"):
            yield LossChart(id="train-chart")
            with Vertical(id="train-side"):
                yield Static(id="train-stats")
                yield EarlyStopPanel(id="train-early-stop")
        yield RichLog(id="train-log", wrap=True, markup=False, max_lines=2000)

    def on_mount(self) -> None:
        self.query_one("#train-chart", LossChart).empty_message = "press F5 to train"
        self.query_one("#train-stats", Static).border_title = "Now"
        self.set_interval(REDRAW_S, self._redraw)
        self.watch(self.app, "profile_path", self._profile_changed)

    def _profile_changed(self, path: Path | None) -> None:
        self._dirty = True
        if self.training or path is None:
            return
        try:
            self.profile = load_profile(path)
        except ProfileError:
            self.profile = None

    # ------------------------------------------------------------------ actions

    def action_start(self, fresh: bool = False) -> None:
        if self.training or self.state == "checking":
            self.app.notify("Training is already running; F6 stops it.", severity="warning")
            return
        path = self.tapp.profile_path
        if path is None:
            self.app.notify("Pick a profile first (F1).", severity="warning")
            return
        self._set_state("checking")
        self._prepare(Path(path), fresh)

    def action_start_fresh(self) -> None:
        self.action_start(fresh=True)

    def action_stop(self, quit_after: bool = False) -> None:
        self._quit_after = self._quit_after or quit_after
        if not self.training:
            if not quit_after:
                self.app.notify("Nothing is training.", severity="information")
            return
        self._stop_requested = True
        self._set_state("stopping")
        self.log_line("stop requested: saving a checkpoint…", "yellow")
        if self._trainer is not None:
            self._trainer.request_stop()

    def action_toggle_log(self) -> None:
        chart = self.query_one("#train-chart", LossChart)
        chart.log_scale = not chart.log_scale
        self._dirty = True

    # ------------------------------------------------------------------ safety check, then train

    @work(thread=True, exclusive=True, group="train-check", exit_on_error=False)
    def _prepare(self, path: Path, fresh: bool) -> None:
        backend = self.tapp.backend
        runs_dir = self.tapp.runs_dir
        try:
            profile = load_profile(path)
        except ProfileError as e:
            self.post_message(TrainPrepared(None, runs_dir, None, error=e.problems[0]))
            return
        run_dir = run_dir_for(runs_dir, profile)
        try:
            if fresh and run_dir.exists():
                run_dir = backend.propose_fresh_run_dir(run_dir)
            info = run_info(run_dir)
            if info.status == "running":
                self.post_message(TrainPrepared(profile, run_dir, None, busy_pid=info.pid))
                return
            mismatches = backend.check_run_dir(profile, run_dir)
            fresh_dir = backend.propose_fresh_run_dir(run_dir) if mismatches else None
        except Exception as e:  # noqa: BLE001 — a broken checkpoint must not kill the app
            self.post_message(TrainPrepared(profile, run_dir, None, error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(TrainPrepared(profile, run_dir, mismatches, fresh_dir))

    @on(TrainPrepared)
    def _on_prepared(self, msg: TrainPrepared) -> None:
        if msg.error or msg.profile is None:
            self._set_state("error", msg.error)
            self.log_line(f"cannot start: {msg.error}", "red")
            self.app.notify(
                printable(msg.error), title="Cannot start training", severity="error", markup=False
            )
            return
        if msg.busy_pid is not None:
            text = f"{printable(msg.run_dir.name)} is being trained by another process (pid {msg.busy_pid})"
            self._set_state("idle")
            self.log_line(text, "yellow")
            self.app.notify(text + "; open it in Runs (F4) to watch.", severity="warning", markup=False)
            return
        profile, run_dir = msg.profile, msg.run_dir
        if msg.mismatches is None:
            self._launch(profile, run_dir, resume=True, note=f"new run in {short(run_dir)}")
        elif not msg.mismatches:
            self._launch(
                profile, run_dir, resume=True, note=f"profile identical to {run_dir.name}'s: resuming"
            )
        else:
            assert msg.fresh_dir is not None
            fresh_dir = msg.fresh_dir

            def chosen(choice: str | None) -> None:
                if choice == "resume":
                    changed = ", ".join(m.key for m in msg.mismatches or [])
                    self._launch(profile, run_dir, resume=True, note=f"resuming despite changes: {changed}")
                elif choice == "fresh":
                    self._launch(profile, fresh_dir, resume=False, note=f"fresh run in {short(fresh_dir)}")
                else:
                    self._set_state("idle")
                    self.log_line("cancelled: the checkpoint and its profile are untouched", "dim")

            self.app.push_screen(MismatchModal(msg.mismatches, run_dir, fresh_dir), chosen)

    def _launch(self, profile: Profile, run_dir: Path, *, resume: bool, note: str) -> None:
        self._reset_data()
        self.profile, self.run_dir = profile, run_dir
        self._stop_requested = False
        self._trainer = None
        self.log_line(note, "cyan")
        self._set_state("starting")
        self._train(profile, run_dir, resume)

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self, profile: Profile, run_dir: Path, resume: bool) -> DoneEvent:
        post = self.post_message
        trainer = self.tapp.backend.trainer_factory(
            profile, run_dir, on_event=lambda ev: post(TrainEvent(ev)), resume=resume
        )
        self._trainer = trainer
        if self._stop_requested:  # stop pressed while the trainer was being built
            trainer.request_stop()
        return trainer.run()

    # ------------------------------------------------------------------ events (app thread)

    @on(TrainEvent)
    def _on_train_event(self, msg: TrainEvent) -> None:
        ev = msg.event
        self._dirty = True
        if isinstance(ev, StepEvent):
            self.last_step = ev
            self.train_pts.append((ev.step, ev.loss))
            if self.state == "starting":
                self._set_state("training")
        elif isinstance(ev, EvalEvent):
            self.last_eval = ev
            self.val_pts.append((ev.step, ev.val_loss))
        elif isinstance(ev, EarlyStopEvent):
            self.last_es = ev
            if ev.state == "stopped":
                self.log_line(
                    f"early stopping at step {ev.step}: best {ev.best_val_loss:.4f} @ {ev.best_step}"
                )
        elif isinstance(ev, StartEvent):
            self.start_event = ev
            what = f"resumed at step {ev.step}" if ev.resumed else "started"
            self.log_line(
                f"{what}: {ev.profile} on {ev.device}, {ev.params / 1e6:.2f}M params, {ev.total_steps} steps"
            )
            if self.state == "starting":
                self._set_state("training")
        elif isinstance(ev, PhaseEvent):  # compiling: its own state, an animated bar and a clock
            self.compiling_since = ev.time if ev.phase == "compiling" else None
            self.log_line(ev.detail, "dim")
            if self.state in ("starting", "compiling", "training"):
                self._set_state("compiling" if ev.phase == "compiling" else "training")
        elif isinstance(ev, CheckpointEvent):
            best = ", best" if ev.is_best and ev.reason != "best" else ""
            self.log_line(f"checkpoint step {ev.step} ({ev.reason}{best})", "dim")
        elif isinstance(ev, LogEvent):
            style = {"warning": "yellow", "error": "red"}.get(ev.level, "")
            self.log_line(ev.message, style)
        elif isinstance(ev, DoneEvent):
            self.done = ev
            text = f"done: {ev.reason} at step {ev.step}"
            if ev.best_val_loss is not None:
                text += f", best val {ev.best_val_loss:.4f}"
            if ev.message:
                text += f" — {ev.message}"
            self.log_line(text, "red" if ev.reason == "error" else "green")
            self._set_state(ev.reason if ev.reason != "error" else "error", ev.message)
            self._redraw()

    def on_unmount(self) -> None:
        if (
            self._trainer is not None
        ):  # the app is going away (e.g. SIGTERM): stop, so the checkpoint is saved
            self._trainer.request_stop()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "train":
            return
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            text = f"{type(err).__name__}: {err}"
            self._set_state("error", text)
            self.log_line(f"training crashed: {text}", "red")
            self.app.notify(
                printable(text), title="Training crashed", severity="error", timeout=10, markup=False
            )
        elif event.state == WorkerState.SUCCESS and self.done is None:
            result = event.worker.result
            if isinstance(result, DoneEvent):
                self._on_train_event(TrainEvent(result))
        if event.state == WorkerState.CANCELLED and self._trainer is not None:
            self._trainer.request_stop()  # the app is exiting: the thread must end (and save) on its own
        if event.state in (WorkerState.ERROR, WorkerState.SUCCESS, WorkerState.CANCELLED):
            self._trainer = None
            if self.state in ("starting", "training", "stopping"):
                self._set_state("stopped")
            self._redraw()
            if self._quit_after:
                self.app.exit()

    # ------------------------------------------------------------------ view

    def log_line(self, text: str, style: str = "") -> None:
        log = self.query_one("#train-log", RichLog)
        log.write(Text(printable(text), style=style))  # names, paths and messages never drive the terminal
        self._dirty = self._log_new = True  # the redraw scrolls the log: RichLog's auto-scroll lags bursts

    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self._dirty = True
        self._redraw()

    def _redraw(self) -> None:
        if not (self._dirty or self.state == "compiling") or not self.is_mounted:
            return
        self._dirty = False
        self._draw_head()
        self._draw_progress()
        self.query_one("#train-chart", LossChart).set_series(self.train_pts, self.val_pts)
        self._draw_stats()
        if self._log_new:
            self._log_new = False
            self.query_one("#train-log", RichLog).scroll_end(animate=False)
        es = self.profile.early_stopping if self.profile else None
        self.query_one("#train-early-stop", EarlyStopPanel).show(self.last_es, es)

    def _draw_head(self) -> None:
        head = Text()
        name = self.profile.name if self.profile else "no profile"
        head.append(printable(name), style="bold")
        if self.run_dir is not None:
            head.append(f" → {printable(short(self.run_dir))}", style="dim")
        head.append("  ")
        head.append(f"● {self.state}", style=STATE_STYLES.get(self.state, ""))
        if self.message and self.state == "error":
            head.append(f" {printable(self.message)}", style="red")
        self.query_one("#train-head", Static).update(head)

    def _draw_progress(self) -> None:
        bar = self.query_one("#train-progress", ProgressBar)
        text = self.query_one("#train-progress-text", Static)
        ev = self.last_step
        total = ev.total_steps if ev else (self.start_event.total_steps if self.start_event else 0)
        step = ev.step if ev else (self.start_event.step if self.start_event else 0)
        if self.done is not None:
            step = self.done.step
        if self.state == "compiling" and self.compiling_since is not None:
            bar.update(total=None, progress=0)  # animated: compiling is not stepping
            text.update(f"compiling… {fmt_duration(time.time() - self.compiling_since)}")
            return
        if total:
            bar.update(total=total, progress=step)
        elif self.state == "starting":  # building data / model: an indeterminate (animated) bar
            bar.update(total=None, progress=0)
        else:
            bar.update(total=1, progress=0)
        eta = fmt_duration(ev.eta_s) if ev is not None and self.training else "--:--"
        text.update(f"step {step}/{total or '?'}  ETA {eta}")

    def _draw_stats(self) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(no_wrap=True)
        ev = self.last_step
        grid.add_row("loss", f"{ev.loss:.4f}" if ev else "–")
        grid.add_row("val", f"{self.last_eval.val_loss:.4f}" if self.last_eval else "–")
        grid.add_row("lr", f"{ev.lr:.2e}" if ev else "–")
        grid.add_row("tok/s", fmt_rate(ev.tokens_per_s) if ev else "–")
        grid.add_row("elapsed", fmt_duration(ev.elapsed_s) if ev else "–")
        self.query_one("#train-stats", Static).update(grid)
