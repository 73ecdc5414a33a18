"""`trm-tui eval RUN`: GSM8K accuracy of a checkpoint, with a progress bar, a table and a JSONL of samples.

The result is also recorded in the run (`RUN/eval/<split>-step<step>.json`, see
`trm_core.evaluation.record`), where `trm-tui compare` and the app read it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trm_tui.commands.generate import add_checkpoint_args, count_int, load_generator
from trm_tui.commands.train import shown


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a checkpoint on GSM8K-style problems (final number after ####)")
    add_checkpoint_args(p)
    p.add_argument(
        "--data", default=None, metavar="SPEC", help="data source (default: the profile's data.source)"
    )
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=count_int, default=None, metavar="N", help="only the first N problems")
    p.add_argument(
        "--batch-size",
        type=count_int,
        default=None,
        metavar="B",
        help="rows in lockstep (default: 256 on CUDA, 16 on CPU)",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="FILE.jsonl",
        help="samples (default: RUN/eval/<split>-step<step>.jsonl)",
    )
    p.add_argument(
        "--both", action="store_true", help="score with and without the calculator (both go in the record)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from trm_core.errors import UserError
    from trm_core.evaluation.record import EVAL_DIR, record_name
    from trm_core.evaluation.run_eval import EvalSettings, evaluate_generator, resolve_source, run_dir_of

    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--limit", args.limit),
        ("--max-tokens", args.max_tokens),
    ):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    settings = EvalSettings.make(
        which=args.which,
        data=resolve_source(args.data) if args.data else None,
        split=args.split,
        limit=args.limit,
        calculator=args.calculator,
        both=args.both,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        calculator_mode=args.calculator_mode,
    )
    console = Console(stderr=True)
    gen = load_generator(args)
    source = settings["data"] or gen.profile.data.source

    with Progress(
        TextColumn("[bold]eval[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[bool, int] = {}

        def progress(calc: bool, done: int, total: int, correct: int) -> None:
            if calc not in tasks:
                how = "" if not args.both else " (calculator)" if calc else " (no calculator)"
                tasks[calc] = bar.add_task(f"{shown(source)} {args.split}{how}", total=total, acc="")
            bar.update(tasks[calc], completed=done, acc=f"acc {correct / done:.1%}" if done else "")

        record, results = evaluate_generator(
            gen, settings, output=Path(args.output) if args.output else None, progress=progress
        )
    result = results[0]
    calculator = record["settings"]["calculator"]
    max_tokens = record["settings"]["max_tokens"]
    run_dir = run_dir_of(Path(gen.path))
    output = Path(args.output) if args.output else run_dir / record["samples"]

    table = Table(title="GSM8K evaluation", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")  # paths shown whole, wrapped
    for name, value in [
        ("checkpoint", f"{shown(gen.path)} (step {gen.step})"),
        ("data", f"{shown(source)} {args.split}"),
        ("accuracy", f"{result.accuracy:.2%}"),
        *(
            [("accuracy, calculator " + ("off" if calculator else "on"), f"{results[1].accuracy:.2%}")]
            if len(results) > 1
            else []
        ),
        ("correct / total", f"{result.correct} / {result.total}"),
        ("lm-eval strict", f"{result.strict_accuracy:.2%} ({result.strict_correct})"),
        ("lm-eval flexible", f"{result.flexible_accuracy:.2%} ({result.flexible_correct})"),
        ("problems/s", f"{result.problems_per_s:.2f}"),
        ("calculator", args.calculator_mode if calculator else "off"),
        ("max tokens", str(max_tokens)),
        ("samples", shown(output)),
        ("record", shown(run_dir / EVAL_DIR / f"{record_name(record['split'], record['step'])}.json")),
    ]:
        table.add_row(name, value)
    Console().print(table)
    return 0
