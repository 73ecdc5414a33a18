"""The comparison report of `trm-tui compare`, as text: cells, verdicts, caveats and the Markdown
table. One place, used by the CLI (`trm_tui/commands/compare.py`) and the app's compare view
(`trm_tui/screens/compare.py`); the rich tables are in `trm_tui/compare_tables.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "best_resolved",
    "PLUS_MINUS",
    "all_equal",
    "bounds",
    "caveats",
    "cell",
    "fmt",
    "group_label",
    "markdown",
    "metric_verdicts",
    "verdict",
    "verdicts",
]


def group_label(key: dict[str, Any]) -> str:
    """`arch=trm num_layers=6`: the last part of each key (seeds pooled); `all` when nothing differs."""
    if not key:
        return "all"
    return " ".join(f"{k.rpartition('.')[2]}={v}" for k, v in key.items())


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


# "±" means one thing everywhere (CLI, Markdown, the app): the 95 % t-interval's half-width
PLUS_MINUS = (
    "mean ± 95% CI half-width across seeds ([a, b]: the 95% CI where it passes the value's bounds, "
    "0 or 100%, cut there)"
)


def bounds(metric: str) -> tuple[float, float | None]:
    """What a metric's value can be: accuracies lie in [0, 1], every other metric is ≥ 0."""
    return (0.0, 1.0) if metric.startswith(("exact", "accuracy")) else (0.0, None)


def cell(metric: str, s: dict[str, Any], *, one_line: bool = True) -> str:
    """`11.0% ± 2.5%` (mean ± 95 % CI half-width); `60.0% [0.0%, 100.0%]` when the interval passes
    the metric's bounds (too few seeds for a symmetric one: it is shown cut at the bounds); the
    mean alone with one run. `one_line` is kept for the callers' symmetry (every cell is one line)."""
    if s["mean"] is None:
        return "—"
    text = fmt(metric, s["mean"])
    if s["ci95"] is None:
        return text
    lo, hi = s["ci95"]
    low, high = bounds(metric)
    if lo < low or (high is not None and hi > high):
        cut_hi = hi if high is None else min(hi, high)
        return f"{text} [{fmt(metric, max(lo, low))}, {fmt(metric, cut_hi)}]"
    return f"{text} ± {fmt(metric, (hi - lo) / 2)}"


def all_equal(stats: list[dict[str, Any]]) -> bool:
    """Every value of every group is the same number (e.g. the same parameter count): "equal"."""
    values = {v for s in stats for v in s["values"]}
    return len(values) == 1 and sum(len(s["values"]) for s in stats) >= 2


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
    unreadable = [p for g in result["groups"] for p in g.get("unreadable", [])]
    unfinished = [p for g in result["groups"] for p in g.get("unfinished", [])]
    unevaluated = [
        p for g in result["groups"] for p in g.get("unevaluated", []) if p not in unfinished + unreadable
    ]
    out = []
    for paths, what in (
        (unreadable, "whose metrics.jsonl cannot be read (no loss, steps or wall time)"),
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
    groups = result["groups"]
    out = []
    for m, info in result["metrics"].items():
        pairs = [r for r in result["resolved"] if r["metric"] == m]
        with_ci = sum(1 for g in groups if g["metrics"][m]["ci95"] is not None)
        if len(groups) < 2:
            continue
        if all_equal([g["metrics"][m] for g in groups]):
            value = fmt(m, groups[0]["metrics"][m]["mean"])
            out.append(f"{info['label']}: equal in every group ({value}).")
            continue
        said = []
        for r in pairs:
            a, b = (r["a"], r["b"]) if r["better"] == r["a"] else (r["b"], r["a"])
            op = "<" if info["better"] == "lower" else ">"
            said.append(f"{group_label(groups[a]['key'])} {op} {group_label(groups[b]['key'])}")
        out.append(verdict(info["label"], len(groups), with_ci, said, "groups"))
    return out


def markdown(result: dict[str, Any]) -> str:
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
    notes = [f"{PLUS_MINUS}; {result['interval']}; bold = resolved best."] + verdicts(result)
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
