"""Paired depth comparisons: `trm-tui compare PATH… --depth NAME --paired`.

Seed-to-seed spread is what makes pooled intervals wide (one seed learns, another does not); a
paired comparison cancels it. For every run (one seed of a recipe) and test-depth combination r,
d = accuracy(r) − accuracy(reference), where the reference is the depth the run was trained at
(its profile's supervision steps, H- and L-cycles and, with ACT, halting threshold) or the
combination named by `reference`. Per (recipe group, r): n pairs, the mean difference, its sample
std and the t-based 95 % interval of the mean difference; *resolved* when the interval excludes 0.
The same per difficulty (`by_steps` of the eval file: the accuracy on problems of k steps).

Each pair is one seed's own model at two depths, matched by `train.seed` within the recipe group;
two runs of one group with the same seed cannot be paired and are a UserError (group them apart
with `--by`). A run without the reference or without r is left out of that pair and said in
`notes`.

The JSON (`"paired"` in `compare --depth NAME --paired --json`):
    [{"group": 0, "key": {…}, "reference": "S1-H1-L2", "label": "S1-H4-L2", "depth": {…},
      "seeds": [0, 1, 2], "diff": summarize(d), "by_steps": {"3": summarize(d on 3-step problems)},
      "resolved": "higher"|"lower"|None}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trm_core.errors import UserError
from trm_core.experiments.compare import summarize
from trm_core.experiments.report import group_label

__all__ = ["PAIRED_METRIC", "paired_differences", "trained_depth"]

PAIRED_METRIC = "accuracy"  # the score with the eval's calculator setting


def trained_depth(config: dict[str, Any]) -> dict[str, Any]:
    """The depth combination a run was trained at, as `trm-tui eval` names it with no depth flags."""
    act = config.get("model.halting") == "act"
    steps = config.get("train.supervision_steps", 1) if config.get("model.arch", "trm") == "trm" else 1
    return {
        "supervision_steps": steps,
        "H_cycles": config.get("model.H_cycles"),
        "L_cycles": config.get("model.L_cycles"),
        "halt_threshold": config.get("generate.halt_threshold") if act else None,
    }


def _resolved(s: dict[str, Any]) -> str | None:
    """ "higher" when the whole interval of the mean difference is above 0, "lower" below, else None."""
    if s["ci95"] is None:
        return None
    lo, hi = s["ci95"]
    return "higher" if lo > 0 else "lower" if hi < 0 else None


def paired_differences(
    members: Sequence[tuple[dict[str, Any], dict[tuple[Any, ...], dict[str, Any]]]],
    *,
    group: int,
    key: dict[str, Any],
    reference: dict[str, Any] | None,
    label: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The paired rows of one recipe group and notes on what could not be paired.

    `members`: per run, (its flat profile, {depth combination tuple: its eval row}); `reference`
    None = each run's trained depth; `label(depth)` names a combination."""
    seeds: dict[Any, int] = {}
    for config, _ in members:
        seed = config.get("train.seed")
        if seed in seeds:
            raise UserError(
                f"group {group_label(key)} has two runs with train.seed {seed}, so its seeds do not pair up; "
                "group them apart with --by"
            )
        seeds[seed] = 1
    refs = []
    for config, _ in members:
        ref = reference or trained_depth(config)
        refs.append(
            tuple(ref.get(k) for k in ("supervision_steps", "H_cycles", "L_cycles", "halt_threshold"))
        )
    if len(set(refs)) > 1:
        raise UserError(
            f"the runs of group {group_label(key)} were trained at different depths, so they share no "
            "reference; name one with --reference (e.g. S1-H1-L2)"
        )
    ref = refs[0]
    ref_label = label(
        dict(zip(("supervision_steps", "H_cycles", "L_cycles", "halt_threshold"), ref, strict=True))
    )
    missing_ref = sorted((c.get("train.seed") for c, rows in members if ref not in rows), key=repr)
    notes = []
    if missing_ref:
        notes.append(
            f"{group_label(key)}: seed{'s' * (len(missing_ref) > 1)} {', '.join(map(str, missing_ref))} "
            f"not evaluated at the reference {ref_label}, left out of every pair."
        )
    combos: dict[tuple[Any, ...], dict[str, Any]] = {}
    for config, rows in members:
        if ref not in rows:
            continue
        base = rows[ref]
        for combo, row in rows.items():
            if combo == ref:
                continue
            c = combos.setdefault(combo, {"row": row, "seeds": [], "d": [], "steps": {}})
            c["seeds"].append(config.get("train.seed"))
            c["d"].append(row[PAIRED_METRIC] - base[PAIRED_METRIC])
            for k, v in (row.get("by_steps") or {}).items():
                b = (base.get("by_steps") or {}).get(k)
                if b is not None:
                    c["steps"].setdefault(k, []).append(v - b)
    out = []
    paired_seeds = sorted((c.get("train.seed") for c, rows in members if ref in rows), key=repr)
    for combo, c in combos.items():
        depth = dict(zip(("supervision_steps", "H_cycles", "L_cycles", "halt_threshold"), combo, strict=True))
        lacking = [s for s in paired_seeds if s not in c["seeds"]]
        if lacking:
            notes.append(
                f"{group_label(key)} · {label(depth)}: seed{'s' * (len(lacking) > 1)} "
                f"{', '.join(map(str, lacking))} not evaluated there, left out of the pair."
            )
        diff = summarize(c["d"])
        by_steps = {k: summarize(v) for k, v in sorted(c["steps"].items(), key=lambda kv: int(kv[0]))}
        out.append(
            {
                "group": group,
                "key": key,
                "reference": ref_label,
                "label": label(depth),
                "depth": depth,
                "seeds": c["seeds"],
                "diff": diff,
                "resolved": _resolved(diff),
                "by_steps": by_steps,
                "by_steps_resolved": {k: _resolved(s) for k, s in by_steps.items()},
            }
        )
    return out, notes
