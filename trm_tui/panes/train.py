"""The Train tab: start, stop and resume the selected profile's runs in a background worker.

The header names the run F5 writes: a picker of the runs made from the selected profile (newest
first, with status and step). The tab shows that run's history, read from its metrics.jsonl and
continued by the live events of a training; both go through one fold (`trm_core.runs.history`).
The worker thread constructs the Trainer and runs it; its `on_event` callback only posts
`TrainEvent` messages. Handlers fold the events (cheap) and mark the view dirty; a timer redraws
the chart, progress and panels at most four times a second.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, RichLog, Select, Static

from trm_core.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    LogEvent,
    PhaseEvent,
    StartEvent,
    StepEvent,
)
from trm_core.printable import printable
from trm_core.profile import Profile, ProfileError, load_profile
from trm_core.runs.history import RunHistory
from trm_core.runs.listing import list_runs, run_info

from ..jobs import TrainingEnded, TrainingStopping
from ..messages import TrainEvent, TrainPrepared, TrainSettled, TrainWanted
from ..screens.mismatch import MismatchModal
from ..screens.modals import ChoiceModal
from ..widgets.early_stop import EarlyStopPanel
from ..widgets.loss_chart import LossChart
from .base import Pane
from .train_view import fmt_duration, now_table, progress_text, run_label, short, state_text

REDRAW_S = 0.25


class TrainPane(Pane):
    BINDINGS = [
        Binding("f5", "start", "Start", id="train.start", tooltip="Train the selected run"),
        Binding("f6", "stop", "Stop", id="train.stop", tooltip="Stop training; a checkpoint is saved"),
        Binding("f7", "toggle_log", "Log", id="train.log_scale", tooltip="Toggle log-scale loss axis"),
        Binding("f8", "start_fresh", "Fresh", id="train.fresh", tooltip="Train into a new run directory"),
        Binding("f9", "evaluate", "Evaluate", id="train.evaluate", tooltip="Evaluate the selected run"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = "idle"
        self.message = ""
        self.profile: Profile | None = None
        self.run_dir: Path | None = None  # the run F5 writes (the picker's choice)
        self.history = RunHistory()
        self._log_new = False
        self._dirty = True
        self.compiling_since: float | None = None  # wall clock of the "compiling" PhaseEvent

    @property
    def training(self) -> bool:
        return self.state in ("starting", "compiling", "training", "stopping")

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="train-head"):
            yield Static(id="train-profile")
            # allow_blank: set_options then always re-renders the chosen run's (changed) label
            yield Select[str]([], id="train-run", prompt="choose a run", compact=True)
            yield Static(id="train-state")
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
        self.tapp.jobs.train_news.subscribe(self, self._on_news)

    def _profile_changed(self, path: Path | None) -> None:
        self._dirty = True
        if self.training or path is None:
            return
        try:
            self.profile = load_profile(path)
        except ProfileError:
            self.profile = None
        self.refresh_runs()

    # ------------------------------------------------------------------ the run picker

    def refresh_runs(self, select: Path | None = None) -> None:
        """The runs made from the profile, newest first; `select` (or the current one) stays chosen."""
        sel = self.query_one("#train-run", Select)
        if self.profile is None:
            sel.set_options([])
            self.run_dir = None
            return
        name, runs_dir = self.profile.name, self.tapp.runs_dir
        runs = [r for r in list_runs(runs_dir) if r.profile == name or (not r.profile and r.name == name)]
        options = [(run_label(r), str(r.path)) for r in runs]
        paths = [r.path for r in runs]
        for extra in (runs_dir / name, select):
            if extra is not None and extra not in paths:
                options.append((f"{extra.name} · new run", str(extra)))
                paths.append(extra)
        target = select or (self.run_dir if self.run_dir in paths else None) or paths[0]
        sel.set_options(options)
        sel.value = str(target)
        self._target_changed(target)

    @on(Select.Changed, "#train-run")
    def _run_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value:
            self._target_changed(Path(event.value))

    def _target_changed(self, run_dir: Path) -> None:
        if self.training or run_dir == self.run_dir:
            return
        self.run_dir = run_dir
        self.history = RunHistory.read(run_dir)  # what the run did so far, as it was drawn then
        self.state, self.message = "idle", ""
        self._dirty = True

    # ------------------------------------------------------------------ actions

    def action_start(self, fresh: bool = False) -> None:
        if self.training or self.state == "checking":
            self.app.notify("Training is already running; F6 stops it.", severity="warning")
            return
        path = self.tapp.profile_path
        if path is None:
            self.app.notify("Pick a profile first (F1).", severity="warning")
            return
        self.post_message(TrainWanted(Path(path), fresh))  # the Profiles tab settles unsaved edits

    @on(TrainSettled)
    def _on_settled(self, msg: TrainSettled) -> None:
        if msg.note:
            self.log_line(msg.note, msg.style)
        if msg.go and not (self.training or self.state == "checking"):
            self._set_state("checking")
            self._prepare(msg.path, self.run_dir, msg.fresh)

    def action_start_fresh(self) -> None:
        self.action_start(fresh=True)

    def action_stop(self) -> None:
        """Stop what runs: this tab's training or the Runs tab's sweep (the app's jobs own both)."""
        busy = self.tapp.jobs.busy
        if busy is None:
            self.app.notify("Nothing is training.", severity="information")
            return
        if busy == "sweep":
            self.app.notify("Stopping the sweep: its running run saves a checkpoint; F9 resumes the rest.")
        self.tapp.jobs.stop()

    def action_toggle_log(self) -> None:
        chart = self.query_one("#train-chart", LossChart)
        chart.log_scale = not chart.log_scale
        self._dirty = True

    def action_evaluate(self) -> None:
        if self.run_dir is None or not (self.run_dir / "checkpoints").is_dir():
            self.app.notify("This run has no checkpoint to evaluate yet.", severity="warning")
            return
        self.tapp.open_evaluation(self.run_dir)

    # ------------------------------------------------------------------ safety check, then train

    @work(thread=True, exclusive=True, group="train-check", exit_on_error=False)
    def _prepare(self, path: Path, target: Path | None, fresh: bool) -> None:
        backend = self.tapp.backend
        runs_dir = self.tapp.runs_dir
        try:
            profile = load_profile(path)
        except ProfileError as e:
            self.post_message(TrainPrepared(None, runs_dir, None, error=e.problems[0]))
            return
        base = runs_dir / profile.name
        run_dir = target if target is not None and target.parent == runs_dir else base
        try:
            if fresh:
                run_dir = backend.propose_fresh_run_dir(base) if base.exists() else base
            info = run_info(run_dir)
            if info.status == "running":
                self.post_message(TrainPrepared(profile, run_dir, None, busy_pid=info.pid))
                return
            mismatches = backend.check_run_dir(profile, run_dir)
            early = info.step if info.status == "early-stopped" and not fresh else None
            fresh_dir = backend.propose_fresh_run_dir(run_dir) if mismatches or early else None
        except Exception as e:  # noqa: BLE001 — a broken checkpoint must not kill the app
            self.post_message(TrainPrepared(profile, run_dir, None, error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(TrainPrepared(profile, run_dir, mismatches, fresh_dir, stopped_early=early))

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
            text = f"{msg.run_dir.name} is being trained by another process (pid {msg.busy_pid})"
            self._set_state("idle")
            self.log_line(text, "yellow")
            self.app.notify(
                printable(text + "; open it in Runs (F4) to watch."), severity="warning", markup=False
            )
            return
        profile, run_dir = msg.profile, msg.run_dir
        if msg.mismatches is None:
            self._launch(profile, run_dir, resume=True, note=f"new run in {short(run_dir)}")
        elif not msg.mismatches:
            self._resume(msg, note=f"profile identical to {run_dir.name}'s: resuming")
        else:
            assert msg.fresh_dir is not None
            fresh_dir = msg.fresh_dir

            def chosen(choice: str | None) -> None:
                if choice == "resume":
                    changed = ", ".join(m.key for m in msg.mismatches or [])
                    self._resume(msg, note=f"resuming despite changes: {changed}")
                elif choice == "fresh":
                    self._launch(profile, fresh_dir, resume=False, note=f"fresh run in {short(fresh_dir)}")
                else:
                    self._set_state("idle")
                    self.log_line("cancelled: the checkpoint and its profile are untouched", "dim")

            self.app.push_screen(MismatchModal(msg.mismatches, run_dir, fresh_dir), chosen)

    def _resume(self, msg: TrainPrepared, note: str) -> None:
        """Resume; a run that stopped early is first asked about: continuing it past early stopping
        (from its last checkpoint, with the profile's patience counted afresh) or a fresh run. Nothing
        of the run is touched until one is chosen."""
        assert msg.profile is not None
        profile, run_dir = msg.profile, msg.run_dir
        if msg.stopped_early is None or msg.fresh_dir is None:
            self._launch(profile, run_dir, resume=True, note=note)
            return
        fresh_dir, patience = msg.fresh_dir, profile.early_stopping.patience

        def chosen(choice: str | None) -> None:
            if choice == "extend":
                note = f"continuing past early stopping from step {msg.stopped_early}, patience {patience}"
                self._launch(profile, run_dir, resume=True, note=note, extend_patience=patience)
            elif choice == "fresh":
                self._launch(profile, fresh_dir, resume=False, note=f"fresh run in {short(fresh_dir)}")
            else:
                self._set_state("idle")
                self.log_line("cancelled: nothing trained, the run's files are untouched", "dim")

        question = (
            f"{run_dir.name} stopped early at step {msg.stopped_early}. Continue past early stopping "
            f"from its last checkpoint, with a patience of {patience} evaluations "
            "(early_stopping.patience), or train a fresh run?"
        )
        choices = [
            ("extend", f"Continue (patience {patience})", "primary"),
            ("fresh", f"Fresh: {fresh_dir.name}", "default"),
        ]
        self.app.push_screen(ChoiceModal(question, choices, focus="extend"), chosen)

    def _launch(
        self, profile: Profile, run_dir: Path, *, resume: bool, note: str, extend_patience: int | None = None
    ) -> None:
        if self.tapp.jobs.busy:
            self._set_state("idle")
            self.app.notify("A sweep is running; stop it first (F6).", severity="warning")
            return
        self.profile = profile
        self.run_dir = None
        self._target_changed(run_dir)  # its history so far: a resume continues the curve
        self.log_line(note, "cyan")
        self._set_state("starting")
        self.refresh_runs(select=run_dir)
        options = {"extend_patience": extend_patience} if extend_patience else {}
        self.tapp.jobs.train(profile, run_dir, resume, **options)

    # ------------------------------------------------------------------ events (app thread)

    def _on_news(self, news: TrainEvent | TrainingStopping | TrainingEnded) -> None:
        """What the app's jobs say about the training this tab started."""
        if isinstance(news, TrainEvent):
            self._on_train_event(news)
        elif isinstance(news, TrainingStopping):
            self._set_state("stopping")
            self.log_line("stop requested: saving a checkpoint…", "yellow")
        else:
            self._on_ended(news)

    def _on_train_event(self, msg: TrainEvent) -> None:
        ev = msg.event
        self._dirty = True
        if not (isinstance(ev, DoneEvent) and ev.reason == "nothing-to-train"):
            self.history.update(ev)
        if isinstance(ev, StepEvent | StartEvent) and self.state == "starting":
            self._set_state("training")
        if isinstance(ev, EarlyStopEvent) and ev.state == "stopped":
            self.log_line(f"early stopping at step {ev.step}: best {ev.best_val_loss:.4f} @ {ev.best_step}")
        elif isinstance(ev, StartEvent):
            what = f"resumed at step {ev.step}" if ev.resumed else "started"
            self.log_line(
                f"{what}: {ev.profile} on {ev.device}, {ev.params / 1e6:.2f}M params, {ev.total_steps} steps"
            )
            self.refresh_runs(select=self.run_dir)
        elif isinstance(ev, CheckpointEvent):
            best = ", best" if ev.is_best and ev.reason != "best" else ""
            self.log_line(f"checkpoint step {ev.step} ({ev.reason}{best})", "dim")
        elif isinstance(ev, PhaseEvent):  # compiling: its own state, an animated bar and a clock
            self.compiling_since = ev.time if ev.phase == "compiling" else None
            self.log_line(ev.detail, "dim")
            if self.state in ("starting", "compiling", "training"):
                self._set_state("compiling" if ev.phase == "compiling" else "training")
        elif isinstance(ev, LogEvent):
            self.log_line(ev.message, {"warning": "yellow", "error": "red"}.get(ev.level, ""))
        elif isinstance(ev, DoneEvent):
            self._on_done(ev)

    def _on_ended(self, news: TrainingEnded) -> None:
        if news.error:
            self._set_state("error", news.error)
            self.log_line(f"training crashed: {news.error}", "red")
            self.app.notify(
                printable(news.error), title="Training crashed", severity="error", timeout=10, markup=False
            )
        elif news.done is not None and self.training:
            self._on_train_event(TrainEvent(news.done))
        if self.training:
            self._set_state("stopped")
        self._redraw()
        if self.is_mounted and not self.tapp.jobs.quit_after:
            self.refresh_runs(select=self.run_dir)

    def _on_done(self, ev: DoneEvent) -> None:
        if ev.reason == "nothing-to-train":
            text = f"{ev.message} — raise train.max_steps to continue, or F8 trains a fresh run"
            self.log_line(text, "yellow")
            self.app.notify(printable(text), severity="warning", timeout=8, markup=False)
            self._set_state("idle")
            return
        text = f"done: {ev.reason} at step {ev.step}"
        if ev.best_val_loss is not None:
            text += f", best val {ev.best_val_loss:.4f}"
        if ev.message:
            text += f" — {ev.message}"
        if ev.reason in ("finished", "early-stopped"):
            text += " · F9 evaluates it"
        self.log_line(text, "red" if ev.reason == "error" else "green")
        self._set_state(ev.reason, ev.message)
        self._redraw()

    # ------------------------------------------------------------------ view

    def log_line(self, text: str, style: str = "") -> None:
        log = self.query_one("#train-log", RichLog)
        log.write(Text(printable(text), style=style))
        self._dirty = self._log_new = True  # the redraw scrolls the log: RichLog's auto-scroll lags bursts

    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.query_one("#train-run", Select).disabled = self.training or state == "checking"
        self._dirty = True
        self._redraw()

    def _redraw(self) -> None:
        if self.state == "compiling":
            self._dirty = True  # the clock moves
        if not self._dirty or not self.is_mounted:
            return
        self._dirty = False
        h = self.history
        name = self.profile.name if self.profile else "no profile"
        self.query_one("#train-profile", Static).update(
            Text.assemble((printable(name), "bold"), (" → run", "dim"))
        )
        self.query_one("#train-state", Static).update(state_text(self.state, h, self.message))
        step, total, text = progress_text(h, self.training)
        bar = self.query_one("#train-progress", ProgressBar)
        if self.state == "compiling" and self.compiling_since is not None:
            bar.update(total=None, progress=0)  # animated: compiling is not stepping
            text = f"compiling… {fmt_duration(time.time() - self.compiling_since)}"
        elif total:
            bar.update(total=total, progress=step)
        elif self.state == "starting":  # building data / model: an indeterminate (animated) bar
            bar.update(total=None, progress=0)
        else:
            bar.update(total=1, progress=0)
        self.query_one("#train-progress-text", Static).update(text)
        self.query_one("#train-chart", LossChart).set_history(h)
        self.query_one("#train-stats", Static).update(now_table(h))
        if self._log_new:
            self._log_new = False
            self.query_one("#train-log", RichLog).scroll_end(animate=False)
        es = self.profile.early_stopping if self.profile else None
        self.query_one("#train-early-stop", EarlyStopPanel).show(h.last_es, es)
