"""Compare runs: group them by the profile keys that differ (seeds pooled), and per group report
n, mean ± sample std and a t-based 95 % interval across seeds for each metric.

A difference between two groups is called *resolved* only when their 95 % intervals do not
overlap — a conservative rule (non-overlap of two 95 % intervals implies p < 0.05 and more), so a
table never claims what its seeds cannot show. One run per group has no interval and resolves
nothing.

The JSON (`compare --json`, read by the app and the tests):
    {"groups": [{"key": {"model.arch": "trm", …}, "n": 3, "runs": ["runs/s/…", …],
                 "metrics": {"best_val_loss": {"mean": …, "std": …, "ci95": [lo, hi], "values": […]}, …},
                 "unfinished": [runs whose training has not ended], "unevaluated": [runs without an eval record]}],
     "eval_mismatch": [{"settings": {differing eval keys}, "runs": [...]}, …] (empty when they agree),
     "metrics": {name: {"label": …, "better": "lower"|"higher"}}, "by": [...], "interval": "…",
     "resolved": [{"metric": …, "a": i, "b": j, "better": i|j}]}
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trm_core.errors import UserError

__all__ = [
    "METRICS",
    "RunSummary",
    "compare",
    "differing_keys",
    "eval_mismatch",
    "find_runs",
    "group_keys",
    "resolved_pairs",
    "summarize",
    "summarize_run",
    "t_critical",
]

# name -> (label, better)
METRICS: dict[str, tuple[str, str]] = {
    "best_val_loss": ("best val loss", "lower"),
    "exact_calculator": ("exact, calculator", "higher"),
    "exact_no_calculator": ("exact, none", "higher"),
    "wall_seconds": ("train wall s", "lower"),
    "tokens_per_second": ("train tok/s", "higher"),
    "params": ("params", "lower"),
    "flops_per_token": ("fwd FLOPs/token", "lower"),
}
FINISHED = {"finished", "early-stopped"}  # DoneEvent reasons of a run whose training is complete
# what makes two runs' accuracies comparable: the same problems, checkpoint choice and decoding
EVAL_KEYS = ("split", "data", "n", "checkpoint", "calculator", "calculator_mode", "max_tokens")
IGNORED_KEYS = {"name", "description", "train.seed"}  # seeds are what a group pools over
INTERVAL = "95% t-interval across seeds: mean ± t(0.975, n-1)·std/√n; resolved = intervals do not overlap"

# two-sided 95 % critical values of Student's t, df 1..30, then a few anchors
_T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip
_T975_LARGE = [(40, 2.021), (60, 2.000), (120, 1.980)]


def t_critical(df: int) -> float:
    """t(0.975, df): the two-sided 95 % critical value (table; conservative between anchors)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    for anchor, value in _T975_LARGE:
        if df <= anchor:
            return value  # the value at the next anchor below df would be smaller: this is conservative
    return 1.960


@dataclass
class RunSummary:
    path: Path
    config: dict[str, Any]  # the profile, flat
    metrics: dict[str, float | None]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    finished: bool = True  # training ended (its budget or early stopping) after its last start
    eval_settings: dict[str, Any] | None = None  # what the accuracies were measured on (EVAL_KEYS)
    readable: bool = True  # its metrics.jsonl could be read (False: permissions, not a file, …)

    @property
    def evaluated(self) -> bool:
        """An eval record is in the run directory."""
        return self.eval_settings is not None


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories in `paths`: each is a run, or a folder (a sweep) whose subfolders are runs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p} does not exist")
        if _is_run(p):
            out.append(p)
            continue
        subdirs = sorted(d for d in p.iterdir() if d.is_dir()) if p.is_dir() else []
        found = [d for d in subdirs if _is_run(d)]
        if not found:
            raise UserError(_no_runs_reason(p, subdirs))
        out += found
    return list(dict.fromkeys(out))


def _no_runs_reason(p: Path, subdirs: list[Path]) -> str:
    """Why `p` gave no run to compare, in one sentence: a sweep written but not trained yet (its
    `profiles/` folder, or run folders with a profile and no metrics) says so."""
    profiles = [f for d in (p, *subdirs) for f in sorted((d / "profiles").glob("*.toml"))]
    started = [d for d in (p, *subdirs) if (d / "profile.toml").is_file()]
    if profiles or started:
        n = len(profiles) or len(started)
        return f"{p} holds {n} run(s) of a sweep, none trained yet: nothing to compare"
    return f"{p} is neither a run directory nor a folder of runs"


