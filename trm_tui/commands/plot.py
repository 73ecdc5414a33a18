"""`trm-tui plot RUN…`: any logged metric of one or more runs against step, tokens or wall time,
smoothed, overlaid; in the terminal, or written to a PNG, SVG (matplotlib) or CSV file with --out."""

from __future__ import annotations

import argparse

X_CHOICES = ("step", "tokens", "wall")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="plot any logged metric of runs (overlaid) in the terminal or to PNG/SVG/CSV"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of runs (a sweep)")
    p.add_argument(
        "--metric",
        "-m",
        default="loss",
        metavar="NAME",
        help="loss, val_loss, val_token_acc, accuracy, grad_norm, lr, tokens_per_s, … (default loss)",
    )
    p.add_argument("--x", choices=X_CHOICES, default="step", help="x axis (default step)")
    p.add_argument(
        "--smooth", type=float, default=0.0, metavar="W", help="EMA weight in [0, 1), e.g. 0.9 (default 0)"
    )
    p.add_argument("--log", action="store_true", help="log scale for the values")
    p.add_argument("--out", "-o", metavar="FILE", default=None, help="write FILE.png, FILE.svg or FILE.csv")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from trm_core.errors import UserError
    from trm_core.metrics.export import export_plot, load_runs, plotted
    from trm_core.metrics.series import PlotSpec

    if not 0.0 <= args.smooth < 1.0:
        raise UserError(f"--smooth must be in [0, 1), got {args.smooth:g}")
    spec = PlotSpec(args.metric, args.x, args.smooth)
    runs = load_runs(args.runs)
    data = plotted(runs, spec)
    if args.out:
        path = export_plot(args.out, data, spec, log_scale=args.log)
        print(f"wrote {path} ({spec.label}, {len(data)} run{'s' if len(data) != 1 else ''})")
        return 0
    print_chart(data, spec, args.log)
    return 0


def print_chart(data, spec, log_scale: bool) -> None:
    """The app's braille chart, printed at the terminal's width, with a legend of the runs."""
    import shutil

    from rich.console import Console
    from rich.text import Text

    from trm_core.printable import printable
    from trm_tui.widgets.loss_chart import PALETTE, Line, render_lines, spec_legend

    console = Console(highlight=False)
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    lines = [Line(label, PALETTE[i % len(PALETTE)], pts) for i, (label, pts) in enumerate(data)]
    console.print(render_lines(lines, width, 18, legend=spec_legend(spec, [], log_scale), x=spec.x,
                               log_scale=log_scale))  # fmt: skip
    legend = Text()
    for line in lines:
        legend.append("━ ", style=line.style)
        legend.append(printable(line.label))  # a run's name is echoed escaped
        if line.points:
            legend.append(f" {line.points[-1][1]:.4g}", style="dim")
        legend.append("   ")
    console.print(legend)
