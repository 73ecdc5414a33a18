"""`trm-tui compare PATH…`: runs grouped by what differs, mean ± the half-width of a t-based 95 %
interval across seeds per metric, differences marked resolved only where intervals do not overlap. With `--depth NAME`:
accuracy against depth from each run's `eval --json` file (see `compare_depth.py`). The report's
text is `trm_core.experiments.report`, its rich tables `trm_tui.compare_tables`."""

from __future__ import annotations

import argparse
import shutil
import sys

DEFAULT_METRICS = ["best_val_loss", "exact_calculator", "exact_no_calculator", "wall_seconds"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs or sweeps: mean ± 95%% interval across seeds per group")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directories or folders of runs (a sweep)")
    p.add_argument("--by", nargs="+", metavar="KEY", default=None, help="group by these profile keys")
    p.add_argument(
        "--metric",
        nargs="+",
        metavar="M",
        default=None,
        help="metrics to show (default: loss, exact, wall); 'all'",
    )
    p.add_argument("--json", metavar="FILE", default=None, help="write the comparison as JSON ('-' = stdout)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--plot", action="store_true", help="overlaid mean validation curves in the terminal")
    p.add_argument("--log", action="store_true", help="with --plot: log10 of the loss")
    p.add_argument(
        "--depth",
        metavar="NAME",
        default=None,
        help="accuracy against depth: read RUN/NAME (an `eval --json` file) in every run",
    )
    p.add_argument(
        "--paired",
        action="store_true",
        help="with --depth: per seed, accuracy at each depth minus at the trained depth (95%% t-interval)",
    )
    p.add_argument(
        "--reference",
        metavar="DEPTH",
        default=None,
        help="with --paired: the depth differences are taken against, e.g. S1-H4-L2 (default: the trained depth)",
    )
    p.set_defaults(run=run)


def _say_left_out(paths: list) -> None:
    """Records that are not records were left out of the statistics: say which (file and field)."""
    from trm_core.evaluation.record import run_problems
    from trm_core.printable import printable

    for problem in (q for p in paths for q in run_problems(p)):
        print(f"trm-tui: left out: {printable(problem)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:

    from trm_core.errors import UserError
    from trm_core.experiments.compare import METRICS, compare, find_runs, summarize_run
    from trm_core.experiments.report import markdown, verdicts
    from trm_tui.compare_tables import emit, rich_table

    if args.depth is not None:
        if args.metric or args.log:
            raise UserError(
                "--depth makes its own table of accuracy against depth; leave out --metric and --log"
            )
        from trm_tui.commands.compare_depth import run_depth

        return run_depth(args)
    if args.paired or args.reference:
        raise UserError("--paired and --reference compare depths: use them with --depth NAME")
    metrics = args.metric or DEFAULT_METRICS
    if metrics == ["all"]:
        metrics = list(METRICS)
    paths = find_runs(args.paths)
    runs = [summarize_run(p) for p in paths]
    _say_left_out(paths)
    result = compare(runs, by=args.by, metrics=metrics)
    emit(args, result, markdown, rich_table, verdicts, "resolved best")
    if args.plot:
        from trm_tui.curves import render_curves

        width = min(shutil.get_terminal_size((80, 24)).columns, 120)
        print(render_curves(result["groups"], width=width, log=args.log, color=sys.stdout.isatty()))
    return 0
