"""Run a sweep as a queue: train (the Trainer, exact resume) then evaluate (the run's eval record), run
after run; resumable at any point, because every run's state is read back from its directory.

`jobs = 1` runs in this process (the CLI, the app's worker). `jobs > 1` runs the very commands
`--print-commands` prints (`trm-tui train …`, then `trm-tui eval …`), N at once, as child processes:
on CUDA each child sees one GPU (CUDA_VISIBLE_DEVICES), on CPU each gets cores // N threads.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_core.atomic import write_failure
from trm_core.errors import UserError
from trm_core.events import Event
from trm_core.experiments.children import child_envs, spawn_child
from trm_core.experiments.manifest import (
    check_paths,
    claim_path,
    profile_path,
    run_state,
    write_manifest,
    write_profiles,
)
from trm_core.experiments.sweep import PlannedRun, Sweep
from trm_core.printable import shell_join
from trm_core.runs.lock import try_claim

__all__ = ["QueueItem", "SweepQueue"]


@dataclass
class QueueItem:
    run: PlannedRun
    run_dir: Path
    state: str  # one of manifest.STATES
    message: str = ""
    seconds: float = 0.0  # wall time of this session's work on it

    @property
    def name(self) -> str:
        return self.run.name


class _Stopped(Exception):
    """Internal: a stop request reached the evaluation."""


class SweepQueue:
    """The runs of `sweep` under RUNS_DIR/<sweep>/, with their states; `run()` works through them."""

    def __init__(
        self,
        sweep: Sweep,
        runs_dir: str | Path,
        *,
        device: str | None = None,
        on_event: Callable[[QueueItem, Event], None] | None = None,
        on_update: Callable[[SweepQueue, QueueItem], None] | None = None,
        trainer_factory: Callable[..., Any] | None = None,
        evaluator: Callable[..., Any] | None = None,
        poll_s: float = 1.0,
    ):
        """`trainer_factory(profile, run_dir, *, on_event, resume)` builds a run's trainer (the app's
        `Backend.trainer_factory`; default: the real Trainer on `device`); `evaluator(run_dir, settings,
        device, progress)` writes its eval record (default: evaluate_run)."""
        self.sweep = sweep
        self.root = Path(runs_dir) / sweep.name
        self.device = device
        self.settings = sweep.eval_settings()
        self.studies = sweep.depth_studies()  # [[eval.depth]]: after the eval, RUN/<name> each
        self.on_event = on_event
        self.on_update = on_update
        check_paths(self.root, sweep)  # before any path is read or written, --dry-run included
        self.items = [
            QueueItem(r, self.root / r.name, run_state(self.root / r.name, self.settings)) for r in sweep.runs
        ]
        self._stop = threading.Event()
        self._trainer: Any = None
        self._children: list[subprocess.Popen[bytes]] = []
        self._claims: dict[str, Callable[[], None]] = {}
        self._waited: set[str] = set()  # runs seen held by another process
        self.poll_s = poll_s
        self.trainer_factory = trainer_factory or self._real_trainer
        self.evaluator = evaluator or _real_evaluator

    def _real_trainer(self, profile: Any, run_dir: Path, *, on_event: Any, resume: bool) -> Any:
        from trm_core.training.trainer import Trainer

        return Trainer(profile, run_dir, resume=resume, device=self.device, on_event=on_event)

    # ------------------------------------------------------------------ state

    def prepare(self, *, strict: bool = True) -> None:
        """Write every run's profile and the manifest (before anything is printed or started); runs
        another sweep process holds keep the state that process wrote. A folder that cannot be
        written (read-only, full, no permission) is one sentence, unless nothing needs writing:
        a finished sweep, or `strict=False` once the profiles are on disk (--print-commands)."""
        try:
            write_profiles(self.root, self.sweep)
        except OSError as e:
            raise UserError(
                f"cannot write the sweep's profiles in {self.root}: {write_failure(self.root, e)}"
            ) from None
        try:
            self._save([i for i in self.items if not self._held_elsewhere(i)])
        except UserError:
            if strict and any(i.state != "done" for i in self.items):
                raise

    def _save(self, items: list[QueueItem]) -> None:
        try:
            self._write(items)
        except OSError as e:
            reason = write_failure(self.root / "sweep.json", e)
            raise UserError(f"cannot write {self.root / 'sweep.json'}: {reason}") from None

    def _held_elsewhere(self, item: QueueItem) -> bool:
        if item.name in self._claims:
            return False
        release = try_claim(claim_path(self.root, item.name))
        if release is None:
            return True
        release()
        return False

    def _write(self, items: list[QueueItem]) -> None:
        write_manifest(
            self.root,
            self.sweep,
            {i.name: {"state": i.state, "message": i.message, "seconds": round(i.seconds, 1)} for i in items},
        )

    def _set(self, item: QueueItem, state: str, message: str = "") -> None:
        item.state, item.message = state, message
        self._save([item])
        if self.on_update is not None:
            self.on_update(self, item)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.state] = out.get(i.state, 0) + 1
        return out

    def eta_s(self, jobs: int = 1) -> float | None:
        """Mean wall time of the runs finished in this session × runs left / jobs (None before one ends)."""
        times = [i.seconds for i in self.items if i.state == "done" and i.seconds > 0]
        left = sum(1 for i in self.items if i.state != "done" and i.state != "failed")
        return sum(times) / len(times) * left / max(jobs, 1) if times else None

    def request_stop(self) -> None:
        """Stop cleanly: the running trainer saves a checkpoint; nothing new starts."""
        self._stop.set()
        if self._trainer is not None:
            self._trainer.request_stop()
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ commands

    def commands(self, item: QueueItem, prog: list[str] | None = None) -> list[list[str]]:
        """The `trm-tui train …` and `trm-tui eval …` argv of one run (prog replaces `trm-tui`)."""
        prog = prog or ["trm-tui"]
        train = [
            *prog,
            "train",
            str(profile_path(self.root, item.run)),
            "--run-dir",
            str(item.run_dir),
            "--yes",
        ]
        if self.device:
            train += ["--device", self.device]
        out = [train]
        s = self.settings
        if s is not None:
            ev = [*prog, "eval", str(item.run_dir), *s.argv()]
            studies = [[*prog, "eval", str(item.run_dir), *d.argv(s, item.run_dir)] for d in self.studies]
            for argv in [ev, *studies]:
                out.append(argv + (["--device", self.device] if self.device else []))
        return out

    def command_lines(self) -> list[str]:
        return [shell_join(argv) for item in self.items for argv in self.commands(item)]

    # ------------------------------------------------------------------ running

    def run(self, jobs: int = 1) -> int:
        """Work through the queue; returns 0 (all done), 1 (some failed) or 130 (stopped).

        Each run is claimed first (an flock under .claims/, dropped by the kernel when its holder
        dies): a run another sweep process works on, or one whose trainer is still alive, is waited
        for and its outcome read back from disk; a run whose holder is gone is taken over."""
        self.prepare()
        todo = [i for i in self.items if i.state != "done"]
        if jobs <= 1:
            while todo and not self.stopping:
                item = self._claim_next(todo)
                if item is None:
                    self._stop.wait(self.poll_s)  # every run left is held by another live process
                    continue
                try:
                    self._run_here(item)
                finally:
                    self._unclaim(item)
        else:
            self._run_children(jobs, todo)
        if self.stopping and any(i.state != "done" for i in self.items):
            return 130
        return 1 if any(i.state == "failed" for i in self.items) else 0

    def _claim_next(self, todo: list[QueueItem]) -> QueueItem | None:
        """The first run of `todo` this process can claim, its state re-read from disk (runs finished
        elsewhere meanwhile are marked and dropped); None when every one left is held elsewhere."""
        for item in list(todo):
            release = try_claim(claim_path(self.root, item.name))
            if release is None:
                self._waiting(item, "another sweep process works on it")
                continue
            state = run_state(item.run_dir, self.settings)
            if state == "running":  # its trainer is alive but not ours (an orphan finishing, a manual train)
                release()
                self._waiting(item, "its trainer is still running")
                continue
            if state == "done" or (state == "failed" and item.name in self._waited):
                release()
                todo.remove(item)
                self._set(item, state, "" if state == "done" else "failed in another process")
                continue
            todo.remove(item)
            item.state = state
            self._claims[item.name] = release
            return item
        return None

    def _waiting(self, item: QueueItem, why: str) -> None:
        """Say once that this run is waited for (nothing written: its holder owns its state)."""
        if item.name not in self._waited:
            self._waited.add(item.name)
            item.state, item.message = "running", f"waiting: {why}"
            if self.on_update is not None:
                self.on_update(self, item)

    def _unclaim(self, item: QueueItem) -> None:
        release = self._claims.pop(item.name, None)
        if release is not None:
            release()

    def _run_here(self, item: QueueItem) -> None:
        t0 = time.monotonic()
        if item.state != "trained":
            self._set(item, "running", "training")
            try:
                trainer = self.trainer_factory(
                    item.run.profile,
                    item.run_dir,
                    on_event=(lambda ev: None)
                    if self.on_event is None
                    else (lambda ev: self.on_event(item, ev)),
                    resume=True,
                )
            except UserError as e:
                self._set(item, "failed", str(e))
                return
            self._trainer = trainer
            if self.stopping:  # a stop that came while the trainer was being built
                trainer.request_stop()
            done = trainer.run()
            self._trainer = None
            item.seconds += time.monotonic() - t0
            if done.reason == "stopped":
                self._set(item, "stopped", f"stopped at step {done.step}")
                return
            if done.reason == "error":
                self._set(item, "failed", done.message)
                return
            self._set(item, "trained")
        if self.settings is not None:
            self._set(item, "running", "evaluating")

            def progress(calc: bool, done: int, total: int, correct: int) -> None:
                if self.stopping:
                    raise _Stopped

            t1 = time.monotonic()
            try:
                self.evaluator(item.run_dir, self.settings, self.device or "auto", progress)
            except _Stopped:
                item.seconds += time.monotonic() - t1
                self._set(item, "trained", "evaluation stopped")
                return
            except UserError as e:
                self._set(item, "failed", f"evaluation: {e}")
                return
            try:
                for study in self.studies:
                    self._set(item, "running", f"depth study {study.name}")
                    study.run(item.run_dir, self.settings, device=self.device or "auto")
            except UserError as e:
                self._set(item, "failed", f"depth study: {e}")
                return
            item.seconds += time.monotonic() - t1
        item.seconds = max(item.seconds, time.monotonic() - t0)
        self._set(item, "done")

    def _run_children(self, jobs: int, todo: list[QueueItem]) -> None:
        slots = child_envs(jobs, self.device)
        free = list(range(len(slots)))
        active: dict[int, tuple[QueueItem, list[list[str]], subprocess.Popen[bytes], float]] = {}
        prog = [sys.executable, "-m", "trm_tui"]
        while (todo and not self.stopping) or active:
            while todo and free and not self.stopping:
                item = self._claim_next(todo)
                if item is None:
                    break
                slot = free.pop(0)
                cmds = self.commands(item, prog)
                if item.state == "trained":
                    cmds = cmds[1:]
                self._set(item, "running", "training" if cmds[0][3] == "train" else "evaluating")
                active[slot] = (item, cmds, self._spawn(cmds[0], slots[slot], item), time.monotonic())
            if todo or active:
                self._stop.wait(0.2 if active else self.poll_s)
            for slot, (item, cmds, child, t0) in list(active.items()):
                code = child.poll()
                if code is None:
                    continue
                self._children.remove(child)
                item.seconds += time.monotonic() - t0
                del active[slot]
                if code != 0:
                    stopped = code in (130, 143) or self.stopping
                    state = ("stopped" if cmds[0][3] == "train" else "trained") if stopped else "failed"
                    self._set(
                        item, state, f"{cmds[0][3]} exited with {code}; see {item.run_dir / 'sweep.log'}"
                    )
                    self._unclaim(item)
                    free.append(slot)
                elif len(cmds) > 1 and not self.stopping:
                    self._set(item, "running", "evaluating")
                    active[slot] = (item, cmds[1:], self._spawn(cmds[1], slots[slot], item), time.monotonic())
                else:
                    self._set(item, "done" if len(cmds) == 1 else "trained")
                    self._unclaim(item)
                    free.append(slot)

    def _spawn(self, argv: list[str], env: dict[str, str], item: QueueItem) -> subprocess.Popen[bytes]:
        child = spawn_child(argv, env, item.run_dir / "sweep.log")
        self._children.append(child)
        return child


def _real_evaluator(run_dir: Path, settings: Any, device: str, progress: Callable[..., None]) -> Any:
    from trm_core.evaluation.run_eval import evaluate_run

    return evaluate_run(run_dir, settings, device=device, progress=progress)
