"""A plot of runs' metric series written to a file: CSV (always), PNG or SVG (matplotlib, the
optional `plot` extra). Shared by `trm-tui plot --out` and the app's plot screen. No Textual here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from trm_core.atomic import write_text_atomic
from trm_core.errors import UserError
from trm_core.metrics.series import PlotSpec, Point, available_metrics, metric_label, series
from trm_core.runs.history import RunHistory

__all__ = ["FORMATS", "Plotted", "load_runs", "plotted", "export_plot", "csv_text"]

FORMATS = (".csv", ".png", ".svg")
MISSING = "PNG and SVG export need matplotlib: pip install 'trm-tui[plot]' (or write a .csv)"

Plotted = list[tuple[str, list[Point]]]  # (run label, points) per run


def load_runs(paths: Sequence[str | Path]) -> list[tuple[str, RunHistory]]:
    """(label, history) of each run directory; a folder of runs (a sweep) gives each run in it."""
    out: list[tuple[str, RunHistory]] = []
    for p in map(Path, paths):
        if (p / "metrics.jsonl").is_file():
            out.append((p.name, read_history(p)))
            continue
        inner = sorted(d for d in p.iterdir() if (d / "metrics.jsonl").is_file()) if p.is_dir() else []
        if not inner:
            raise UserError(f"{p} is not a run directory (no metrics.jsonl) nor a folder of runs")
        out.extend((f"{p.name}/{d.name}", read_history(d)) for d in inner)
    return out


def read_history(run_dir: Path) -> RunHistory:
    """The whole metrics.jsonl folded (read in slices: a huge log is more than one read)."""
    h, before = RunHistory(), -1
    while h.offset != before:
        before = h.offset
        h.follow(run_dir / "metrics.jsonl")
    return h


def plotted(runs: Sequence[tuple[str, RunHistory]], spec: PlotSpec) -> Plotted:
    """Each run's series of the spec's metric; UserError naming what was logged when no run has it."""
    out = [(label, series(h, spec)) for label, h in runs]
    if runs and not any(pts for _, pts in out):
        logged = sorted({m for _, h in runs for m in available_metrics(h)})
        raise UserError(
            f"no run logged {spec.metric!r} (on the {spec.x} axis); logged: {', '.join(logged) or 'nothing'}"
        )
    return out


def csv_text(data: Plotted, spec: PlotSpec) -> str:
    """Long format: one row per point, `run,<x>,<metric>` (the value smoothed when the spec says so)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    value = spec.metric + (f"_ema{spec.smoothing:g}" if spec.smoothing else "")
    w.writerow(["run", spec.x, value])
    for label, pts in data:
        for x, y in pts:
            w.writerow([label, f"{x:.10g}", f"{y:.10g}"])
    return buf.getvalue()


def export_plot(path: str | Path, data: Plotted, spec: PlotSpec, *, log_scale: bool = False) -> Path:
    """Write `data` to `path`: .csv as a table, .png/.svg as a matplotlib figure. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"cannot export to {path.name}: the file must end in {', '.join(FORMATS)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            write_text_atomic(path, csv_text(data, spec))
        else:
            _figure(data, spec, log_scale).savefig(path, format=suffix[1:], bbox_inches="tight")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _figure(data: Plotted, spec: PlotSpec, log_scale: bool):
    try:  # Figure without pyplot: no GUI backend, no global state
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(MISSING) from None
    fig = Figure(figsize=(8, 4.5), dpi=120)
    ax = fig.add_subplot()
    for label, pts in data:
        pts = [(x, y) for x, y in pts if not log_scale or y > 0]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], label=label, linewidth=1.2)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(metric_label(spec.metric))
    ax.set_title(spec.label)
    ax.grid(True, alpha=0.3)
    if len(data) > 1 or (data and data[0][0]):
        ax.legend(fontsize="small")
    if spec.x == "tokens":  # 200k, 1.5M rather than an offset "1e3" in the corner
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    return fig