def _is_run(p: Path) -> bool:
    return p.is_dir() and (p / "metrics.jsonl").is_file() and (p / "profile.toml").is_file()


def _forward_flops_per_token(profile: Any, vocab_size: int | None) -> float:
    """Matmul FLOPs of one forward pass per token (attention's length term left out), all supervision passes."""
    from trm_core.bench.common import layer_passes
    from trm_core.model.layers import swiglu_hidden_size

    m = profile.model
    d, inter = m.hidden_size, swiglu_hidden_size(m.hidden_size, m.expansion)
    passes, _ = layer_passes(m)
    per_pass = passes * (8 * d * d + 6 * d * inter) + 2 * d * (vocab_size or 0)
    return float(per_pass * profile.train.supervision_steps)


@functools.cache
def _vocab_size(name: str) -> int | None:
    """The tokenizer's vocabulary (the LM head's width); None when it cannot be built here (offline hub)."""
    from trm_core.data.tokenizers import build_tokenizer

    try:
        return int(build_tokenizer(name).vocab_size)
    except UserError:
        return None


def summarize_run(run_dir: str | Path) -> RunSummary:
    """The metrics of one run, from its metrics.jsonl, saved profile and eval record."""
    from trm_core.evaluation.record import latest_eval
    from trm_core.events import DoneEvent, EvalEvent, StartEvent, StepEvent, read_events
    from trm_core.runs.read import saved_profile

    run_dir = Path(run_dir)
    profile = saved_profile(run_dir)
    log, problems = run_dir / "metrics.jsonl", []
    events, _ = read_events(log, 0, problems)
    readable = not any(p.startswith(f"{log}: ") for p in problems)  # the file itself, not one bad line
    curve: dict[int, float] = {}
    params = wall = None
    speeds: list[float] = []
    finished = False
    for ev in events:
        if isinstance(ev, StartEvent):
            params = ev.params
            finished = False  # a resume: the run is unfinished until it says otherwise
        elif isinstance(ev, DoneEvent):
            finished = ev.reason in FINISHED
        elif isinstance(ev, StepEvent):
            wall = ev.elapsed_s
            if ev.tokens_per_s > 0:
                speeds.append(ev.tokens_per_s)
        elif isinstance(ev, EvalEvent) and math.isfinite(ev.val_loss):
            curve[ev.step] = ev.val_loss  # after a resume the re-run step's value replaces the old
    record = latest_eval(run_dir)
    calc = no_calc = None
    if record is not None:
        if (record.get("settings") or {}).get("calculator", True):
            calc = record["accuracy"]
        no_calc = record.get("accuracy_no_calculator")
    vocab = _vocab_size(profile.tokenizer.name)
    metrics: dict[str, float | None] = {
        "best_val_loss": min(curve.values()) if curve else None,
        "exact_calculator": calc,
        "exact_no_calculator": no_calc,
        "wall_seconds": wall,
        "tokens_per_second": statistics.median(speeds) if speeds else None,
        "params": float(params) if params is not None else None,
        "flops_per_token": _forward_flops_per_token(profile, vocab) if vocab else None,
    }
    settings = None
    if record is not None:  # the record's own fields (data, n, checkpoint) over the settings asked for
        given = {**(record.get("settings") or {}), **record}
        settings = {k: given.get(k) for k in EVAL_KEYS}
    return RunSummary(run_dir, profile.flat(), metrics, sorted(curve.items()), finished, settings, readable)


