"""Evaluation records: one JSON file per evaluation in a run's `eval/` folder.

A record says what was evaluated (checkpoint, step, split, data, limit), with which settings, and
what came out (accuracy with and without the calculator, time, tokens/s); its samples, when kept,
sit beside it as JSONL. The Runs tab and comparisons read them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trm_core.runs.atomic import write_text_atomic

__all__ = ["EVAL_DIR", "write_eval_record", "read_eval_records", "latest_eval"]

EVAL_DIR = "eval"
MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; anything this big is not one


def write_eval_record(run_dir: Path, record: dict) -> Path:
    """Write `record` atomically to run_dir/eval/<split>-step<step>.json and return its path."""
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['split']}-step{int(record['step'])}.json"
    return write_text_atomic(path, json.dumps(record, indent=1) + "\n", fsync=False)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("accuracy"), int | float):
        return None
    return record


def read_eval_records(run_dir: Path) -> list[dict]:
    """Every readable record of the run, newest first (by their `created` time); corrupt ones skipped."""
    folder = Path(run_dir) / EVAL_DIR
    try:
        paths = [p for p in folder.iterdir() if p.suffix == ".json" and p.is_file()]
    except OSError:
        return []
    records = [r for r in (_read(p) for p in paths) if r is not None]
    return sorted(records, key=lambda r: str(r.get("created", "")), reverse=True)


def latest_eval(run_dir: Path) -> dict | None:
    """The newest record, or None when the run was never evaluated."""
    records = read_eval_records(run_dir)
    return records[0] if records else None
