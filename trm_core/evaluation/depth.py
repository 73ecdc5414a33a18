"""Where a model thinks longer: the depth of generated tokens by region, and accuracy by depth.

Every model token of a generated answer comes with its depth (supervision steps the model ran
before emitting it; calculator tokens have none). A token is "calc" inside `<<…>>` (from the
`<<` to the `>>`), "answer" when it is a digit after `####`, and "other" elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REGIONS", "DepthReport", "token_regions", "depth_report"]

REGIONS = ("calc", "answer", "other")
_CALC = re.compile(r"<<.*?(?:>>|$)", re.S)


def token_regions(text: str, offsets: Sequence[int]) -> list[str]:
    """The region of the token starting at each character offset of `text`."""
    spans = [(m.start(), m.end()) for m in _CALC.finditer(text)]
    marker = text.find("####")
    out = []
    for off in offsets:
        if any(a <= off < b for a, b in spans):
            out.append("calc")
        elif marker >= 0 and off >= marker + 4 and text[off : off + 1].isdigit():
            out.append("answer")
        else:
            out.append("other")
    return out


@dataclass
class DepthReport:
    mean_depth: float | None  # over every model token of every answer
    region_depth: dict[str, float | None] = field(default_factory=dict)  # mean depth per region
    region_tokens: dict[str, int] = field(default_factory=dict)
    buckets: list[dict[str, Any]] = field(default_factory=list)  # {depth, problems, accuracy}


def depth_report(samples: Sequence[dict[str, Any]], steps: int) -> DepthReport:
    """Mean depths by region, and the accuracy of problems bucketed by their answer's mean depth
    (rounded to the nearest whole step, 1..steps). Samples need "generated", "correct" and
    "token_depths" ([(offset, depth), …])."""
    sums = dict.fromkeys(REGIONS, 0)
    counts = dict.fromkeys(REGIONS, 0)
    per_bucket: dict[int, list[bool]] = {}
    total = n = 0
    for s in samples:
        pairs = s.get("token_depths") or []
        if not pairs:
            continue
        offsets = [o for o, _ in pairs]
        depths = [d for _, d in pairs]
        for region, d in zip(token_regions(s["generated"], offsets), depths, strict=True):
            sums[region] += d
            counts[region] += 1
        total += sum(depths)
        n += len(depths)
        bucket = min(steps, max(1, round(sum(depths) / len(depths))))
        per_bucket.setdefault(bucket, []).append(bool(s["correct"]))
    buckets = [
        {"depth": b, "problems": len(v), "accuracy": sum(v) / len(v)} for b, v in sorted(per_bucket.items())
    ]
    return DepthReport(
        mean_depth=total / n if n else None,
        region_depth={r: (sums[r] / counts[r] if counts[r] else None) for r in REGIONS},
        region_tokens=counts,
        buckets=buckets,
    )
