"""`trm-tui sweep FILE`: train and evaluate every run of a sweep (grid × seeds) as a resumable queue.

Every expanded profile is validated first (all problems at once; nothing starts if any is invalid).
Against an existing sweep directory the changed sweep gets the graded safety check of a profile
against its checkpoint. Ctrl+C stops cleanly (the running trainer saves); the same command again
skips finished runs and resumes the interrupted one. Exit codes: 0 done, 1 a run failed, 2 refused,
130 stopped.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train and evaluate a sweep (grid × seeds) as a resumable queue")
    p.add_argument("file", metavar="FILE", help="sweep TOML file (see profiles/sweeps/)")
    p.add_argument("--runs-dir", default="runs", help="runs go to RUNS_DIR/<sweep name>/ (default: ./runs)")
    p.add_argument("--profiles-dir", default="profiles", help="where `base = NAME` is looked up")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once (CUDA: one per GPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: each profile's")
    p.add_argument(
        "--yes", "-y", action="store_true", help="continue runs whose training the changed sweep alters"
    )
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs; start nothing")
    p.add_argument(
        "--print-commands",
        action="store_true",
        help="write each run's profile, then print one `trm-tui train …` / `trm-tui eval …` line per step",
    )
    p.set_defaults(run=run)


def _overrides(run: Any) -> str:
    from trm_core.printable import printable

    return printable(", ".join(f"{k}={v}" for k, v in run.overrides.items()))


def _safe(text: object) -> str:
    """Text for a rich console: no terminal-driving characters, no markup."""
    from rich.markup import escape

    from trm_core.printable import printable

    return escape(printable(str(text)))


class _QueueDisplay:
    """One line per state change and a progress bar for the run being trained here."""

    def __init__(self, console: Any, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console, self.total = console, total
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("queue ETA {task.fields[eta]}"),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.queue: Any = None

    def update(self, queue: Any, item: Any) -> None:
        self.queue = queue
        done = queue.counts().get("done", 0)
        self.progress.console.print(
            f"[{done}/{self.total}] {_safe(item.name)}: {item.state}{' — ' + _safe(item.message) if item.message else ''}"
        )
        if item.state != "running" and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def event(self, item: Any, ev: Any) -> None:
        if ev.kind == "start":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                item.name, total=ev.total_steps, completed=ev.step, loss="—", eta="—"
            )
        elif ev.kind == "step" and self.task is not None:
            eta = self.queue.eta_s() if self.queue is not None else None
            self.progress.update(
                self.task,
                completed=ev.step,
                loss=f"{ev.loss:.4f}",
                eta="—" if eta is None else f"{int(eta) // 60}:{int(eta) % 60:02d}",
            )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from trm_core.errors import UserError
    from trm_core.experiments.manifest import check_changes
    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import load_sweep
    from trm_core.profile import worst
    from trm_tui.commands.train import mismatch_table

    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    console = Console(highlight=False)
    sweep = load_sweep(args.file, args.profiles_dir)
    if not (args.dry_run or args.print_commands):
        from trm_core.data.sources import check_source_reachable

        for source in sorted({r.profile.data.source for r in sweep.runs}):
            check_source_reachable(source)  # offline: one line now, not one failed run after another
    display = _QueueDisplay(console, len(sweep.runs))
    queue = SweepQueue(
        sweep, args.runs_dir, device=args.device, on_event=display.event, on_update=display.update
    )

    changes = check_changes(queue.root, sweep)
    if changes:
        table = mismatch_table(changes)
        table.title = f"the sweep differs from what {_safe(queue.root)} holds"
        console.print(table)
        grade = worst(changes)
        if grade == "incompatible":
            console.print(
                f"[red]refusing to continue {_safe(queue.root)}:[/red] some runs' saved weights cannot load the new "
                f"profiles. Give the changed sweep a new name (name = …) to train it beside the old one."
            )
            return 2
        if grade == "changes-training" and not args.yes:
            console.print(
                "[yellow]these changes alter how finished or stopped runs continue.[/yellow] Pass --yes to go on."
            )
            return 2

    if args.dry_run:
        table = Table(
            title=f"sweep {sweep.name}: {len(sweep.runs)} runs → {_safe(queue.root)}", title_justify="left"
        )
        for col in ("run", "overrides", "state"):
            table.add_column(col, overflow="fold")
        for item in queue.items:
            table.add_row(item.name, _overrides(item.run), item.state)
        console.print(table)
        return 0
    if args.print_commands:
        queue.prepare(strict=False)
        for line in queue.command_lines():
            print(line)
        return 0

    if args.jobs > 1:
        console.print(
            f"{args.jobs} runs at once, each `trm-tui train`{' then `trm-tui eval`' if sweep.eval else ''} in a child process "
            "(output in each run's sweep.log); on CPU each child gets cores // N threads."
        )
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        console.print("stopping: the running trainer saves a checkpoint; run the same command to resume")
        queue.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with display.progress:
            code = queue.run(args.jobs)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(queue.counts().items()))
    from trm_core.printable import shell_join

    console.print(
        f"sweep {sweep.name}: {counts}. Compare: {_safe(shell_join(['trm-tui', 'compare', str(queue.root)]))}"
    )
    if code == 130 and received and received[0] == signal.SIGTERM:
        return 143
    return code
