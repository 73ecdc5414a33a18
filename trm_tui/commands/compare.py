"""`trm-tui compare PATH…`: runs grouped by what differs, mean ± std and a t-based 95 % interval across
seeds per metric, differences marked resolved only where intervals do not overlap. With `--depth NAME`:
accuracy against depth from each run's `eval --json` file (see `compare_depth.py`)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_METRICS = ["best_val_loss", "exact_calculator", "exact_no_calculator", "wall_seconds"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs or sweeps: mean ± 95% interval across seeds per group")
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
    p.set_defaults(run=run)


def fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    if metric.startswith(("exact", "accuracy")):
        return f"{100 * v:.1f}%"
    if metric == "mean_depth":
        return f"{v:.2f}"
    if metric == "best_val_loss":
        return f"{v:.4f}"
    if metric in ("params", "flops_per_token"):
        return f"{v / 1e6:.2f}M"
    if metric == "tokens_per_second":
        return f"{v / 1e3:.1f}k"
    return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def cell(metric: str, s: dict[str, Any], *, one_line: bool) -> str:
    if s["mean"] is None:
        return "—"
    text = fmt(metric, s["mean"])
    if s["std"] is not None:
        text += f" ± {fmt(metric, s['std'])}"
    if s["ci95"] is not None:
        sep = " " if one_line else "\n"
        text += f"{sep}[{fmt(metric, s['ci95'][0])}, {fmt(metric, s['ci95'][1])}]"
    return text


def best_resolved(result: dict[str, Any], metric: str) -> int | None:
    """The group that is resolved better than every other group on `metric`, if any."""
    n = len(result["groups"])
    wins: dict[int, int] = {}
    for r in result["resolved"]:
        if r["metric"] == metric:
            wins[r["better"]] = wins.get(r["better"], 0) + 1
    return next((g for g, w in wins.items() if w == n - 1 and n > 1), None)


def verdict(label: str, count: int, with_ci: int, said: list[str], what: str) -> str:
    """One sentence: `said` (the resolved pairs, e.g. "a > b") among `count` groups or combinations
    of which `with_ci` have an interval, or that nothing can be or was resolved."""
    if with_ci < 2:
        return f"{label}: fewer than two {what} with ≥ 2 runs, nothing can be resolved."
    if not said:
        return f"{label}: all 95% intervals overlap — nothing resolved."
    total = count * (count - 1) // 2
    left = total - len(said)
    rest = "; the other pair overlaps" if left == 1 else f"; the other {left} pairs overlap" if left else ""
    return f"{label}: resolved {', '.join(said)}{rest}."


def caveats(result: dict[str, Any]) -> list[str]:
    """A sentence each for runs whose training has not ended (their numbers are partial: a sweep
    still running, or stopped), finished runs without an eval record (no accuracy), and runs whose
    latest eval record was measured differently from the others' (another `eval` overwrote it)."""
    unfinished = [p for g in result["groups"] for p in g.get("unfinished", [])]
    unevaluated = [p for g in result["groups"] for p in g.get("unevaluated", []) if p not in unfinished]
    out = []
    for paths, what in (
        (unfinished, "not finished training (numbers partial)"),
        (unevaluated, "no eval record (no accuracy)"),
    ):
        if paths:
            names = ", ".join(Path(p).name for p in paths[:4]) + (", …" if len(paths) > 4 else "")
            out.append(f"{len(paths)} run{'s' if len(paths) > 1 else ''} {what}: {names}.")
    if result.get("eval_mismatch"):
        parts = []
        for e in result["eval_mismatch"]:
            said = ", ".join(f"{k}={v}" for k, v in e["settings"].items())
            who = Path(e["runs"][0]).name if len(e["runs"]) == 1 else f"{len(e['runs'])} runs"
            parts.append(f"{said} ({who})")
        out.append(f"Accuracies measured with different eval settings, not comparable: {'; '.join(parts)}.")
    return out


def verdicts(result: dict[str, Any]) -> list[str]:
    """The caveats, then one sentence per metric (`metric_verdicts`)."""
    return caveats(result) + metric_verdicts(result)