def differing_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Profile keys whose value is not the same in every run (seed, name and description aside)."""
    keys = sorted({k for r in runs for k in r.config} - IGNORED_KEYS)
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """mean, sample std, t-based 95 % interval (None where n is too small) and the values."""
    vals = [float(v) for v in values]
    n = len(vals)
    mean = statistics.fmean(vals) if vals else None
    std = statistics.stdev(vals) if n >= 2 else None
    ci = None
    if n >= 2 and mean is not None and std is not None:
        half = t_critical(n - 1) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    return {"mean": mean, "std": std, "ci95": ci, "values": vals}


def _disjoint(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["ci95"] is None or b["ci95"] is None:
        return False
    return a["ci95"][1] < b["ci95"][0] or b["ci95"][1] < a["ci95"][0]


def resolved_pairs(
    stats: Sequence[dict[str, Any]], indices: Sequence[int], better: str
) -> list[tuple[int, int, int]]:
    """(a, b, the better of the two) for every pair of `indices` whose `stats` (summarize()'s dicts)
    have disjoint 95 % intervals; `better` is "lower" or "higher"."""
    sign = -1 if better == "lower" else 1
    out = []
    for n, i in enumerate(indices):
        for j in indices[n + 1 :]:
            if _disjoint(stats[i], stats[j]):
                out.append((i, j, i if sign * (stats[i]["mean"] - stats[j]["mean"]) > 0 else j))
    return out


def group_keys(runs: Sequence[RunSummary], by: Sequence[str] | None) -> list[str]:
    """The profile keys runs are grouped by: `by` (each must be a key of these runs) or those that differ."""
    known = {k for r in runs for k in r.config}
    for k in by or []:
        if k not in known:
            raise UserError(f"--by {k!r} is not a profile key of these runs (dotted, e.g. 'model.arch')")
    return list(by) if by else differing_keys(runs)


def compare(
    runs: Sequence[RunSummary], by: Sequence[str] | None = None, metrics: Sequence[str] | None = None
) -> dict[str, Any]:
    """Group `runs` by `by` (default: the keys that differ) and summarize every metric per group."""
    metrics = list(metrics or METRICS)
    for m in metrics:
        if m not in METRICS:
            raise UserError(f"unknown metric {m!r}; known: {', '.join(METRICS)}")
    keys = group_keys(runs, by)
    groups: dict[str, dict[str, Any]] = {}
    for r in runs:
        key = {k: r.config.get(k) for k in keys}
        g = groups.setdefault(repr(sorted(key.items())), {"key": key, "runs": [], "_members": []})
        g["runs"].append(str(r.path))
        g["_members"].append(r)
    out_groups = []
    for g in groups.values():
        members = g.pop("_members")
        g["n"] = len(members)
        g["metrics"] = {
            m: summarize([r.metrics[m] for r in members if r.metrics.get(m) is not None]) for m in metrics
        }
        g["curve"] = _mean_curve([r.curve for r in members])
        g["unreadable"] = [str(r.path) for r in members if not r.readable]
        g["unfinished"] = [str(r.path) for r in members if not r.finished and r.readable]
        g["unevaluated"] = [str(r.path) for r in members if not r.evaluated]
        out_groups.append(g)
    resolved = []
    for m in metrics:
        stats = [g["metrics"][m] for g in out_groups]
        for a, b, better in resolved_pairs(stats, range(len(out_groups)), METRICS[m][1]):
            resolved.append({"metric": m, "a": a, "b": b, "better": better})
    return {
        "groups": out_groups,
        "eval_mismatch": eval_mismatch(runs),
        "by": keys,
        "metrics": {m: {"label": METRICS[m][0], "better": METRICS[m][1]} for m in metrics},
        "interval": INTERVAL,
        "resolved": resolved,
    }


def eval_mismatch(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """When the runs' accuracies were measured with different settings (another problem count,
    split, checkpoint, calculator or token budget): one entry per distinct setting, with only the
    keys that differ and the runs measured so; [] when they all agree."""
    measured = [r for r in runs if r.eval_settings is not None]
    differ = [k for k in EVAL_KEYS if len({repr(r.eval_settings.get(k)) for r in measured}) > 1]  # type: ignore[union-attr]
    if not differ:
        return []
    out: dict[str, dict[str, Any]] = {}
    for r in measured:
        key = {k: r.eval_settings.get(k) for k in differ}  # type: ignore[union-attr]
        out.setdefault(repr(key), {"settings": key, "runs": []})["runs"].append(str(r.path))
    return sorted(out.values(), key=lambda e: len(e["runs"]))


def _mean_curve(curves: Sequence[list[tuple[int, float]]]) -> list[list[float]]:
    """Mean validation loss per step over the runs that evaluated at that step."""
    by_step: dict[int, list[float]] = {}
    for c in curves:
        for step, loss in c:
            by_step.setdefault(step, []).append(loss)
    return [[step, statistics.fmean(v)] for step, v in sorted(by_step.items())]
