"""`trm-tui train PROFILE`: train headless with a progress bar; resume safely; Ctrl+C saves and exits.

Before resuming (or writing into) a run directory that already holds a checkpoint, the profile is
compared with the one the checkpoint was trained with. Incompatible differences refuse (exit 2,
`--fresh` proposed); differences that change training need `--yes` (else exit 2); harmless ones
are noted. Exit codes: 0 finished or early-stopped, 1 error, 2 refused, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a profile into a run directory (resumes safely)")
    p.add_argument("profile", metavar="PROFILE", help="TOML profile file")
    p.add_argument("--run-dir", help="run directory (default: RUNS_DIR/<profile name>)")
    p.add_argument("--runs-dir", default="runs", help="where run directories live (default: ./runs)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run's latest checkpoint")
    mode.add_argument(
        "--fresh", action="store_true", help="start over in a new run directory (name-2, -3, …)"
    )
    p.add_argument("--yes", "-y", action="store_true", help="resume even when the profile changes training")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after N optimizer steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: the profile's")
    p.add_argument(
        "--eval",
        action="store_true",
        help="after training, score the best checkpoint with and without the calculator; "
        "the result is recorded in RUN/eval/",
    )
    p.add_argument("--eval-split", default="test", choices=["train", "test"], help="default: test")
    p.add_argument("--eval-limit", type=int, default=None, metavar="N", help="only the first N problems")
    p.set_defaults(run=run)


def shown(value: Any) -> str:
    """A path, name or message as rich prints it literally: control characters escaped
    (trm_core.printable) and square brackets not taken for markup."""
    from rich.markup import escape

    from trm_core.printable import printable

    return escape(printable(str(value)))


def _fmt(v: Any) -> str:
    return "—" if v is None else shown(repr(v) if isinstance(v, str) else str(v))


def mismatch_table(mismatches: list) -> Any:
    from rich.table import Table

    colour = {"incompatible": "red", "changes-training": "yellow", "harmless": "dim"}
    table = Table(title="profile differs from the saved checkpoint", title_justify="left")
    for col in ("key", "saved", "current", "severity"):
        table.add_column(col)
    for m in mismatches:
        c = colour.get(m.severity, "")
        table.add_row(m.key, _fmt(m.saved), _fmt(m.current), f"[{c}]{m.severity}[/{c}]")
    return table


def safety_check(
    profile: Any, run_dir: Path, args: argparse.Namespace, console: Any
) -> tuple[int | None, Path]:
    """Decide what to do with an existing run dir: (exit code to stop with, or None; run dir to use)."""
    from trm_core.errors import CheckpointError
    from trm_core.profile import worst
    from trm_core.runs.read import check_run_dir, propose_fresh_run_dir

    mismatches = check_run_dir(profile, run_dir)
    if mismatches is None:
        if args.resume:
            raise CheckpointError(f"{run_dir} holds no checkpoint to resume")
        return None, run_dir
    fresh = propose_fresh_run_dir(run_dir)
    if args.fresh:
        console.print(f"{shown(run_dir)} already holds a run; starting fresh in {shown(fresh)}")
        return None, fresh
    if not mismatches:
        console.print(f"resuming {shown(run_dir)} (the profile matches its checkpoint)")
        return None, run_dir
    console.print(mismatch_table(mismatches))
    grade = worst(mismatches)
    if grade == "incompatible":
        keys = ", ".join(m.key for m in mismatches if m.severity == "incompatible")
        console.print(
            f"[red]refusing to resume {shown(run_dir)}:[/red] {keys} changed, so the saved weights cannot be "
            f"loaded. Run again with --fresh to train into {shown(fresh)}."
        )
        return 2, run_dir
    if grade == "changes-training" and not args.yes:
        console.print(
            f"[yellow]these changes alter how {shown(run_dir)} continues training.[/yellow] "
            f"Pass --yes to resume with them, or --fresh to start over in {shown(fresh)}."
        )
        return 2, run_dir
    note = "with these changes" if grade == "changes-training" else "(the differences are harmless)"
    console.print(f"resuming {shown(run_dir)} {note}")
    return None, run_dir


class TrainDisplay:
    """Rich progress bar + eval / early-stopping lines, fed by Trainer events (rank 0 only)."""

    def __init__(self, console: Any):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
        )
        self.task: Any = None

    def __enter__(self) -> TrainDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, ev: Any) -> None:
        kind, out = ev.kind, self.progress.console
        if kind == "start":
            verb = "resuming" if ev.resumed else "training"
            out.print(
                f"{verb} {shown(ev.profile)} in {shown(ev.run_dir)} on {ev.device}: {ev.params:,} parameters, "
                f"step {ev.step} of {ev.total_steps}"
            )
            self.task = self.progress.add_task(
                "train", total=ev.total_steps, completed=ev.step, loss="—", tps="—", eta="—"
            )
        elif kind == "step" and self.task is not None:
            m, s = divmod(int(ev.eta_s), 60)
            self.progress.update(
                self.task,
                completed=ev.step,
                loss=f"{ev.loss:.4f}",
                tps=f"{ev.tokens_per_s:,.0f}",
                eta=f"{m}:{s:02d}",
            )
        elif kind == "phase":  # compiling before the first step, then "compiled in N s"
            out.print(f"  {ev.detail}")
        elif kind == "eval":
            out.print(f"step {ev.step}: val loss {ev.val_loss:.4f}, token accuracy {ev.val_token_acc:.1%}")
        elif kind == "early_stop":
            out.print(
                f"  early stopping: best {ev.best_val_loss:.4f} @ step {ev.best_step} · {ev.label} · "
                f"patience left {ev.patience_left}"
            )
        elif kind == "checkpoint":
            out.print(
                f"  checkpoint {shown(ev.path)} ({ev.reason}{', best' if ev.is_best and ev.reason != 'best' else ''})"
            )
        elif kind == "log" and ev.level == "error":
            pass  # the run's error ends it: said once, on stderr, as `trm-tui: …` (not twice)
        elif kind == "log" and ev.level != "info" or kind == "log" and "resumed" in ev.message:
            out.print(
                f"  [{'red' if ev.level == 'error' else 'yellow' if ev.level == 'warning' else 'dim'}]{shown(ev.message)}"
            )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trm_core.profile import load_profile

    rank0 = int(os.environ.get("RANK", "0")) == 0
    console = Console(quiet=not rank0, highlight=False)
    profile = load_profile(args.profile)
    from trm_core.data.sources import check_source_reachable

    check_source_reachable(profile.data.source)  # offline with an hf: source: one line, before torch loads
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.runs_dir) / profile.name
    if args.eval_limit is not None and args.eval_limit < 1:
        from trm_core.errors import UserError

        raise UserError(f"--eval-limit must be at least 1, got {args.eval_limit}")
    code, run_dir = safety_check(profile, run_dir, args, console)
    if code is not None:
        return code

    from trm_core.training.trainer import Trainer

    display = TrainDisplay(console)
    trainer = Trainer(
        profile, run_dir, on_event=display, resume=True, device=args.device, max_steps=args.max_steps
    )
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if received and signum == signal.SIGINT:  # a second Ctrl+C: the user really wants out now
            raise KeyboardInterrupt
        if received:  # another SIGTERM (a dead sweep's death signal comes once per reparenting): stopping
            return
        received.append(signum)
        trainer.request_stop()  # the loop saves a checkpoint at the next step and returns

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with display:
            done = trainer.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if done.reason == "nothing-to-train":
        console.print(f"{done.message} — use --max-steps N with N > {done.step} to continue, or --fresh")
        return 0
    if done.reason == "error":
        if rank0:
            from trm_core.printable import printable

            print(f"trm-tui: {printable(done.message)}", file=sys.stderr)
        return 1
    if done.reason == "stopped":
        console.print(
            f"stopped at step {done.step}; resume with: trm-tui train {shown(args.profile)} --run-dir {shown(run_dir)}"
        )
        return 143 if received and received[0] == signal.SIGTERM else 130
    best = f", best val loss {done.best_val_loss:.4f}" if done.best_val_loss is not None else ""
    console.print(f"{done.reason} at step {done.step}{best}; checkpoints in {shown(run_dir / 'checkpoints')}")
    if args.eval and rank0:
        evaluate_after(run_dir, args, console)
    return 0


def evaluate_after(run_dir: Path, args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """`--eval`: score the best checkpoint both ways and record it in the run."""
    from trm_core.evaluation.run_eval import EvalSettings, evaluate_run

    settings = EvalSettings.make(split=args.eval_split, limit=args.eval_limit, calculator=True, both=True)
    console.print(f"evaluating {run_dir} on the {args.eval_split} split …")
    record = evaluate_run(run_dir, settings, device=args.device or "auto")
    console.print(
        f"exact {record['accuracy']:.1%} with the calculator, {record['accuracy_no_calculator']:.1%} without "
        f"({record['n']} problems, step {record['step']}); recorded in {run_dir / 'eval'}"
    )
    return record
