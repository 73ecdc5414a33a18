"""One problem with its worked answer: what every data source yields and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    question: str
    answer: str  # GSM8K form: steps with <<a*b=c>> annotations, then "#### N"
    steps: int | None = field(default=None, compare=False)  # reasoning steps, where known (synthetic)
