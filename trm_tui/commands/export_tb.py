"""`trm-tui export-tb RUN…`: write a run's metrics.jsonl as TensorBoard event files (RUN/tensorboard)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-tb", help="write runs' metrics as TensorBoard event files (needs the tensorboard extra)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument(
        "--out", metavar="DIR", default=None, help="where to write (one run; default RUN/tensorboard)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from trm_core.errors import UserError
    from trm_core.metrics.tensorboard import export_run

    if args.out and len(args.runs) > 1:
        raise UserError("--out takes one run; without it each run gets RUN/tensorboard")
    dirs = [export_run(r, args.out) for r in args.runs]
    for d in dirs:
        print(f"wrote {d}")
    import os

    top = dirs[0] if len(dirs) == 1 else os.path.commonpath([str(d.parent) for d in dirs])
    print(f"view with: tensorboard --logdir {top}")
    return 0
