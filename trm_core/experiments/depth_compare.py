"""Accuracy against depth across seeds: `trm-tui compare PATH… --depth NAME`.

Each run directory holds a `trm-tui eval … --json RUN/NAME` file (one result per depth combination:
supervision_steps, H_cycles, L_cycles, halt_threshold). Runs are grouped as `compare` groups them
(the profile keys that differ, seeds pooled; or `by`), then within a group by the depth combination;
per (group, combination) every metric gets n, mean ± sample std and the t-based 95 % interval of
`compare.summarize`. Within a group, two combinations are *resolved* on a metric only when their
intervals do not overlap (the same conservative rule as `compare`).

The JSON (`compare --depth NAME --json`):
    {"depth_groups": [{"key": {"model.halting": "act", …}, "group": 0, "label": "S2-H1-L2-t0.5",
                       "depth": {"supervision_steps": 2, "H_cycles": 1, "L_cycles": 2, "halt_threshold": 0.5},
                       "n": 3, "runs": ["runs/t/act_seed0", …],
                       "metrics": {"accuracy": {"mean": …, "std": …, "ci95": [lo, hi], "values": […]}, …},
                       "by_steps": {"3": summarize(accuracy on 3-step problems), …}}],
     "metrics": {name: {"label": …, "better": …}}, "by": [...], "name": "depth.json", "skipped": [run, …],
     "interval": "…", "resolved": [{"metric": "accuracy", "group": 0, "a": i, "b": j, "better": i|j}]}
`group` numbers the profile groups in order; `a`, `b`, `better` index `depth_groups`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trm_core.errors import UserError
from trm_core.experiments.compare import (
    INTERVAL,
    RunSummary,
    find_runs,
    group_keys,
    resolved_pairs,
    summarize,
)

__all__ = [
    "DEPTH_KEYS",
    "DEPTH_METRICS",
    "RESOLVED_METRICS",
    "depth_compare",
    "depth_label",
    "read_depth_file",
]

DEPTH_KEYS = ("supervision_steps", "H_cycles", "L_cycles", "halt_threshold")
# name -> (label, better)
DEPTH_METRICS: dict[str, tuple[str, str]] = {
    "mean_depth": ("mean depth", "lower"),
    "net_calls_per_token": ("calls/token", "lower"),
    "accuracy": ("exact, calculator", "higher"),
    "accuracy_no_calculator": ("exact, none", "higher"),
}
RESOLVED_METRICS = ("accuracy", "accuracy_no_calculator")  # depth and cost are what the user chose
MAX_BYTES = 16 * 2**20
_WHAT = "a `trm-tui eval --json` file"


def depth_label(depth: dict[str, Any]) -> str:
    """`S2-H1-L2` (and `-t0.5` with a halting threshold), as `trm-tui eval` names a combination."""
    label = f"S{depth['supervision_steps']}-H{depth['H_cycles']}-L{depth['L_cycles']}"
    return label + ("" if depth["halt_threshold"] is None else f"-t{depth['halt_threshold']:g}")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _problem(row: Any) -> str | None:
    """What is wrong with one result object, or None."""
    if not isinstance(row, dict):
        return "is not an object"
    for k in (*DEPTH_KEYS, *DEPTH_METRICS):
        if k not in row:
            return f"has no {k!r}"
    for k in ("supervision_steps", "H_cycles", "L_cycles"):
        v = row[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"has {k} {v!r}, not a whole number ≥ 1"
    for k, optional, upper in (
        ("halt_threshold", True, 1.0),
        ("accuracy", False, 1.0),
        ("accuracy_no_calculator", True, 1.0),
        ("mean_depth", False, math.inf),
        ("net_calls_per_token", False, math.inf),
    ):
        v = row[k]
        if v is None and optional:
            continue
        if not _number(v) or not 0 <= v <= upper:
            bound = "between 0 and 1" if upper == 1.0 else "≥ 0"
            return f"has {k} {v!r}, not a number {bound}" + (" or null" if optional else "")
    return _by_steps_problem(row.get("by_steps"))


def _by_steps_problem(by_steps: Any) -> str | None:
    """`by_steps` is optional (files from before it existed): {"3": accuracy, …} when present."""
    if by_steps is None:
        return None
    if not isinstance(by_steps, dict):
        return "has a by_steps that is not an object"
    for k, v in by_steps.items():
        if not k.isdigit() or not _number(v) or not 0 <= v <= 1:
            return f"has by_steps {k!r}: {v!r}, not a step count with an accuracy between 0 and 1"
    return None


def parse_depth_label(text: str) -> dict[str, Any]:
    """`S1-H4-L2` or `S2-H1-L2-t0.5` (as `depth_label` writes it) -> the depth combination."""
    import re

    m = re.fullmatch(r"S(\d+)-H(\d+)-L(\d+)(?:-t([0-9.]+))?", text.strip())
    if m is None:
        raise UserError(f"--reference takes a depth like S1-H4-L2 or S2-H1-L2-t0.5, got {text!r}")
    try:
        thr = None if m.group(4) is None else float(m.group(4))
    except ValueError:
        raise UserError(f"--reference takes a depth like S1-H4-L2 or S2-H1-L2-t0.5, got {text!r}") from None
    return {
        "supervision_steps": int(m.group(1)),
        "H_cycles": int(m.group(2)),
        "L_cycles": int(m.group(3)),
        "halt_threshold": thr,
    }


def read_depth_file(path: str | Path) -> list[dict[str, Any]]:
    """The results of one `trm-tui eval --json` file, validated; a one-sentence UserError otherwise.
    Each result: the four depth keys, the four metrics and `by_steps` ({} when the file has none;
    `seconds` and unknown keys dropped)."""
    from trm_core.safe_read import FileProblem, read_bounded

    path = Path(path)
    try:
        raw = read_bounded(path, MAX_BYTES)
    except FileProblem as e:
        raise UserError(f"{path} {e.phrase}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text, not {_WHAT}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON (line {e.lineno}), not {_WHAT}") from None
    except RecursionError:
        raise UserError(f"{path} is JSON nested too deeply to be {_WHAT}") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise UserError(f"{path} has no 'results' list: it is not {_WHAT}")
    if not results:
        raise UserError(f"{path} has an empty 'results' list: nothing to compare")
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for i, row in enumerate(results):
        problem = _problem(row)
        if problem is not None:
            raise UserError(f"{path}: result {i + 1} {problem}, so it is not {_WHAT}")
        clean = {k: row[k] for k in (*DEPTH_KEYS, *DEPTH_METRICS)}
        clean["by_steps"] = dict(row.get("by_steps") or {})
        combo = tuple(clean[k] for k in DEPTH_KEYS)
        if combo in seen:
            raise UserError(f"{path} lists {depth_label(clean)} twice; keep one result per depth combination")
        seen.add(combo)
        out.append(clean)
    return out


def _order(depth: dict[str, Any]) -> tuple[Any, ...]:
    thr = depth["halt_threshold"]
    return (*(depth[k] for k in DEPTH_KEYS[:3]), thr is not None, thr or 0.0)


def depth_compare(
    paths: Iterable[str | Path],
    name: str,
    by: Sequence[str] | None = None,
    *,
    paired: bool = False,
    reference: str | None = None,
) -> dict[str, Any]:
    """Read RUN/`name` in every run under `paths`, group and summarize (see the module docstring).
    Runs without the file are listed in "skipped"; no run with it at all is a UserError.
    `paired`: also "paired" and "paired_notes" (`paired.py`), against `reference` (a depth label;
    None = each run's trained depth)."""
    from trm_core.runs.read import saved_profile

    if not name or not name.strip():
        raise UserError("--depth takes the name of the eval --json file inside each run, e.g. depth.json")
    found = find_runs(paths)
    runs: list[tuple[RunSummary, list[dict[str, Any]]]] = []
    skipped: list[str] = []
    for run in found:
        file = run / name
        if not file.exists() and not file.is_symlink():
            skipped.append(str(run))
            continue
        rows = read_depth_file(file)
        runs.append((RunSummary(run, saved_profile(run).flat(), {}), rows))
    if not runs:
        where = "the run" if len(found) == 1 else f"any of the {len(found)} runs"
        raise UserError(f"{name} is not in {where}; write it with `trm-tui eval RUN … --json RUN/{name}`")
    summaries = [r for r, _ in runs]
    keys = group_keys(summaries, by)

    groups: dict[str, tuple[dict[str, Any], dict[tuple[Any, ...], dict[str, Any]]]] = {}
    for summary, rows in runs:
        key = {k: summary.config.get(k) for k in keys}
        _, combos = groups.setdefault(repr(sorted(key.items())), (key, {}))
        for row in rows:
            depth = {k: row[k] for k in DEPTH_KEYS}
            c = combos.setdefault(tuple(depth.values()), {"depth": depth, "runs": [], "rows": []})
            c["runs"].append(str(summary.path))
            c["rows"].append(row)

    out: list[dict[str, Any]] = []
    resolved: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if paired:
        extra = _paired(runs, keys, parse_depth_label(reference) if reference else None)
    for gi, (key, combos) in enumerate(groups.values()):
        first = len(out)
        for c in sorted(combos.values(), key=lambda c: _order(c["depth"])):
            metrics = {m: summarize([r[m] for r in c["rows"] if r[m] is not None]) for m in DEPTH_METRICS}
            per_steps: dict[str, list[float]] = {}
            for r in c["rows"]:
                for k, v in r["by_steps"].items():
                    per_steps.setdefault(k, []).append(v)
            out.append(
                {
                    "key": key,
                    "group": gi,
                    "label": depth_label(c["depth"]),
                    "depth": c["depth"],
                    "n": len(c["runs"]),
                    "runs": c["runs"],
                    "metrics": metrics,
                    "by_steps": {
                        k: summarize(v) for k, v in sorted(per_steps.items(), key=lambda kv: int(kv[0]))
                    },
                }
            )
        resolved += _resolved(out, range(first, len(out)), gi)
    return {
        "depth_groups": out,
        "metrics": {m: {"label": label, "better": better} for m, (label, better) in DEPTH_METRICS.items()},
        "by": keys,
        "name": name,
        "skipped": skipped,
        "interval": INTERVAL,
        "resolved": resolved,
        **extra,
    }


def _paired(
    runs: list[tuple[RunSummary, list[dict[str, Any]]]], keys: list[str], reference: dict[str, Any] | None
) -> dict[str, Any]:
    from trm_core.experiments.paired import paired_differences

    members: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for summary, rows in runs:
        key = {k: summary.config.get(k) for k in keys}
        by_combo = {tuple(r[k] for k in DEPTH_KEYS): r for r in rows}
        members.setdefault(repr(sorted(key.items())), (key, []))[1].append((summary.config, by_combo))
    rows_out: list[dict[str, Any]] = []
    notes: list[str] = []
    for gi, (key, group) in enumerate(members.values()):
        got, said = paired_differences(group, group=gi, key=key, reference=reference, label=depth_label)
        rows_out += sorted(got, key=lambda r: _order(r["depth"]))
        notes += said
    return {"paired": rows_out, "paired_notes": notes}


def _resolved(rows: list[dict[str, Any]], members: range, group: int) -> list[dict[str, Any]]:
    """Pairs of combinations in one group whose intervals on an accuracy do not overlap."""
    out = []
    for m in RESOLVED_METRICS:
        stats = [r["metrics"][m] for r in rows]
        for a, b, better in resolved_pairs(stats, members, DEPTH_METRICS[m][1]):
            out.append({"metric": m, "group": group, "a": a, "b": b, "better": better})
    return out
