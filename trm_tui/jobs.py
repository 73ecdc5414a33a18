"""The one owner of the app's long-running jobs: a training or a sweep, and an evaluation (the
Evaluation screen's F5 or its F7 depth study, which may run beside a training).

`Jobs` is a hidden widget the app mounts once (`app.jobs`). Starting, stopping, the terminal's
hang-up and quitting go through it, so "what runs" has one answer: `busy` (a training or a sweep)
and `evaluating`. Its workers only post messages; it re-publishes what the panes and screens show
through three signals (`train_news`, `sweep_news`, `eval_news`), which the Train tab, the Runs tab
and the Evaluation screen subscribe to. It knows no pane.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.message import Message
from textual.signal import Signal
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from trm_core.events import DoneEvent

from .messages import DepthProgress, DepthStudyDone, EvalFinished, EvalNews, EvalProgress, TrainEvent

if TYPE_CHECKING:
    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import Sweep
    from trm_core.profile import Profile

    from .backend import Backend


@dataclass
class TrainingStopping:
    """A stop was asked for: the trainer saves a checkpoint and ends."""


@dataclass
class TrainingEnded:
    """The training worker ended: with its DoneEvent, or crashed (`error`), or cancelled."""

    done: DoneEvent | None
    error: str = ""


@dataclass(eq=False)
class Evaluation:
    """The evaluation that runs: its run, what it is, and the flag its progress callback reads."""

    run_dir: Path
    kind: str  # "evaluation" (F5) or "depth study" (F7)
    stopping: threading.Event = field(default_factory=threading.Event)


class EvalStopped(Exception):
    """Raised from an evaluation's progress callback to end it after the batch it is on."""


class SweepProgress(Message):
    """The queue changed (a run's state) or the running trainer reported a step."""

    def __init__(self, counts: dict[str, int], current: str, eta_s: float | None, done: bool = False) -> None:
        super().__init__()
        self.counts, self.current, self.eta_s, self.done = counts, current, eta_s, done
        self.name = ""  # the sweep's name, filled in by Jobs


