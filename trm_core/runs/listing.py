"""The run directories under `runs/`, each with a status read from its `metrics.jsonl` and lock.

Status is what a user wants to know at a glance: is something still writing here (`running`),
and if not, how did the last training session end (`finished`, `early-stopped`, `stopped`,
`failed`), or did it vanish without a word (`interrupted`: killed, machine lost). A directory
with nothing trained yet is `new`. The app's Runs tab shows it; no Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trm_core.runs.history import RunHistory
from trm_core.runs.lock import lock_holder

__all__ = ["RunInfo", "STATUSES", "list_runs", "run_info", "lock_pid"]

STATUSES = ("running", "finished", "early-stopped", "stopped", "failed", "interrupted", "new")


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    status: str  # one of STATUSES
    step: int  # optimizer steps done (last step seen)
    total_steps: int  # 0 when unknown
    best_val_loss: float | None
    last_change: float  # mtime, seconds since epoch
    profile: str = ""  # profile name from the last StartEvent
    message: str = ""  # the last DoneEvent's message (errors)
    pid: int | None = None  # the live trainer's pid when running
    wall_s: float | None = None  # training time so far
    tokens_per_s: float | None = None  # mean training tokens/s over the logged steps


def lock_pid(run_dir: Path) -> int | None:
    """The pid of the live trainer holding `run_dir/.lock` (0 when unreadable), or None when no one holds it."""
    return lock_holder(run_dir)


def _last_change(run_dir: Path) -> float:
    times = []
    for p in (run_dir, run_dir / "metrics.jsonl", run_dir / "checkpoints"):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def run_info(run_dir: str | Path) -> RunInfo:
    """Status and headline numbers of one run directory."""
    run_dir = Path(run_dir)
    h = RunHistory.read(run_dir, points=False)
    pid = lock_pid(run_dir)
    status = "running" if pid is not None else h.status
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        status=status,
        step=h.step,
        total_steps=h.total_steps,
        best_val_loss=h.best_val_loss,
        last_change=_last_change(run_dir),
        profile=h.profile,
        message=h.message,
        pid=pid if status == "running" else None,
        wall_s=h.wall_s,
        tokens_per_s=h.mean_tokens_per_s,
    )


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run directory under `runs_dir` (those with metrics, a profile or checkpoints), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = []
    for d in runs_dir.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        if not any((d / f).exists() for f in ("metrics.jsonl", "profile.toml", "checkpoints")):
            continue
        out.append(run_info(d))
    return sorted(out, key=lambda r: (-r.last_change, r.name))
