"""Run a sweep as a queue: train (the Trainer, exact resume) then evaluate (the run's eval record), run
after run; resumable at any point, because every run's state is read back from its directory.

`jobs = 1` runs in this process (the CLI, the app's worker). `jobs > 1` runs the very commands
`--print-commands` prints (`trm-tui train …`, then `trm-tui eval …`), N at once, as child processes:
on CUDA each child sees one GPU (CUDA_VISIBLE_DEVICES), on CPU each gets cores // N threads.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_core.events import Event
from trm_core.experiments.manifest import profile_path, run_state, write_manifest, write_profiles
from trm_core.experiments.sweep import PlannedRun, Sweep

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
    ):
        self.sweep = sweep
        self.root = Path(runs_dir) / sweep.name
        self.device = device
        self.settings = sweep.eval_settings()
        self.studies = sweep.depth_studies()  # [[eval.depth]]: after the eval, RUN/<name> each
        self.on_event = on_event
        self.on_update = on_update
        self.items = [
            QueueItem(r, self.root / r.name, run_state(self.root / r.name, self.settings)) for r in sweep.runs
        ]
        self._stop = threading.Event()
        self._trainer: Any = None
        self._children: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ state

    def prepare(self) -> None:
        """Write every run's profile and the manifest (before anything is printed or started)."""
        write_profiles(self.root, self.sweep)
        self._save()

    def _save(self) -> None:
        write_manifest(
            self.root,
            self.sweep,
            {
                i.name: {"state": i.state, "message": i.message, "seconds": round(i.seconds, 1)}
                for i in self.items
            },
        )

    def _set(self, item: QueueItem, state: str, message: str = "") -> None:
        item.state, item.message = state, message
        self._save()
        if self.on_update is not None:
            self.on_update(self, item)

    def pending(self) -> list[QueueItem]:
        return [i for i in self.items if i.state != "done" and i.state != "running"]

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
        return [shlex.join(argv) for item in self.items for argv in self.commands(item)]

    # ------------------------------------------------------------------ running

    def run(self, jobs: int = 1) -> int:
        """Work through the queue; returns 0 (all done), 1 (some failed) or 130 (stopped)."""
        self.prepare()
        if jobs <= 1:
            for item in self.pending():
                if self.stopping:
                    break
                self._run_here(item)
        else:
            self._run_children(jobs)
        if self.stopping and any(i.state != "done" for i in self.items):
            return 130
        return 1 if any(i.state == "failed" for i in self.items) else 0

    def _run_here(self, item: QueueItem) -> None:
        from trm_core.errors import UserError
        from trm_core.evaluation.run_eval import evaluate_run
        from trm_core.training.trainer import Trainer

        t0 = time.monotonic()
        if item.state != "trained":
            self._set(item, "running", "training")
            trainer = Trainer(
                item.run.profile,
                item.run_dir,
                resume=True,
                device=self.device,
                on_event=None if self.on_event is None else (lambda ev: self.on_event(item, ev)),
            )
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
                evaluate_run(item.run_dir, self.settings, device=self.device or "auto", progress=progress)
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

    def _child_envs(self, jobs: int) -> list[dict[str, str]]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        gpus = _visible_gpus() if self.device != "cpu" else []
        if gpus:
            return [{**env, "CUDA_VISIBLE_DEVICES": gpus[i]} for i in range(min(jobs, len(gpus)))]
        from trm_core.training.accel import threads_for  # (imports torch: only when children run)

        threads = str(threads_for(jobs))  # cores // jobs, at least 1
        return [{**env, "OMP_NUM_THREADS": threads} for _ in range(jobs)]

    def _run_children(self, jobs: int) -> None:
        slots = self._child_envs(jobs)
        free = list(range(len(slots)))
        todo = list(self.pending())
        active: dict[int, tuple[QueueItem, list[list[str]], subprocess.Popen[bytes], float]] = {}
        prog = [sys.executable, "-m", "trm_tui"]
        while (todo and not self.stopping) or active:
            while todo and free and not self.stopping:
                item, slot = todo.pop(0), free.pop(0)
                cmds = self.commands(item, prog)
                if item.state == "trained":
                    cmds = cmds[1:]
                self._set(item, "running", "training" if cmds[0][3] == "train" else "evaluating")
                active[slot] = (item, cmds, self._spawn(cmds[0], slots[slot], item), time.monotonic())
            time.sleep(0.2)
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
                    free.append(slot)
                elif len(cmds) > 1 and not self.stopping:
                    self._set(item, "running", "evaluating")
                    active[slot] = (item, cmds[1:], self._spawn(cmds[1], slots[slot], item), time.monotonic())
                else:
                    self._set(item, "done" if len(cmds) == 1 else "trained")
                    free.append(slot)

    def _spawn(self, argv: list[str], env: dict[str, str], item: QueueItem) -> subprocess.Popen[bytes]:
        item.run_dir.mkdir(parents=True, exist_ok=True)
        with open(item.run_dir / "sweep.log", "ab") as log:
            # its own session: a terminal's Ctrl+C reaches the queue only, which forwards one SIGINT
            child = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children.append(child)
        return child


def _visible_gpus() -> list[str]:
    """The GPU ids a child may be pinned to (respecting the parent's CUDA_VISIBLE_DEVICES)."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        return []
    if n == 0:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(n)]
    return ids[:n]
