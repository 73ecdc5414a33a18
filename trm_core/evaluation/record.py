"""Evaluation results kept with the run: `run_dir/eval/<split>-step<step>.json`, one file per
(split, checkpoint step), written atomically, read back newest first.

A record (version 1):
    {"version": 1, "checkpoint": "best"|"latest"|"<step>", "step": int, "split": str, "data": str,
     "limit": int|None, "n": int, "accuracy": float, "accuracy_no_calculator": float|None,
     "seconds": float, "tokens_per_second": float, "settings": {...}, "created": ISO time,
     "samples": "eval/<split>-step<step>.jsonl" or None}
`accuracy` is scored with `settings["calculator"]`; `accuracy_no_calculator` is the score without
the calculator when it was measured (equal to `accuracy` when the calculator was off).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trm_core.atomic import write_text_atomic

__all__ = [
    "EVAL_DIR",
    "RECORD_VERSION",
    "latest_eval",
    "read_eval_records",
    "record_name",
    "write_eval_record",
]

EVAL_DIR = "eval"
RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20  # a record is a few hundred bytes; anything far larger is not ours
MAX_RECORDS = 1000  # bounded directory scan


def record_name(split: str, step: int) -> str:
    """`test-step600` — the stem shared by the record (.json) and its samples (.jsonl)."""
    return f"{split}-step{int(step)}"


def write_eval_record(run_dir: Path, record: dict) -> Path:
    """Write `record` atomically to run_dir/eval/<split>-step<step>.json and return the path."""
    if not isinstance(record.get("split"), str) or not isinstance(record.get("step"), int):
        raise ValueError("an eval record needs a str 'split' and an int 'step'")
    record = {"version": RECORD_VERSION, **record}
    folder = Path(run_dir) / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record_name(record['split'], record['step'])}.json"
    return write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _read_one(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = (
        isinstance(data, dict)
        and isinstance(data.get("version"), int)
        and isinstance(data.get("step"), int)
        and isinstance(data.get("split"), str)
        and isinstance(data.get("accuracy"), (int, float))
        and isinstance(data.get("created"), str)
    )
    return data if ok else None


def read_eval_records(run_dir: Path) -> list[dict]:
    """Every readable record of the run, newest first (by `created`); corrupt files are skipped."""
    folder = Path(run_dir) / EVAL_DIR
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError:
        return []
    records = [r for r in (_read_one(p) for p in paths[:MAX_RECORDS]) if r is not None]
    return sorted(records, key=lambda r: (r["created"], r["step"]), reverse=True)


def latest_eval(run_dir: Path) -> dict | None:
    """The newest record, or None when the run was never evaluated."""
    records = read_eval_records(run_dir)
    return records[0] if records else None
