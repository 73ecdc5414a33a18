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
import math
from pathlib import Path
from typing import Any

from trm_core.atomic import write_text_atomic
from trm_core.printable import printable
from trm_core.safe_read import FileProblem, read_bounded

__all__ = [
    "EVAL_DIR",
    "RECORD_VERSION",
    "latest_eval",
    "read_eval_records",
    "run_problems",
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


_BIG = 2**63


def _number(v: Any, lo: float, hi: float) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return (math.isfinite(v) if isinstance(v, float) else True) and lo <= v <= hi


def _scalar(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return True
    if isinstance(v, str):
        return len(v) <= 4096
    return _number(v, -_BIG, _BIG)


# field -> (check, what it must be): a record is data from outside (hand-edited, another version)
_FIELDS: dict[str, tuple[Any, str]] = {
    "version": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1000,
        "a version number",
    ),
    "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _BIG, "a step number"),
    "split": (lambda v: isinstance(v, str) and len(v) <= 64, "a split name"),
    "created": (lambda v: isinstance(v, str) and len(v) <= 64, "an ISO time"),
    "accuracy": (lambda v: _number(v, 0, 1), "a number in [0, 1]"),
}
_OPTIONAL: dict[str, tuple[Any, str]] = {
    "accuracy_no_calculator": (lambda v: v is None or _number(v, 0, 1), "a number in [0, 1] or null"),
    "accuracy_strict": (lambda v: _number(v, 0, 1), "a number in [0, 1]"),
    "accuracy_flexible": (lambda v: _number(v, 0, 1), "a number in [0, 1]"),
    "unscorable": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _BIG, "a count"),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _BIG, "a count"),
    "limit": (
        lambda v: v is None or isinstance(v, int) and not isinstance(v, bool) and 0 < v < _BIG,
        "a count",
    ),
    "seconds": (lambda v: _number(v, 0, _BIG), "a finite number of seconds"),
    "tokens_per_second": (lambda v: _number(v, 0, _BIG), "a finite rate"),
    "checkpoint": (lambda v: isinstance(v, str) and len(v) <= 64, "best, latest or a step"),
    "data": (lambda v: isinstance(v, str) and len(v) <= 4096, "a data source"),
    "samples": (lambda v: v is None or isinstance(v, str) and len(v) <= 4096, "a file name or null"),
    "settings": (
        lambda v: v is None or isinstance(v, dict) and all(_scalar(x) for x in v.values()),
        "a table of plain values",
    ),
}


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, int) or abs(v) < 10**20 else f"a {len(str(abs(v)))}-digit integer"
    return printable(text if len(text) <= 40 else text[:37] + "...")


def _read_one(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None), or (None, why) naming the field that is wrong."""
    try:
        data = json.loads(read_bounded(path, MAX_RECORD_BYTES).decode("utf-8"))
    except FileProblem as p:
        return None, p.phrase
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "not a JSON record"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    for key, (ok, what) in _FIELDS.items():
        if key not in data:
            return None, f"field '{key}' is missing"
        if not ok(data[key]):
            return None, f"field '{key}' is {_short(data[key])}, not {what}"
    for key, (ok, what) in _OPTIONAL.items():
        if key in data and not ok(data[key]):
            return None, f"field '{key}' is {_short(data[key])}, not {what}"
    return data, None


def read_eval_records(run_dir: Path, problems: list[str] | None = None) -> list[dict]:
    """Every valid record of the run, newest first (by `created`). A record that is not one (bad JSON,
    a field of the wrong type, NaN, out of range) is left out and, with `problems`, named there."""
    folder = Path(run_dir) / EVAL_DIR
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as e:
        if problems is not None:
            problems.append(f"{printable(str(folder))}: cannot be read ({e.strerror})")
        return []
    records = []
    for p in paths[:MAX_RECORDS]:
        record, why = _read_one(p)
        if record is not None:
            records.append(record)
        elif problems is not None:
            problems.append(f"{printable(str(p))}: {why}; record left out")
    return sorted(records, key=lambda r: (r["created"], r["step"]), reverse=True)


def latest_eval(run_dir: Path, problems: list[str] | None = None) -> dict | None:
    """The newest valid record, or None when the run was never evaluated (or none is valid)."""
    records = read_eval_records(run_dir, problems)
    return records[0] if records else None


def run_problems(run_dir: str | Path) -> list[str]:
    """What a reader of this run's records had to leave out, one sentence each: metrics.jsonl lines
    that are not events (bad JSON, a wrong type, NaN where a number must be finite, 10**400, a line
    over 1 MiB) and eval records that are not records (accuracy NaN or out of [0, 1], settings not a
    table, …). The readers skip these themselves; this names them so a report can say so."""
    from trm_core.events import read_events

    problems: list[str] = []
    read_events(Path(run_dir) / "metrics.jsonl", 0, problems)
    read_eval_records(Path(run_dir), problems)
    return problems
