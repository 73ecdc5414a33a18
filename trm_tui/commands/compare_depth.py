"""`trm-tui compare PATH… --depth NAME`: accuracy against depth across seeds, per group and depth
combination, from the `trm-tui eval … --json RUN/NAME` file in every run (see
`trm_core.experiments.depth_compare`): a table (or Markdown, or JSON) of mean ± std [95 % interval],
and per group which combinations differ in accuracy with intervals that do not overlap.
`--paired`: per seed, the accuracy at each depth minus at the trained depth (`paired.py`), with the
95 % t-interval of the mean difference, overall and per number of steps; `--plot`: accuracy against
depth, one line per recipe with its interval band, overall and per number of steps."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trm_tui.commands.compare import cell, emit, verdict

COLUMNS = [
    "group",
    "S",
    "H",
    "L",
    "halt",
    "n",
    "mean depth",
    "calls/token",
    "exact, calculator",
    "exact, none",
]
SHOWN = ["mean_depth", "net_calls_per_token", "accuracy", "accuracy_no_calculator"]


def _groups(result: dict[str, Any]) -> dict[int, list[int]]:
    """Profile group number -> indices of its rows in depth_groups."""
    out: dict[int, list[int]] = {}
    for i, row in enumerate(result["depth_groups"]):
        out.setdefault(row["group"], []).append(i)
    return out


def best_rows(result: dict[str, Any], metric: str) -> set[int]:
    """Rows resolved better on `metric` than every other combination of their group."""
    wins: dict[int, int] = {}
    for r in result["resolved"]:
        if r["metric"] == metric:
            wins[r["better"]] = wins.get(r["better"], 0) + 1
    size = {i: len(members) for members in _groups(result).values() for i in members}
    return {i for i, w in wins.items() if size[i] > 1 and w == size[i] - 1}


def depth_verdicts(result: dict[str, Any]) -> list[str]:
    """Per group and accuracy: the resolved pairs of combinations, or that their intervals overlap."""
    from trm_core.experiments.depth_compare import RESOLVED_METRICS
    from trm_tui.curves import group_label

    rows = result["depth_groups"]
    out = []
    for g, members in _groups(result).items():
        if len(members) < 2:
            continue
        name = group_label(rows[members[0]]["key"])
        for m in RESOLVED_METRICS:
            if all(rows[i]["metrics"][m]["mean"] is None for i in members):
                continue  # never measured (eval without --both / --no-calculator)
            label = f"{name} · {result['metrics'][m]['label']}"
            pairs = [r for r in result["resolved"] if r["metric"] == m and r["group"] == g]
            with_ci = sum(1 for i in members if rows[i]["metrics"][m]["ci95"] is not None)
            said = []
            for r in pairs:
                worse = r["b"] if r["better"] == r["a"] else r["a"]
                said.append(f"{rows[r['better']]['label']} > {rows[worse]['label']}")
            out.append(verdict(label, len(members), with_ci, said, "combinations"))
    return out


def _depth_cells(row: dict[str, Any]) -> list[str]:
    d = row["depth"]
    halt = "-" if d["halt_threshold"] is None else f"{d['halt_threshold']:g}"
    return [str(d["supervision_steps"]), str(d["H_cycles"]), str(d["L_cycles"]), halt, str(row["n"])]


def markdown_depth(result: dict[str, Any]) -> str:
    """One row per (group, depth combination), the interval footnote and the resolved lines."""
    from trm_tui.curves import group_label

    best = {m: best_rows(result, m) for m in SHOWN}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for i, row in enumerate(result["depth_groups"]):
        cells = []
        for m in SHOWN:
            c = cell(m, row["metrics"][m], one_line=True)
            cells.append(f"**{c}**" if i in best[m] else c)
        lines.append("| " + " | ".join([group_label(row["key"]), *_depth_cells(row), *cells]) + " |")
    notes = [f"mean ± std [95% interval]; {result['interval']}; bold = resolved best in its group."]
    notes += depth_verdicts(result)
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def rich_depth(result: dict[str, Any]) -> Any:
    from rich.table import Table

    from trm_tui.curves import group_label

    runs = {r for row in result["depth_groups"] for r in row["runs"]}
    table = Table(
        title=f"accuracy against depth: {len(runs)} runs; mean ± std [95% interval]", title_justify="left"
    )
    for name in COLUMNS:
        table.add_column(name, justify="left" if name == "group" else "right", overflow="fold")
    best = {m: best_rows(result, m) for m in SHOWN}
    previous = None
    for i, row in enumerate(result["depth_groups"]):
        if previous is not None and row["group"] != previous:
            table.add_section()
        cells = []
        for m in SHOWN:
            c = cell(m, row["metrics"][m], one_line=False)
            cells.append(f"[bold green]{c} *[/]" if i in best[m] else c)
        label = group_label(row["key"]) if row["group"] != previous else ""
        table.add_row(label, *_depth_cells(row), *cells)
        previous = row["group"]
    return table


def diff_cell(s: dict[str, Any]) -> str:
    """`+12.3 ± 4.5 pts`: the mean paired difference and its 95 % interval's half-width, in
    percentage points (one seed: no interval)."""
    if s["mean"] is None:
        return "—"
    text = f"{100 * s['mean']:+.1f}"
    if s["ci95"] is None:
        return f"{text} pts"
    return f"{text} ± {100 * (s['ci95'][1] - s['ci95'][0]) / 2:.1f} pts"


def _paired_columns(result: dict[str, Any]) -> list[str]:
    steps = sorted({k for r in result["paired"] for k in r["by_steps"]}, key=int)
    return ["group", "depth", "vs", "n", "Δ accuracy", *(f"Δ {k}-step" for k in steps)]


def _paired_cells(row: dict[str, Any], steps: list[str], bold: Any) -> list[str]:
    cells = [diff_cell(row["diff"]) if not row["resolved"] else bold(diff_cell(row["diff"]))]
    for k in steps:
        s = row["by_steps"].get(k)
        c = "—" if s is None else diff_cell(s)
        cells.append(bold(c) if s is not None and row["by_steps_resolved"].get(k) else c)
    return [row["label"], row["reference"], str(len(row["seeds"])), *cells]


PAIRED_NOTE = (
    "Δ = accuracy at the depth − accuracy at the reference depth (the trained one unless --reference), "
    "per seed; ± = 95% t-interval half-width of the mean paired difference; {mark} = the interval excludes 0."
)


def markdown_paired(result: dict[str, Any]) -> str:
    from trm_tui.curves import group_label

    columns = _paired_columns(result)
    steps = [c.split()[1].removesuffix("-step") for c in columns[5:]]
    lines = ["| " + " | ".join(columns) + " |", "|---|---|---|" + "---:|" * (len(columns) - 3)]
    for row in result["paired"]:
        cells = _paired_cells(row, steps, lambda c: f"**{c}**")
        lines.append("| " + " | ".join([group_label(row["key"]), *cells]) + " |")
    notes = [PAIRED_NOTE.format(mark="bold"), *result["paired_notes"]]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def rich_paired(result: dict[str, Any]) -> Any:
    from rich.table import Table

    from trm_tui.curves import group_label

    columns = _paired_columns(result)
    steps = [c.split()[1].removesuffix("-step") for c in columns[5:]]
    table = Table(title="paired differences against the reference depth (± 95% CI)", title_justify="left")
    for name in columns:
        table.add_column(
            name, justify="left" if name in ("group", "depth", "vs") else "right", overflow="fold"
        )
    previous = None
    for row in result["paired"]:
        if previous is not None and row["group"] != previous:
            table.add_section()
        cells = _paired_cells(row, steps, lambda c: f"[bold green]{c} *[/]")
        table.add_row(group_label(row["key"]) if row["group"] != previous else "", *cells)
        previous = row["group"]
    return table


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
