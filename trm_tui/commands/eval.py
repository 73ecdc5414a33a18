"""`trm-tui eval RUN`: GSM8K accuracy of a checkpoint, with a progress bar, a table and a JSONL of samples.

With test-time depth lists (`--supervision-steps 1,2,4 --halt-threshold 0.3,0.9`) every combination
is evaluated: a table of accuracy against depth, where the tokens think longest, and `--json FILE`.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from trm_tui.commands.generate import (
    add_checkpoint_args,
    add_depth_args,
    count_int,
    depth_settings,
    load_generator,
)
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
    add_depth_args(p, lists=True)
    p.add_argument("--json", default=None, metavar="FILE", help="write one result per depth combination")
    p.set_defaults(run=run)


def _values(text: str | None, flag: str, kind: type) -> list[Any]:
    """'1,2,4' -> [1, 2, 4]; None -> [None] (the checkpoint's own value)."""
    from trm_core.errors import UserError

    if text is None:
        return [None]
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes a number or a comma list of numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{flag} takes a number or a comma list of numbers, got {text!r}")
    return list(dict.fromkeys(values))


def depth_grid(args: argparse.Namespace) -> list[tuple[Any, Any, Any, Any]]:
    """Every combination of the depth flags (None = the checkpoint's value)."""
    return list(
        itertools.product(
            _values(args.supervision_steps, "--supervision-steps", int),
            _values(args.H_cycles, "--H-cycles", int),
            _values(args.L_cycles, "--L-cycles", int),
            _values(args.halt_threshold, "--halt-threshold", float),
        )
    )


def run_dir_of(ckpt: Path) -> Path:
    """runs/<name> for runs/<name>/checkpoints/step-…; a loose checkpoint dir is its own home."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trm_core.data.sources import load_examples
    from trm_core.errors import UserError

    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    console = Console(stderr=True)
    gen = load_generator(args)
    grid = depth_grid(args)
    settings = [depth_settings(gen, *combo) for combo in grid]  # every bad value fails before any work
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
    rows = []
    for depth in settings:
        gen.set_depth(**depth)
        out = (
            output if len(settings) == 1 else output.with_name(f"{output.stem}-{_label(gen)}{output.suffix}")
        )
        rows.append(_evaluate_one(gen, examples, args, source, calculator, max_tokens, out, console))
    if len(rows) == 1:
        _print_single(rows[0], gen, source, args, calculator, max_tokens, output)
    else:
        _print_grid(rows, calculator)
    _print_depths(rows, gen)
    if args.json:
        from trm_core.runs.atomic import write_text_atomic

        doc = {"results": [r["json"] for r in rows]}
        try:
            write_text_atomic(Path(args.json), json.dumps(doc, indent=1) + "\n", fsync=False)
        except OSError as e:
            raise UserError(f"cannot write {args.json}: {e.strerror or e}") from None
    return 0


def _label(gen: Any) -> str:
    H, L = gen.model.cfg.H_cycles, gen.model.cfg.L_cycles
    if gen.cycles is not None:
        H, L = gen.cycles
    label = f"S{gen.steps}-H{H}-L{L}"
    return label + (f"-t{gen.halt_threshold:g}" if gen.act else "")


def _evaluate_one(gen, examples, args, source, calculator, max_tokens, output, console) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trm_core.errors import UserError
    from trm_core.evaluation.depth import depth_report
    from trm_core.evaluation.evaluate import evaluate, write_samples

    with Progress(
        TextColumn("[bold]eval[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{shown(source)} {args.split} {_label(gen)}", total=len(examples), acc="")

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
    report = depth_report(result.samples, gen.steps)
    mean_depth = report.mean_depth if report.mean_depth is not None else float(gen.steps)
    H, L = gen.cycles or (gen.model.cfg.H_cycles, gen.model.cfg.L_cycles)
    return {
        "result": result,
        "report": report,
        "label": _label(gen),
        "json": {
            "supervision_steps": gen.steps,
            "H_cycles": H,
            "L_cycles": L,
            "halt_threshold": gen.halt_threshold if gen.act else None,
            "accuracy": result.accuracy,
            # the calculator-free accuracy when this run had the calculator off, else not measured
            "accuracy_no_calculator": None if calculator else result.accuracy,
            "mean_depth": mean_depth,
            "net_calls_per_token": mean_depth * gen.calls_per_step(),
            "seconds": result.seconds,
        },
    }


def _print_single(row, gen, source, args, calculator, max_tokens, output) -> None:
    from rich.console import Console
    from rich.table import Table

    result = row["result"]
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


def _print_grid(rows: list[dict[str, Any]], calculator: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"accuracy against depth (calculator {'on' if calculator else 'off'})", title_justify="left"
    )
    for name in ("S", "H", "L", "halt", "accuracy", "mean depth", "calls/token", "s"):
        table.add_column(name, justify="right")
    for r in rows:
        j = r["json"]
        thr = "-" if j["halt_threshold"] is None else f"{j['halt_threshold']:g}"
        table.add_row(
            str(j["supervision_steps"]), str(j["H_cycles"]), str(j["L_cycles"]), thr,
            f"{j['accuracy']:.1%}", f"{j['mean_depth']:.2f}", f"{j['net_calls_per_token']:.1f}",
            f"{j['seconds']:.0f}",
        )  # fmt: skip
    Console().print(table)


def _print_depths(rows: list[dict[str, Any]], gen: Any) -> None:
    """Where the model thinks longer (ACT only: a fixed-depth model spends the same on every token)."""
    from rich.console import Console
    from rich.table import Table

    if not gen.act:
        return
    table = Table(
        title="mean depth by region · accuracy by the answer's mean depth (problems)", title_justify="left"
    )
    for name in ("", "<<…>>", "after ####", "elsewhere", "accuracy by depth"):
        table.add_column(name, justify="right" if name else "left")
    for r in rows:
        rep = r["report"]
        cells = [
            "-" if rep.region_depth[k] is None else f"{rep.region_depth[k]:.2f}"
            for k in ("calc", "answer", "other")
        ]
        buckets = "  ".join(f"{b['depth']}: {b['accuracy']:.0%} ({b['problems']})" for b in rep.buckets)
        table.add_row(r["label"], *cells, buckets or "-")
    Console().print(table)
