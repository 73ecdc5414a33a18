"""`trm-tui compare PATH… --depth NAME`: accuracy against depth across seeds, per group and depth
combination, from the `trm-tui eval … --json RUN/NAME` file in every run (see
`trm_core.experiments.depth_compare`): a table (or Markdown, or JSON) of mean ± std [95 % interval],
and per group which combinations differ in accuracy with intervals that do not overlap."""

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


def run_depth(args: argparse.Namespace) -> int:
    from trm_core.experiments.depth_compare import depth_compare
    from trm_core.printable import printable

    result = depth_compare(args.paths, args.depth, by=args.by)
    if result["skipped"]:
        n = len(result["skipped"])
        names = ", ".join(printable(p) for p in result["skipped"])
        print(
            f"trm-tui: skipped {n} run{'s' * (n > 1)} without {printable(args.depth)}: {names}",
            file=sys.stderr,
        )
    emit(args, result, markdown_depth, rich_depth, depth_verdicts, "resolved best in its group")
    return 0