def metric_verdicts(result: dict[str, Any]) -> list[str]:
    """One sentence per metric: which pairs are resolved, or that the intervals all overlap."""
    from trm_tui.curves import group_label

    groups = result["groups"]
    out = []
    for m, info in result["metrics"].items():
        pairs = [r for r in result["resolved"] if r["metric"] == m]
        with_ci = sum(1 for g in groups if g["metrics"][m]["ci95"] is not None)
        if len(groups) < 2:
            continue
        said = []
        for r in pairs:
            a, b = (r["a"], r["b"]) if r["better"] == r["a"] else (r["b"], r["a"])
            op = "<" if info["better"] == "lower" else ">"
            said.append(f"{group_label(groups[a]['key'])} {op} {group_label(groups[b]['key'])}")
        out.append(verdict(info["label"], len(groups), with_ci, said, "groups"))
    return out


def markdown(result: dict[str, Any]) -> str:
    from trm_tui.curves import group_label

    metrics = list(result["metrics"])
    head = ["group", "n", *(result["metrics"][m]["label"] for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * len(metrics)]
    best = {m: best_resolved(result, m) for m in metrics}
    for i, g in enumerate(result["groups"]):
        cells = []
        for m in metrics:
            c = cell(m, g["metrics"][m], one_line=True)
            cells.append(f"**{c}**" if best[m] == i else c)
        lines.append("| " + " | ".join([group_label(g["key"]), str(g["n"]), *cells]) + " |")
    notes = [f"mean ± std [95% interval]; {result['interval']}; bold = resolved best."] + verdicts(result)
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def rich_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    from trm_tui.curves import group_label

    table = Table(
        title=f"{sum(g['n'] for g in result['groups'])} runs; mean ± std [95% interval]", title_justify="left"
    )
    table.add_column("group", overflow="fold")
    table.add_column("n", justify="right")
    metrics = list(result["metrics"])
    for m in metrics:
        table.add_column(result["metrics"][m]["label"], justify="right")
    best = {m: best_resolved(result, m) for m in metrics}
    for i, g in enumerate(result["groups"]):
        cells = []
        for m in metrics:
            c = cell(m, g["metrics"][m], one_line=False)
            cells.append(f"[bold green]{c} *[/]" if best[m] == i else c)
        table.add_row(group_label(g["key"]), str(g["n"]), *cells)
    return table


def write_json(path: str, result: dict[str, Any]) -> None:
    """The result as JSON to `path` ('-' = stdout); an unwritable path is one sentence."""
    from trm_core.errors import UserError

    text = json.dumps(result, indent=1)
    if path == "-":
        print(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def emit(
    args: argparse.Namespace,
    result: dict[str, Any],
    to_markdown: Callable[[dict[str, Any]], str],
    to_table: Callable[[dict[str, Any]], Any],
    to_lines: Callable[[dict[str, Any]], list[str]],
    best: str,
) -> None:
    """--json, then --markdown or the rich table with the interval note and the verdict lines."""
    from rich.console import Console

    if args.json:
        write_json(args.json, result)
    if args.markdown:
        print(to_markdown(result), end="")
    elif args.json != "-":
        console = Console(highlight=False)
        console.print(to_table(result))
        console.print(f"[dim]{result['interval']}; * = {best}.[/dim]")
        for line in to_lines(result):
            console.print(line)


def _say_left_out(paths: list) -> None:
    """Records that are not records were left out of the statistics: say which (file and field)."""
    from trm_core.evaluation.record import run_problems
    from trm_core.printable import printable

    for problem in (q for p in paths for q in run_problems(p)):
        print(f"trm-tui: left out: {printable(problem)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:

    from trm_core.errors import UserError
    from trm_core.experiments.compare import METRICS, compare, find_runs, summarize_run

    if args.depth is not None:
        if args.plot or args.metric:
            raise UserError(
                "--depth makes its own table of accuracy against depth; leave out --plot and --metric"
            )
        from trm_tui.commands.compare_depth import run_depth

        return run_depth(args)
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