class Jobs(Widget):
    DEFAULT_CSS = "Jobs { display: none; }"

    def __init__(self, backend: Backend, runs_dir: Path) -> None:
        super().__init__(id="jobs")
        self.backend, self.runs_dir = backend, runs_dir
        self.trainer: Any = None  # the running Trainer, once built
        self.training = False
        self.stop_requested = False
        self.sweep: SweepQueue | None = None
        self.evaluation: Evaluation | None = None
        self.quit_after = False
        self.train_news: Signal[TrainEvent | TrainingStopping | TrainingEnded] = Signal(self, "train-news")
        self.sweep_news: Signal[SweepProgress] = Signal(self, "sweep-news")
        self.eval_news: Signal[EvalNews] = Signal(self, "eval-news")

    @property
    def busy(self) -> str | None:
        """What runs: "sweep", "training" or None."""
        if self.sweep is not None:
            return "sweep"
        return "training" if self.training else None

    @property
    def evaluating(self) -> str | None:
        """The evaluation that runs: "evaluation", "depth study" or None."""
        return self.evaluation.kind if self.evaluation is not None else None

    # ------------------------------------------------------------------ stop, hang-up, quit

    def stop(self, *, quit_after: bool = False) -> bool:
        """Stop what runs (its trainer saves a checkpoint; a sweep's queued runs stay queued; an
        evaluation ends after its batch, writing nothing) and, with `quit_after`, exit once all of
        it has ended. False when nothing runs (then it exits at once)."""
        self.quit_after = self.quit_after or quit_after
        stopped = self.stop_evaluation()
        if self.sweep is not None:
            self.sweep.request_stop()
            return True
        if self.training:
            self.stop_requested = True
            if self.trainer is not None:
                self.trainer.request_stop()
            self.train_news.publish(TrainingStopping())
            return True
        if not stopped and quit_after:
            self.app.exit()
        return stopped

    def stop_evaluation(self) -> bool:
        """End the running evaluation after the batch it is on (False when none runs)."""
        if self.evaluation is None:
            return False
        self.evaluation.stopping.set()
        return True

    def hang_up(self) -> None:
        """The terminal is gone: stop what runs with its checkpoint and exit, asking nobody."""
        self.stop(quit_after=True)

    def _exit_if_done(self) -> None:
        """After a stop-and-quit, exit once nothing runs any more."""
        if self.quit_after and self.busy is None and self.evaluation is None:
            self.app.exit()

    def on_unmount(self) -> None:
        if self.trainer is not None:  # the app is going away (e.g. SIGTERM): the checkpoint is saved
            self.trainer.request_stop()
        if self.sweep is not None:
            self.sweep.request_stop()
        self.stop_evaluation()

    # ------------------------------------------------------------------ training

    def train(self, profile: Profile, run_dir: Path, resume: bool, **options: Any) -> bool:
        """Start training `profile` into `run_dir` (False when something already runs)."""
        if self.busy:
            return False
        self.training, self.stop_requested, self.trainer = True, False, None
        self._train(profile, run_dir, resume, options)
        return True

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self, profile: Profile, run_dir: Path, resume: bool, options: dict[str, Any]) -> DoneEvent:
        post = self.post_message
        trainer = self.backend.trainer_factory(
            profile, run_dir, on_event=lambda ev: post(TrainEvent(ev)), resume=resume, **options
        )
        self.trainer = trainer
        if self.stop_requested:  # stop pressed while the trainer was being built
            trainer.request_stop()
        return trainer.run()

    @on(TrainEvent)
    def _on_train_event(self, msg: TrainEvent) -> None:
        msg.stop()
        self.train_news.publish(msg)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if event.state not in (WorkerState.ERROR, WorkerState.SUCCESS, WorkerState.CANCELLED):
            return
        if group == "train":
            self._training_ended(event.worker, event.state)
        elif group == "sweep" and event.state != WorkerState.SUCCESS:
            error = event.worker.error
            self._sweep_ended(SweepProgress({}, f"crashed: {type(error).__name__}: {error}", None, done=True))
        elif group == "evaluate":
            self._evaluation_ended(event.worker, event.state)

    def _training_ended(self, worker: Worker, state: WorkerState) -> None:
        if state == WorkerState.CANCELLED and self.trainer is not None:
            self.trainer.request_stop()  # the app is exiting: the thread must end (and save) on its own
        self.trainer, self.training = None, False
        if state == WorkerState.ERROR:
            err = worker.error
            self.train_news.publish(TrainingEnded(None, f"{type(err).__name__}: {err}"))
        else:
            result = worker.result if state == WorkerState.SUCCESS else None
            self.train_news.publish(TrainingEnded(result if isinstance(result, DoneEvent) else None))
        self._exit_if_done()

    # ------------------------------------------------------------------ sweeps

    def run_sweep(self, sweep: Sweep) -> bool:
        """Queue `sweep`'s runs one after the other in a worker (False when something already runs)."""

        if self.busy:
            return False
        post = self.post_message
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
            post(
                SweepProgress(
                    queue.counts(), f"{item.name}: step {ev.step}/{ev.total_steps}", sweep_eta(queue, ev)
                )
            )

        queue = self.backend.sweep_queue(sweep, self.runs_dir, on_update=on_update, on_event=on_event)
        self.sweep = queue
        self._sweep_worker(queue)
        return True

    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def _sweep_worker(self, queue: Any) -> None:
        queue.run(1)
        stopped = queue.stopping and any(i.state != "done" for i in queue.items)
        post = SweepProgress(
            queue.counts(), "stopped: F9 resumes it" if stopped else "finished", None, done=True
        )
        self.post_message(post)

    @on(SweepProgress)
    def _on_sweep_progress(self, msg: SweepProgress) -> None:
        msg.stop()
        if msg.done:
            self._sweep_ended(msg)
            return
        msg.name = self.sweep.sweep.name if self.sweep is not None else "sweep"
        self.sweep_news.publish(msg)

    def _sweep_ended(self, msg: SweepProgress) -> None:
        msg.name = self.sweep.sweep.name if self.sweep is not None else "sweep"
        self.sweep = None
        self.sweep_news.publish(msg)
        self._exit_if_done()

    # ------------------------------------------------------------------ evaluations

    def evaluate(self, run_dir: Path, which: str, split: str, limit: int | None) -> Evaluation | None:
        """Score `run_dir`'s checkpoint `which` on `split` (`Backend.evaluate_run`: both ways, the
        record into RUN/eval/); None when an evaluation already runs."""
        if self.evaluation is not None:
            return None
        job = self.evaluation = Evaluation(run_dir, "evaluation")
        self._evaluate(job, which, split, limit)
        return job

    def depth_study(
        self,
        run_dir: Path,
        which: str,
        split: str,
        limit: int | None,
        H_cycles: list[int],
        thresholds: list[float],
    ) -> Evaluation | None:
        """Evaluate at every H-cycles × halt threshold (`Backend.depth_study`, into RUN/depth.json);
        None when an evaluation already runs."""
        if self.evaluation is not None:
            return None
        job = self.evaluation = Evaluation(run_dir, "depth study")
        self._depth_study(job, which, split, limit, H_cycles, thresholds)
        return job

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def _evaluate(self, job: Evaluation, which: str, split: str, limit: int | None) -> None:
        post = self.post_message

        def progress(done: int, total: int) -> None:
            if job.stopping.is_set():  # stopped (the screen closed, quit, hang-up): after this batch
                raise EvalStopped
            post(EvalProgress(done, total, job=job))

        try:
            record, samples = self.backend.evaluate_run(
                job.run_dir, which=which, split=split, limit=limit, progress=progress
            )
        except EvalStopped:
            post(EvalFinished(job.run_dir, None, [], cancelled=True, job=job))
            return
        except Exception as e:  # noqa: BLE001 — shown on the screen; the app stays up
            post(EvalFinished(job.run_dir, None, [], error=f"{type(e).__name__}: {e}", job=job))
            return
        post(EvalFinished(job.run_dir, record, samples, job=job))

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def _depth_study(
        self,
        job: Evaluation,
        which: str,
        split: str,
        limit: int | None,
        H_cycles: list[int],
        thresholds: list[float],
    ) -> None:
        from trm_core.errors import UserError

        post = self.post_message

        def progress(done: int, total: int, label: str) -> None:
            if job.stopping.is_set():
                raise EvalStopped
            post(DepthProgress(done, total, label, job=job))

        try:
            rows = self.backend.depth_study(
                job.run_dir,
                which=which,
                split=split,
                limit=limit,
                H_cycles=H_cycles,
                thresholds=thresholds,
                progress=progress,
            )
        except EvalStopped:
            post(DepthStudyDone([], cancelled=True, job=job))
            return
        except UserError as e:
            post(DepthStudyDone([], error=str(e), job=job))
            return
        except Exception as e:  # noqa: BLE001 — shown on the screen; the app stays up
            post(DepthStudyDone([], error=f"{type(e).__name__}: {e}", job=job))
            return
        post(DepthStudyDone(rows, job=job))

    @on(EvalNews)
    def _on_eval_news(self, msg: EvalNews) -> None:
        msg.stop()
        self.eval_news.publish(msg)

    def _evaluation_ended(self, worker: Worker, state: WorkerState) -> None:
        job = self.evaluation
        if job is None:
            return
        if state == WorkerState.CANCELLED:  # the app is exiting: the thread ends at its next batch
            job.stopping.set()
        elif state == WorkerState.ERROR:  # not from the work (that posts its own error): a bug here
            err = worker.error
            failed = f"{type(err).__name__}: {err}"
            self.eval_news.publish(
                DepthStudyDone([], error=failed, job=job)
                if job.kind == "depth study"
                else EvalFinished(job.run_dir, None, [], error=failed, job=job)
            )
        self.evaluation = None
        self._exit_if_done()


def sweep_eta(queue: Any, ev: Any) -> float:
    """The running run's ETA plus the runs left × the mean time of a finished one (else this run's)."""
    left = sum(1 for i in queue.items if i.state not in ("done", "failed", "running"))
    times = [i.seconds for i in queue.items if i.state == "done" and i.seconds > 0]
    per_run = sum(times) / len(times) if times else ev.elapsed_s + ev.eta_s
    return ev.eta_s + left * per_run
