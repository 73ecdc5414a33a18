"""Accuracy by difficulty: the number of reasoning steps a problem takes.

A synthetic problem knows its steps (`Example.steps`, in either answer format); a GSM8K-style
reference answer counts its written step lines (the lines before "#### N"), GSM8K's usual measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trm_core.data.sources import Example

__all__ = ["accuracy_by_steps", "example_steps", "parse_steps_range"]


def example_steps(ex: Example) -> int | None:
    """The problem's number of steps; None when the answer shows none (a bare "#### N")."""
    if ex.steps is not None:
        return ex.steps
    head = ex.answer.rsplit("####", 1)[0]
    n = sum(1 for line in head.split("\n") if line.strip())
    return n or None


def accuracy_by_steps(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """{"3": 0.41, "4": 0.22}: the share of correct samples per step count, in step order (samples
    need "steps" and "correct"; those without a step count are left out)."""
    per: dict[int, list[bool]] = {}
    for s in samples:
        if isinstance(s.get("steps"), int):
            per.setdefault(s["steps"], []).append(bool(s["correct"]))
    return {str(k): sum(v) / len(v) for k, v in sorted(per.items())}


def parse_steps_range(text: str, *, most: int) -> tuple[int, int]:
    """'3-4' -> (3, 4), '3' -> (3, 3); ValueError with one sentence otherwise."""
    parts = text.strip().split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        lo = hi = 0
    if not 1 <= lo <= hi <= most:
        raise ValueError(f"takes A-B with 1 <= A <= B <= {most} (e.g. 3-4), got {text!r}")
    return lo, hi
