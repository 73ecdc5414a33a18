"""A depth study on one checkpoint: evaluate it at several test-time depths and write the results
as `trm-tui eval --json` does (`{"results": [row, …]}`), where `trm-tui compare --depth NAME` and
the app's compare view find them (RUN/NAME). Shared by `trm-tui eval` (a row per depth
combination) and the app's Evaluation screen (its H-cycles and halt-threshold lists)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trm_core.errors import UserError

__all__ = ["DEPTH_FILE", "depth_row", "parse_list", "run_depth_study", "write_depth_json"]

DEPTH_FILE = "depth.json"  # the app's depth studies land in RUN/depth.json


def depth_row(gen: Any, results: Sequence[Any]) -> dict[str, Any]:
    """One depth combination's result as `eval --json` writes it (the gen's current depth)."""
    from trm_core.evaluation.depth import depth_report
    from trm_core.evaluation.difficulty import accuracy_by_steps

    result = results[0]
    report = depth_report(result.samples, gen.steps)
    mean_depth = report.mean_depth if report.mean_depth is not None else float(gen.steps)
    H, L = gen.cycles or (gen.model.cfg.H_cycles, gen.model.cfg.L_cycles)
    return {
        "supervision_steps": gen.steps,
        "H_cycles": H,
        "L_cycles": L,
        "halt_threshold": gen.halt_threshold if gen.act else None,
        "accuracy": result.accuracy,
        # measured with --both or --no-calculator, else null
        "accuracy_no_calculator": next((r.accuracy for r in results if not r.calculator), None),
        "by_steps": accuracy_by_steps(result.samples),  # {"3": 0.41, "4": 0.22}
        "mean_depth": mean_depth,
        "net_calls_per_token": mean_depth * gen.calls_per_step(),
        "seconds": sum(r.seconds for r in results),
    }


def write_depth_json(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from trm_core.atomic import write_text_atomic

    try:
        write_text_atomic(Path(path), json.dumps({"results": list(rows)}, indent=1) + "\n", fsync=False)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def parse_list(text: str, what: str, kind: type, low: float, high: float) -> list[Any]:
    """'1,2,4' -> [1, 2, 4] (duplicates dropped, order kept); '' -> []; one sentence otherwise."""
    try:
        values = [kind(v) for v in text.replace(" ", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} takes numbers separated by commas, got {text!r}") from None
    for v in values:
        if not low <= v <= high:
            raise UserError(f"{what} must be between {low:g} and {high:g}, got {v:g}")
    return list(dict.fromkeys(values))


def run_depth_study(
    gen: Any,
    settings: Any,
    H_cycles: Sequence[int],
    thresholds: Sequence[float],
    *,
    json_path: Path,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate `gen` (a Generator) with `settings` at every (H-cycles, halt threshold) combination
    (an empty list: the checkpoint's own value), samples beside the run's records, the rows written
    to `json_path` and returned. `progress(done, total, label)` after each problem batch."""
    from trm_core.evaluation.record import EVAL_DIR
    from trm_core.evaluation.run_eval import evaluate_generator, run_dir_of

    cfg = gen.model.cfg
    if H_cycles and cfg.arch != "trm":
        raise UserError("H-cycles apply to TRM checkpoints only")
    if thresholds and not gen.act:
        raise UserError("a halting threshold applies to ACT checkpoints only (model.halting = 'act')")
    combos = [(H, t) for H in (H_cycles or [None]) for t in (thresholds or [None])]
    base = run_dir_of(Path(gen.path)) / EVAL_DIR / f"{settings.split}-step{gen.step}"
    rows = []
    for i, (H, t) in enumerate(combos):
        gen.set_depth(cycles=None if H is None else (H, cfg.L_cycles), halt_threshold=t)
        label = f"H{gen.cycles[0] if gen.cycles else cfg.H_cycles}" + (f"-t{t:g}" if t is not None else "")

        def batch(done: int, total: int, ok: int, i: int = i, label: str = label) -> None:
            if progress is not None:
                progress(i * total + done, len(combos) * total, label)

        _, results = evaluate_generator(
            gen,
            settings,
            output=base.with_name(f"{base.name}-depth-{label}.jsonl"),
            progress=lambda calc, done, total, ok: batch(done, total, ok),
            record_run=False,
        )
        rows.append(depth_row(gen, results))
    write_depth_json(json_path, rows)
    return rows
