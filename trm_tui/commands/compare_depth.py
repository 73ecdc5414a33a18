"""`trm-tui compare PATH… --depth NAME`: accuracy against depth across seeds, per group and depth
combination, from the `trm-tui eval … --json RUN/NAME` file in every run (see
`trm_core.experiments.depth_compare`, its text in `depth_report`): a table (or Markdown, or JSON) of mean ± 95 % CI half-width,
and per group which combinations differ in accuracy with intervals that do not overlap.
`--paired`: per seed, the accuracy at each depth minus at the trained depth (`paired.py`), with the
95 % t-interval of the mean difference, overall and per number of steps; `--plot`: accuracy against
depth, one line per recipe with its interval band, overall and per number of steps."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trm_core.experiments.depth_report import PAIRED_NOTE, depth_verdicts, markdown_depth, markdown_paired
from trm_tui.compare_tables import emit, rich_depth, rich_paired


def print_depth_plots(result: dict[str, Any], *, color: bool) -> None:
    """The plot for all problems, then one per number of steps when the files have by_steps."""
    import shutil

    from trm_tui.depth_plot import render_depth_curves

    width = min(shutil.get_terminal_size((80, 24)).columns, 120)
    steps = sorted({k for r in result["depth_groups"] for k in r.get("by_steps", {})}, key=int)
    for k in [None, *(steps if len(steps) > 1 else [])]:
        print(render_depth_curves(result, steps=k, width=width, color=color))


def run_depth(args: argparse.Namespace) -> int:
    from trm_core.errors import UserError
    from trm_core.experiments.depth_compare import depth_compare
    from trm_core.printable import printable

    if args.reference and not args.paired:
        raise UserError("--reference names the depth paired differences are taken against: add --paired")
    result = depth_compare(args.paths, args.depth, by=args.by, paired=args.paired, reference=args.reference)
    if result["skipped"]:
        n = len(result["skipped"])
        names = ", ".join(printable(p) for p in result["skipped"])
        print(
            f"trm-tui: skipped {n} run{'s' * (n > 1)} without {printable(args.depth)}: {names}",
            file=sys.stderr,
        )
    emit(args, result, markdown_depth, rich_depth, depth_verdicts, "resolved best in its group")
    if args.paired and args.json != "-":
        if not result["paired"]:
            for note in result["paired_notes"]:
                print(f"trm-tui: {note}", file=sys.stderr)
            print("trm-tui: no pair of depths to compare (see --reference)", file=sys.stderr)
        elif args.markdown:
            print("\n" + markdown_paired(result), end="")
        else:
            from rich.console import Console

            console = Console(highlight=False)
            console.print(rich_paired(result))
            console.print(f"[dim]{PAIRED_NOTE.format(mark='*')}[/dim]")
            for note in result["paired_notes"]:
                console.print(note)
    if args.plot and args.json != "-":
        print_depth_plots(result, color=sys.stdout.isatty())
    return 0
