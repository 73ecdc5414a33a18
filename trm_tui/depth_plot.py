"""Accuracy against test depth as terminal text (plotext): one line per training recipe with its
95 % interval as a dotted band, overall or on problems of k steps. Shared by
`trm-tui compare --depth NAME --plot` and the app's compare view (depth mode). No Textual here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trm_core.experiments.report import group_label

__all__ = ["depth_axis", "render_depth_curves"]

_AXIS = {
    "supervision_steps": "supervision steps",
    "H_cycles": "H-cycles",
    "L_cycles": "L-cycles",
    "halt_threshold": "mean depth (ACT threshold varied)",
}
_COLOURS = ["blue", "red", "green", "magenta", "cyan", "yellow"]


def depth_axis(rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(what the x axis is, its label): the one depth key that varies across `rows`; with a varied
    halting threshold the measured mean depth; with several keys varied, net calls per token."""
    varied = [k for k in _AXIS if len({r["depth"][k] for r in rows}) > 1]
    if len(varied) == 1 and varied[0] != "halt_threshold":
        return varied[0], _AXIS[varied[0]]
    if varied == ["halt_threshold"]:
        return "mean_depth", _AXIS["halt_threshold"]
    return ("net_calls_per_token", "net calls per token") if varied else ("H_cycles", "H-cycles")


def _x(row: dict[str, Any], axis: str) -> float:
    if axis in row["depth"]:
        return float(row["depth"][axis])
    mean = row["metrics"][axis]["mean"]
    return float(mean) if mean is not None else 0.0


def _point(row: dict[str, Any], steps: str | None) -> tuple[float, float, float] | None:
    """(mean, low, high) in percent, the interval clipped to [0, 100]; None when not measured."""
    s = row["metrics"]["accuracy"] if steps is None else row.get("by_steps", {}).get(steps)
    if s is None or s["mean"] is None:
        return None
    mean = 100 * s["mean"]
    lo, hi = (mean, mean) if s["ci95"] is None else (100 * s["ci95"][0], 100 * s["ci95"][1])
    return mean, max(lo, 0.0), min(hi, 100.0)


def render_depth_curves(
    result: dict[str, Any],
    *,
    steps: str | None = None,
    width: int = 80,
    height: int = 18,
    color: bool = True,
) -> str:
    """The plot of `compare --depth` (`depth_compare`'s result) for all problems (`steps` None) or
    for the problems of `steps` steps; one x position per depth value, labelled with it."""
    import plotext

    rows = result["depth_groups"]
    axis, label = depth_axis(rows)
    xs = sorted({round(_x(r, axis), 6) for r in rows})
    where = {x: i for i, x in enumerate(xs)}
    fig = plotext.figure
    fig.clear()
    fig.plot_size(max(width, 30), max(height, 8))
    fig.theme("simple" if color else "colorless")
    what = "all problems" if steps is None else f"{steps}-step problems"
    fig.title(f"accuracy % ({what}) · dotted = 95% interval")
    drawn = 0
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for g, members in groups.items():
        pts = sorted(
            (where[round(_x(r, axis), 6)], p) for r in members if (p := _point(r, steps)) is not None
        )
        if not pts:
            continue
        colour = _COLOURS[g % len(_COLOURS)]
        pos = [x for x, _ in pts]
        line = fig.signal(pos, [p[0] for _, p in pts], marker=plotext.marker("hd", colour))
        fig.draw(line.lines().label(group_label(members[0]["key"])))
        if any(p[1] != p[2] for _, p in pts):
            for k in (1, 2):
                band = fig.signal(pos, [p[k] for _, p in pts], marker=plotext.marker("·", colour))
                fig.draw(band.lines())
        drawn += 1
    if not drawn:
        fig.clear()
        return f"no accuracy to plot for {what}"
    fig.ruler("x").ticks(list(range(len(xs))), [f"{x:g}" for x in xs])
    fig.ruler("y").lim(0, 100)
    fig.label(label)
    out = fig.build().string()
    fig.clear()
    return out if color else plotext.uncolorize(out)
