"""The comparison report as rich tables, and how the CLI emits a report (--json, --markdown or the
table with its notes). The text of the report (cells, verdicts, Markdown) is in
`trm_core.experiments.report` and `depth_report`; the app's compare view and the CLI share both."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from trm_core.experiments.depth_report import (
    COLUMNS,
    SHOWN,
    best_rows,
    depth_cells,
    paired_cells,
    paired_columns,
)
from trm_core.experiments.report import best_resolved, cell, group_label

__all__ = ["emit", "rich_depth", "rich_paired", "rich_table", "write_json"]


def rich_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{sum(g['n'] for g in result['groups'])} runs; ± 95% CI", title_justify="left")
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


def rich_depth(result: dict[str, Any]) -> Any:
    from rich.table import Table

    runs = {r for row in result["depth_groups"] for r in row["runs"]}
    table = Table(title=f"accuracy against depth: {len(runs)} runs; ± 95% CI", title_justify="left")
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
        table.add_row(label, *depth_cells(row), *cells)
        previous = row["group"]
    return table


def rich_paired(result: dict[str, Any]) -> Any:
    from rich.table import Table

    columns = paired_columns(result)
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
        cells = paired_cells(row, steps, lambda c: f"[bold green]{c} *[/]")
        table.add_row(group_label(row["key"]) if row["group"] != previous else "", *cells)
        previous = row["group"]
    return table
