"""Running a sweep from the app (Runs tab, F9): the queue runs in a thread worker, one run after the
other (`SweepQueue`, the same code as `trm-tui sweep`); the worker only posts messages; a status
line shows queued / running / done / failed and the queue's ETA; quitting stops the running
trainer (it saves), so `trm-tui sweep FILE` or F9 again resumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from ..screens.modals import ConfirmModal
from ..screens.sweep_start import BUILD, SweepBuildModal, SweepPickModal, sweep_files

SWEEP_BINDINGS = [
    Binding("f9", "sweep", "Sweep", id="runs.sweep", tooltip="Run a sweep (grid × seeds) as a queue"),
]


class SweepProgress(Message):
    """The queue changed (a run's state) or the running trainer reported a step."""

    def __init__(self, counts: dict[str, int], current: str, eta_s: float | None, done: bool = False) -> None:
        super().__init__()
        self.counts, self.current, self.eta_s, self.done = counts, current, eta_s, done


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --:--"
    s = int(seconds)
    return (
        f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"
    )


class SweepRunner:
    """Mixin for the Runs pane."""

    sweep_queue: Any = None
    _quit_after_sweep = False

    @property
    def sweep_running(self) -> bool:
        return self.sweep_queue is not None

    def action_sweep(self) -> None:
        app: Any = self.app  # type: ignore[attr-defined]
        if self.sweep_running:
            app.notify("A sweep is already running in this app.", severity="warning")
            return
        profile = getattr(app, "profile_path", None)

        def picked(choice: Path | str | None) -> None:
            if choice == BUILD and profile is not None:
                app.push_screen(
                    SweepBuildModal(profile, app.profiles_dir), lambda p: p and self.start_sweep(p)
                )
            elif isinstance(choice, Path):
                self.start_sweep(choice)

        app.push_screen(SweepPickModal(sweep_files(app.profiles_dir), profile), picked)

    def start_sweep(self, path: Path) -> None:
        """Validate, run the safety check, then queue the sweep in the worker."""
        from trm_core.errors import UserError
        from trm_core.experiments.manifest import check_changes
        from trm_core.experiments.sweep import load_sweep
        from trm_core.profile import worst

        app: Any = self.app  # type: ignore[attr-defined]
        try:
            sweep = load_sweep(path, app.profiles_dir)
        except UserError as e:
            app.notify(str(e), title=f"{path.name} is not valid", severity="error", timeout=20)
            return
        root = Path(app.runs_dir) / sweep.name
        changes = [m for m in check_changes(root, sweep) if m.severity != "harmless"]
        grade = worst(changes)
        if grade == "incompatible":
            keys = ", ".join(m.key for m in changes if m.severity == "incompatible")
            app.notify(
                f"Refused: {keys} changed, so saved weights cannot load. Rename the sweep.", severity="error"
            )
            return
        if grade == "changes-training":

            def go(yes: bool | None) -> None:
                if yes:
                    self._run_sweep(sweep)

            keys = ", ".join(m.key for m in changes[:4]) + (" …" if len(changes) > 4 else "")
            app.push_screen(
                ConfirmModal(f"The sweep changes how runs continue ({keys}). Go on?", yes="Continue"), go
            )
            return
        self._run_sweep(sweep)

    def _status(self) -> Static:
        try:
            return self.query_one("#sweep-status", Static)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 — not mounted yet
            status = Static(id="sweep-status")
            status.styles.height = 1  # one line at 80 columns, cut rather than wrapped
            self.mount(status, before="#runs-detail")  # type: ignore[attr-defined]
            return status

    def _run_sweep(self, sweep: Any) -> None:
        app: Any = self.app  # type: ignore[attr-defined]
        post = self.post_message  # type: ignore[attr-defined]
        last = [0.0]

        def on_update(queue: Any, item: Any) -> None:
            post(
                SweepProgress(
                    queue.counts(), f"{item.name}: {item.state} {item.message}".strip(), queue.eta_s()
                )
            )

        def on_event(item: Any, ev: Any) -> None:
            if ev.kind != "step" or time.monotonic() - last[0] < 1.0:
                return
            last[0] = time.monotonic()
            q = self.sweep_queue
            left = sum(1 for i in q.items if i.state not in ("done", "failed", "running"))
            times = [i.seconds for i in q.items if i.state == "done" and i.seconds > 0]
            per_run = sum(times) / len(times) if times else ev.elapsed_s + ev.eta_s  # else: this run's
            eta = ev.eta_s + left * per_run
            post(SweepProgress(q.counts(), f"{item.name}: step {ev.step}/{ev.total_steps}", eta))

        self.sweep_queue = app.backend.sweep_queue(
            sweep, app.runs_dir, on_update=on_update, on_event=on_event
        )
        self._status().update(Text(f"sweep {sweep.name}: starting {len(sweep.runs)} runs…"))
        self._sweep_worker(self.sweep_queue)

    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def _sweep_worker(self, queue: Any) -> None:
        code = queue.run(1)
        self.post_message(SweepProgress(queue.counts(), f"exit {code}", None, done=True))  # type: ignore[attr-defined]

    def on_sweep_progress(self, msg: SweepProgress) -> None:  # by name: @on does not reach a mixin
        name = self.sweep_queue.sweep.name if self.sweep_queue is not None else "sweep"
        order = ("done", "running", "trained", "stopped", "queued", "failed")
        counts = " · ".join(f"{msg.counts[s]} {s}" for s in order if msg.counts.get(s))
        line = Text(f"sweep {name}: {counts}  ", style="bold", no_wrap=True, overflow="ellipsis")
        line.append(
            "finished" if msg.done else f"{fmt_eta(msg.eta_s)}  {msg.current}",
            style="" if msg.done else "dim",
        )
        self._status().update(line)
        self.action_refresh()  # type: ignore[attr-defined]
        if msg.done:
            self.sweep_queue = None
            if self._quit_after_sweep:
                self.app.exit()  # type: ignore[attr-defined]

    def stop_sweep(self, quit_after: bool = False) -> None:
        """The running trainer saves a checkpoint; nothing new starts (then quit, if asked)."""
        if self.sweep_queue is None:
            return
        self._quit_after_sweep = quit_after
        self.sweep_queue.request_stop()
