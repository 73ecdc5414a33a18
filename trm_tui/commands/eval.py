"""`trm-tui eval RUN`: GSM8K accuracy of a checkpoint, with a progress bar, a table and a JSONL of samples."""

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
        "--output", default=None, metavar="FILE.jsonl", help="default: RUN/eval-<split>-<step>.jsonl"
    )
    p.set_defaults(run=run)


def run_dir_of(ckpt: Path) -> Path:
    """runs/<name> for runs/<name>/checkpoints/step-…; a loose checkpoint dir is its own home."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from trm_core.data.sources import load_examples
    from trm_core.errors import UserError
    from trm_core.evaluation.evaluate import evaluate, write_samples

    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    console = Console(stderr=True)
    gen = load_generator(args)
    profile = gen.profile
    d = profile.data
    source = args.data or d.source
    if not source.startswith(("jsonl:", "hf:", "synthetic")) and Path(source).exists():
        source = f"jsonl:{source}"  # a bare file or folder of GSM8K-schema JSONL
    examples = load_examples(
        source,
        args.split,
        synthetic_size=d.synthetic_size,
        min_steps=d.synthetic_min_steps,
        max_steps=d.synthetic_max_steps,
        seed=d.seed,
    )
    if args.limit is not None:
        examples = examples[: args.limit]
    calculator = gen.defaults.calculator if args.calculator is None else args.calculator
    max_tokens = args.max_tokens or gen.defaults.max_tokens
    output = (
        Path(args.output) if args.output else run_dir_of(gen.path) / f"eval-{args.split}-{gen.step}.jsonl"
    )

    with Progress(
        TextColumn("[bold]eval[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{shown(source)} {args.split}", total=len(examples), acc="")

        def progress(done: int, total: int, correct: int) -> None:
            bar.update(task, completed=done, acc=f"acc {correct / done:.1%}" if done else "")

        result = evaluate(
            gen,
            examples,
            batch_size=args.batch_size,
            max_tokens=max_tokens,
            calculator=calculator,
            calculator_mode=args.calculator_mode,
            progress=progress,
        )
    try:
        write_samples(output, result.samples)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}") from None

    table = Table(title="GSM8K evaluation", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")  # paths shown whole, wrapped
    for name, value in [
        ("checkpoint", f"{shown(gen.path)} (step {gen.step})"),
        ("data", f"{shown(source)} {args.split}"),
        ("accuracy", f"{result.accuracy:.2%}"),
        ("correct / total", f"{result.correct} / {result.total}"),
        ("lm-eval strict", f"{result.strict_accuracy:.2%} ({result.strict_correct})"),
        ("lm-eval flexible", f"{result.flexible_accuracy:.2%} ({result.flexible_correct})"),
        ("problems/s", f"{result.problems_per_s:.2f}"),
        ("calculator", args.calculator_mode if calculator else "off"),
        ("max tokens", str(max_tokens)),
        ("samples", shown(output)),
    ]:
        table.add_row(name, value)
    Console().print(table)
    return 0
