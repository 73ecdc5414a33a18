"""Overlaid validation curves as terminal text (plotext), shared by `trm-tui compare --plot` and the
app's compare view. No Textual here: the CLI imports it too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from trm_core.experiments.report import group_label

__all__ = ["group_label", "render_curves"]


def render_curves(
    groups: Sequence[dict[str, Any]],
    *,
    width: int = 80,
    height: int = 18,
    log: bool = False,
    color: bool = True,
    title: str = "validation loss (mean over seeds)",
    _fit: bool = True,
) -> str:
    """The groups' mean validation curves (`group["curve"]`: [[step, loss], …]) overlaid, with a legend."""
    import plotext

    fig = plotext.figure
    fig.clear()
    fig.plot_size(max(width, 30), max(height, 8))
    fig.theme("simple" if color else "colorless")  # "simple": no background, one colour per curve
    fig.title(title + (" (log10)" if log else ""))
    drawn = 0
    for g in groups:
        curve = [(s, v) for s, v in g.get("curve", []) if math.isfinite(v) and (v > 0 or not log)]
        if not curve:
            continue
        ys = [math.log10(v) if log else v for _, v in curve]
        fig.draw(fig.signal([s for s, _ in curve], ys).lines().label(group_label(g["key"])))
        drawn += 1
    fig.label("step")
    # the curves fall from the top left: the legend goes top right
    fig.legend(x=max(width, 30) - 8, y=0, ha="right", va="top")
    out = fig.build().string()
    fig.clear()
    extra = out.count("\n") + 1 - height  # title and axis labels come on top of the size asked for
    if _fit and extra > 0 and height - extra >= 8:
        return render_curves(
            groups, width=width, height=height - extra, log=log, color=color, title=title, _fit=False
        )
    if not drawn:
        return "no validation curves to plot (no run has evaluated yet)"
    return out if color else plotext.uncolorize(out)
