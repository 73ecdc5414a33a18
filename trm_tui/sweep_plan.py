"""What a sweep will do before it starts: its runs left, a time estimate, and whether it may run.

No Textual here: the Runs tab shows `SweepPlan.question` in its confirmation dialog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from trm_core.errors import UserError


@dataclass
class SweepPlan:
    sweep: Any  # trm_core.experiments.sweep.Sweep
    todo: int  # runs that still train or evaluate (done runs are skipped)
    steps: int  # optimizer steps left over those runs
    seconds: float | None  # estimated wall time; None without an earlier run to measure
    changes: str = ""  # keys that change how saved runs continue ("changes-training")

    @property
    def question(self) -> str:
        n = len(self.sweep.runs)
        left = f"{self.todo} of {n} runs left" if self.todo != n else f"{n} run{'s' * (n != 1)}"
        when = (
            f"about {fmt_minutes(self.seconds)}"
            if self.seconds is not None
            else "time unknown (no earlier run to measure)"
        )
        text = f"Run sweep {self.sweep.name}: {left}, {self.steps:,} steps, {when}?"
        if self.changes:
            text += f" It changes how saved runs continue ({self.changes})."
        return text + " F6 on Train stops it; F9 resumes."


def fmt_minutes(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def plan_sweep(path: Path, profiles_dir: Path, runs_dir: Path) -> SweepPlan:
    """Load and check `path`; UserError with one sentence when it cannot run (invalid, incompatible)."""
    from trm_core.experiments.manifest import check_changes, run_state
    from trm_core.experiments.sweep import load_sweep
    from trm_core.profile import worst
    from trm_core.runs.listing import run_info

    sweep = load_sweep(path, profiles_dir)
    root = Path(runs_dir) / sweep.name
    changes = [m for m in check_changes(root, sweep) if m.severity != "harmless"]
    if worst(changes) == "incompatible":
        keys = ", ".join(m.key for m in changes if m.severity == "incompatible")
        raise UserError(f"Refused: {keys} changed, so saved weights cannot load. Rename the sweep.")
    settings = sweep.eval_settings()
    todo = steps = 0
    for r in sweep.runs:
        state = run_state(root / r.name, settings)
        if state == "done":
            continue
        todo += 1
        done_steps = run_info(root / r.name).step if state != "queued" else 0
        steps += max(0, r.profile.train.max_steps - done_steps)
    keys = ", ".join(m.key for m in changes[:4]) + (" …" if len(changes) > 4 else "")
    return SweepPlan(sweep, todo, steps, seconds_per_step(runs_dir, sweep, root) * steps or None, keys)


def seconds_per_step(runs_dir: Path, sweep: Any, root: Path) -> float:
    """The median wall time per step of earlier runs of this sweep, else of its base profile (0: none)."""
    from trm_core.experiments.manifest import sweep_runs
    from trm_core.runs.listing import list_runs

    base = sweep.base_path.stem
    runs = [r for r in sweep_runs(runs_dir) if r.name.startswith(f"{root.name}/")]
    rates = [r.wall_s / r.step for r in runs if r.wall_s and r.step]
    if not rates:
        rates = [r.wall_s / r.step for r in list_runs(runs_dir) if r.profile == base and r.wall_s and r.step]
    return median(rates) if rates else 0.0
