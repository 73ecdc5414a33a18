"""`trm-tui eval RUN`: GSM8K accuracy of a checkpoint, with a progress bar, a table and a JSONL of samples.

With test-time depth lists (`--supervision-steps 1,2,4 --halt-threshold 0.3,0.9`) every combination
is evaluated: a table of accuracy against depth, where the tokens think longest, and `--json FILE`
(samples per combination beside --output; the run's record only for the checkpoint's own depth).
`--synthetic-steps 3-4` scores held-out synthetic problems of 3..4 steps instead (train easy, test
hard); every result carries `by_steps`, the accuracy per number of steps.
The result is also recorded in the run (`RUN/eval/<split>-step<step>.json`, see
`trm_core.evaluation.record`), where `trm-tui compare` and the app read it.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

from trm_tui.commands.generate import (
    add_checkpoint_args,
    add_depth_args,
    count_int,
    depth_request,
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
        "--output",
        default=None,
        metavar="FILE.jsonl",
        help="samples (default: RUN/eval/<split>-step<step>.jsonl)",
    )
    p.add_argument(
        "--both", action="store_true", help="score with and without the calculator (both go in the record)"
    )
    p.add_argument(
        "--synthetic-steps",
        default=None,
        metavar="A-B",
        help="held-out synthetic problems of A..B steps (e.g. 3-4: harder than trained), in the run's answer format",
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


def settings_from_args(args: argparse.Namespace) -> Any:
    """The EvalSettings these flags ask for (`EvalSettings.argv` is the way back)."""
    from trm_core.errors import UserError
    from trm_core.evaluation.difficulty import parse_steps_range
    from trm_core.evaluation.run_eval import resolve_source
    from trm_core.evaluation.settings import MAX_EVAL_STEPS, EvalSettings

    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--limit", args.limit),
        ("--max-tokens", args.max_tokens),
    ):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    steps_range = None
    if args.synthetic_steps is not None:
        try:
            steps_range = parse_steps_range(args.synthetic_steps, most=MAX_EVAL_STEPS)
        except ValueError as e:
            raise UserError(f"--synthetic-steps {e}") from None
    return EvalSettings(
        which=args.which,
        data=resolve_source(args.data) if args.data else None,
        split=args.split,
        limit=args.limit,
        calculator=args.calculator,
        both=args.both,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        calculator_mode=args.calculator_mode,
        synthetic_steps=steps_range,
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from trm_core.evaluation.record import EVAL_DIR, record_name
    from trm_core.evaluation.run_eval import evaluate_generator, run_dir_of

    settings = settings_from_args(args)
    steps_range = settings.synthetic_steps
    console = Console(stderr=True)
    gen = load_generator(args)
    grid = depth_grid(args)
    depths = [depth_request(*combo) for combo in grid]
    for depth in depths:  # every bad value fails before any work
        depth.check(gen.model.cfg.arch)
    source = "synthetic" if steps_range else settings.data or gen.profile.data.source
    data_label = f"{shown(source)} {args.split}" + (
        f" ({steps_range[0]}-{steps_range[1]} steps)" if steps_range else ""
    )
    if grid != [(None, None, None, None)]:
        return _run_grid(gen, depths, settings, args, data_label, console)

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
                tasks[calc] = bar.add_task(f"{data_label}{how}", total=total, acc="")
            bar.update(tasks[calc], completed=done, acc=f"acc {correct / done:.1%}" if done else "")

        record, results = evaluate_generator(
            gen, settings, output=Path(args.output) if args.output else None, progress=progress
        )
    result = results[0]
    calculator = record["settings"]["calculator"]
    max_tokens = record["settings"]["max_tokens"]
    run_dir = run_dir_of(Path(gen.path))
    output = Path(args.output) if args.output else run_dir / record["samples"]
    record_line = (
        [("record", shown(run_dir / EVAL_DIR / f"{record_name(record['split'], record['step'])}.json"))]
        if not steps_range
        else []  # other problems than the run's: --json and the samples only
    )

    table = Table(title="GSM8K evaluation", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")  # paths shown whole, wrapped
    for name, value in [
        ("checkpoint", f"{shown(gen.path)} (step {gen.step})"),
        ("data", data_label),
        ("accuracy", f"{result.accuracy:.2%}"),
        *(
            [("accuracy, calculator " + ("off" if calculator else "on"), f"{results[1].accuracy:.2%}")]
            if len(results) > 1
            else []
        ),
        ("correct / total", f"{result.correct} / {result.total}"),
        ("by steps", _by_steps_text(record["by_steps"])),
        *(
            [
                (
                    "unscorable",
                    f"{result.unscorable} gold answers have no readable '#### number' (never correct)",
                )
            ]
            if result.unscorable
            else []
        ),
        ("lm-eval strict", f"{result.strict_accuracy:.2%} ({result.strict_correct})"),
        ("lm-eval flexible", f"{result.flexible_accuracy:.2%} ({result.flexible_correct})"),
        ("problems/s", f"{result.problems_per_s:.2f}"),
        ("calculator", args.calculator_mode if calculator else "off"),
        ("max tokens", str(max_tokens)),
        ("samples", shown(output)),
        *record_line,
    ]:
        table.add_row(name, value)
    Console().print(table)
    _print_depths([_row(gen, results)], gen)
    if args.json:
        _write_json(args.json, [_row(gen, results)])
    return 0


def _row(gen: Any, results: list[Any]) -> dict[str, Any]:
    """One depth combination's result: the issue's JSON object, and the depth report."""
    from trm_core.evaluation.depth import depth_report
    from trm_core.evaluation.depth_study import depth_row

    return {
        "report": depth_report(results[0].samples, gen.steps),
        "label": _label(gen),
        "json": depth_row(gen, results),
    }


def _by_steps_text(by_steps: dict[str, float]) -> str:
    """'1: 80.0%  2: 41.5%' (steps: accuracy), or '-' when the problems show no steps."""
    return "  ".join(f"{k}: {v:.1%}" for k, v in by_steps.items()) or "-"


def _write_json(path: str, rows: list[dict[str, Any]]) -> None:
    from trm_core.evaluation.depth_study import write_depth_json

    write_depth_json(Path(path), [r["json"] for r in rows])


def _run_grid(
    gen: Any,
    depths: list[Any],
    settings: Any,
    args: argparse.Namespace,
    data_label: str,
    console: Any,
) -> int:
    """Every depth combination: samples beside --output (or in RUN/eval/), a table, --json."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trm_core.evaluation.record import EVAL_DIR
    from trm_core.evaluation.run_eval import evaluate_generator, run_dir_of

    steps_range = settings.synthetic_steps
    suffix = f"-steps{steps_range[0]}-{steps_range[1]}" if steps_range else ""
    base = (
        Path(args.output)
        if args.output
        else run_dir_of(Path(gen.path)) / EVAL_DIR / f"{args.split}-step{gen.step}{suffix}.jsonl"
    )
    rows = []
    for depth in depths:
        gen.set_depth(depth)
        with Progress(
            TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[acc]}"), TimeRemainingColumn(), console=console,
        ) as bar:  # fmt: skip
            tasks: dict[bool, int] = {}

            def progress(calc: bool, done: int, total: int, correct: int, bar=bar, tasks=tasks) -> None:
                if calc not in tasks:
                    how = "" if not args.both else " (calculator)" if calc else " (no calculator)"
                    tasks[calc] = bar.add_task(f"{data_label} {_label(gen)}{how}", total=total, acc="")
                bar.update(tasks[calc], completed=done, acc=f"acc {correct / done:.1%}" if done else "")

            out = base.with_name(f"{base.stem}-{_label(gen)}{base.suffix}")
            _, results = evaluate_generator(gen, settings, output=out, progress=progress, record_run=False)
        rows.append(_row(gen, results))
    _print_grid(rows, bool(gen.defaults.calculator if settings.calculator is None else settings.calculator))
    _print_depths(rows, gen)
    if args.json:
        _write_json(args.json, rows)
    return 0


def _label(gen: Any) -> str:
    return gen.depth.label(gen.act)


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
