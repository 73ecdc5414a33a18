"""The report of `trm-tui compare --depth NAME [--paired]`, as text: which combinations are resolved
best, the verdict lines and the Markdown tables (accuracy against depth; paired differences). Used
by the CLI (`trm_tui/commands/compare_depth.py`) and the app's compare view (depth mode)."""

from __future__ import annotations

from typing import Any

from trm_core.experiments.depth_compare import RESOLVED_METRICS
from trm_core.experiments.report import PLUS_MINUS, all_equal, cell, fmt, group_label, verdict

__all__ = [
    "COLUMNS",
    "PAIRED_NOTE",
    "SHOWN",
    "best_rows",
    "depth_cells",
    "depth_verdicts",
    "diff_cell",
    "markdown_depth",
    "markdown_paired",
    "paired_cells",
    "paired_columns",
]

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
            if all_equal([rows[i]["metrics"][m] for i in members]):
                out.append(
                    f"{label}: equal at every depth ({fmt(m, rows[members[0]]['metrics'][m]['mean'])})."
                )
                continue
            said = []
            for r in pairs:
                worse = r["b"] if r["better"] == r["a"] else r["a"]
                said.append(f"{rows[r['better']]['label']} > {rows[worse]['label']}")
            out.append(verdict(label, len(members), with_ci, said, "combinations"))
    return out


def depth_cells(row: dict[str, Any]) -> list[str]:
    d = row["depth"]
    halt = "-" if d["halt_threshold"] is None else f"{d['halt_threshold']:g}"
    return [str(d["supervision_steps"]), str(d["H_cycles"]), str(d["L_cycles"]), halt, str(row["n"])]


def markdown_depth(result: dict[str, Any]) -> str:
    """One row per (group, depth combination), the interval footnote and the resolved lines."""
    best = {m: best_rows(result, m) for m in SHOWN}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for i, row in enumerate(result["depth_groups"]):
        cells = []
        for m in SHOWN:
            c = cell(m, row["metrics"][m], one_line=True)
            cells.append(f"**{c}**" if i in best[m] else c)
        lines.append("| " + " | ".join([group_label(row["key"]), *depth_cells(row), *cells]) + " |")
    notes = [f"{PLUS_MINUS}; {result['interval']}; bold = resolved best in its group."]
    notes += depth_verdicts(result)
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def diff_cell(s: dict[str, Any]) -> str:
    """`+12.3 ± 4.5 pts`: the mean paired difference and its 95 % CI half-width in percentage
    points; `+49.0 [-100.0, +100.0] pts` when the interval passes ±100 (cut there); one seed: no interval."""
    if s["mean"] is None:
        return "—"
    text = f"{100 * s['mean']:+.1f}"
    if s["ci95"] is None:
        return f"{text} pts"
    lo, hi = (100 * v for v in s["ci95"])
    if lo < -100 or hi > 100:
        return f"{text} [{max(lo, -100):+.1f}, {min(hi, 100):+.1f}] pts"
    return f"{text} ± {(hi - lo) / 2:.1f} pts"


def paired_columns(result: dict[str, Any]) -> list[str]:
    steps = sorted({k for r in result["paired"] for k in r["by_steps"]}, key=int)
    return ["group", "depth", "vs", "n", "Δ accuracy", *(f"Δ {k}-step" for k in steps)]


def paired_cells(row: dict[str, Any], steps: list[str], bold: Any) -> list[str]:
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
    columns = paired_columns(result)
    steps = [c.split()[1].removesuffix("-step") for c in columns[5:]]
    lines = ["| " + " | ".join(columns) + " |", "|---|---|---|" + "---:|" * (len(columns) - 3)]
    for row in result["paired"]:
        cells = paired_cells(row, steps, lambda c: f"**{c}**")
        lines.append("| " + " | ".join([group_label(row["key"]), *cells]) + " |")
    notes = [PAIRED_NOTE.format(mark="bold"), *result["paired_notes"]]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
