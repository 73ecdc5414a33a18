"""A depth study on one checkpoint: evaluate it at several test-time depths and write the results
as `trm-tui eval --json` does (`{"results": [row, …]}`), where `trm-tui compare --depth NAME` and
the app's compare view find them (RUN/NAME). Shared by `trm-tui eval` (a row per depth
combination), the app's Evaluation screen (its H-cycles and halt-threshold lists) and a sweep's
`[[eval.depth]]` tables (`DepthStudy`: run after each run's own evaluation)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trm_core.errors import UserError

__all__ = [
    "DEPTH_FILE",
    "DepthStudy",
    "depth_row",
    "parse_depth_studies",
    "parse_list",
    "run_depth_study",
    "write_depth_json",
]

DEPTH_FILE = "depth.json"  # the app's depth studies land in RUN/depth.json


def depth_row(gen: Any, results: Sequence[Any]) -> dict[str, Any]:
    """One depth combination's result as `eval --json` writes it (the gen's current depth)."""
    from trm_core.evaluation.depth import depth_report
    from trm_core.evaluation.difficulty import accuracy_by_steps

    result = results[0]
    report = depth_report(result.samples, gen.steps)
    mean_depth = report.mean_depth if report.mean_depth is not None else float(gen.steps)
    H, L = gen.depth.cycles
    return {
        "supervision_steps": gen.steps,
        "H_cycles": H,
        "L_cycles": L,
        "halt_threshold": gen.depth.halt_threshold if gen.act else None,
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
    from trm_core.model.depth import Depth

    cfg = gen.model.cfg
    if H_cycles and cfg.arch != "trm":
        raise UserError("H-cycles apply to TRM checkpoints only")
    if thresholds and not gen.act:
        raise UserError("a halting threshold applies to ACT checkpoints only (model.halting = 'act')")
    combos = [(H, t) for H in (H_cycles or [None]) for t in (thresholds or [None])]
    base = run_dir_of(Path(gen.path)) / EVAL_DIR / f"{settings.split}-step{gen.step}"
    rows = []
    for i, (H, t) in enumerate(combos):
        depth = gen.set_depth(Depth(H_cycles=H, halt_threshold=t))
        label = f"H{depth.H_cycles}" + (f"-t{t:g}" if t is not None else "")

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


@dataclass(frozen=True)
class DepthStudy:
    """One `[[eval.depth]]` table of a sweep: after the run's own evaluation, evaluate it at every
    H-cycles (× halting threshold) on `synthetic_steps` problems and write RUN/`name`."""

    name: str  # the eval --json file inside each run, e.g. "depth-hard.json"
    H_cycles: tuple[int, ...] = ()
    thresholds: tuple[float, ...] = ()
    synthetic_steps: tuple[int, int] | None = None
    limit: int | None = None  # None: the [eval] table's limit

    def settings(self, base: Any) -> Any:
        """The run's [eval] settings for this study: its problems and limit, the calculator as asked."""
        import dataclasses

        limit = self.limit or base.limit
        return dataclasses.replace(base, both=False, synthetic_steps=self.synthetic_steps, limit=limit)

    def argv(self, base: Any, run_dir: Path) -> list[str]:
        """`trm-tui eval RUN` flags that run this study (a sweep's child process)."""
        out = self.settings(base).argv()
        if self.H_cycles:
            out += ["--H-cycles", ",".join(map(str, self.H_cycles))]
        if self.thresholds:
            out += ["--halt-threshold", ",".join(f"{t:g}" for t in self.thresholds)]
        return [*out, "--json", str(Path(run_dir) / self.name)]

    def run(self, run_dir: Path, base: Any, *, device: str = "auto") -> list[dict[str, Any]]:
        from trm_core.generation.generator import Generator

        settings = self.settings(base)
        gen = Generator.from_checkpoint(run_dir, settings.which, device=device)
        return run_depth_study(
            gen, settings, self.H_cycles, self.thresholds, json_path=Path(run_dir) / self.name
        )


def parse_depth_studies(raw: Any, problems: list[str]) -> list[DepthStudy]:
    """The `[[eval.depth]]` tables of a sweep file; each problem one sentence in `problems`."""
    from trm_core.evaluation.difficulty import parse_steps_range
    from trm_core.evaluation.settings import MAX_EVAL_STEPS

    known = ("name", "H_cycles", "halt_threshold", "synthetic_steps", "limit")
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append("eval.depth must be an array of tables: [[eval.depth]] with name and H_cycles")
        return []
    out = []
    for i, t in enumerate(raw, 1):
        where = f"[[eval.depth]] {i}"
        bad = [k for k in t if k not in known]
        if bad:
            problems.append(f"{where}: unknown key {bad[0]!r}; known: {', '.join(known)}")
            continue
        name = t.get("name")
        if not isinstance(name, str) or not name.endswith(".json") or "/" in name or name.startswith("."):
            problems.append(f"{where}: name must be a file name ending in .json, got {name!r}")
            continue
        H = t.get("H_cycles", [])
        thr = t.get("halt_threshold", [])
        if not isinstance(H, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in H
        ):
            problems.append(f"{where}: H_cycles must be a list of whole numbers ≥ 1, got {H!r}")
            continue
        if not isinstance(thr, list) or not all(isinstance(v, int | float) and 0 <= v <= 1 for v in thr):
            problems.append(f"{where}: halt_threshold must be a list of numbers in [0, 1], got {thr!r}")
            continue
        if not H and not thr:
            problems.append(f"{where}: give H_cycles and/or halt_threshold to study")
            continue
        steps = None
        if "synthetic_steps" in t:
            try:
                steps = parse_steps_range(str(t["synthetic_steps"]), most=MAX_EVAL_STEPS)
            except ValueError as e:
                problems.append(f"{where}: synthetic_steps {e}")
                continue
        limit = t.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            problems.append(f"{where}: limit must be an integer of at least 1, got {limit!r}")
            continue
        out.append(DepthStudy(name, tuple(H), tuple(float(v) for v in thr), steps, limit))
    return out
