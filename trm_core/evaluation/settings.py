"""The settings of one evaluation: one frozen value with its record form (what a run's eval record
stores) and its argv form (the `trm-tui eval` flags a sweep's child process runs with), both
derived here so they cannot drift from each other or from the flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trm_core.errors import UserError

__all__ = ["CALCULATOR_MODES", "EvalSettings", "MAX_EVAL_STEPS"]

CALCULATOR_MODES = ("verify", "write")
MAX_EVAL_STEPS = 8  # `--synthetic-steps`: harder than any training range, still below the value cap


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation runs with; None = the checkpoint's profile decides (or: by device)."""

    which: str = "best"  # the checkpoint: "best", "latest" or a step
    data: str | None = None  # a data source; None = the profile's data.source
    split: str = "test"  # "test", "train" or "val" (the run's validation slice)
    limit: int | None = None  # the first N problems
    calculator: bool | None = None  # the calculator for `accuracy`; None = the profile's
    both: bool = False  # also score the other way (accuracy_no_calculator)
    max_tokens: int | None = None  # None = the profile's generate.max_tokens
    batch_size: int | None = None  # rows in lockstep; None = by device
    calculator_mode: str = "verify"  # "verify": the model's right results kept as written; "write"
    synthetic_steps: tuple[int, int] | None = None  # held-out synthetic problems of A..B steps

    def __post_init__(self) -> None:
        object.__setattr__(self, "which", str(self.which))
        if self.limit is not None and self.limit < 1:
            raise UserError(f"the evaluation limit must be at least 1, got {self.limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"the evaluation batch size must be at least 1, got {self.batch_size}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"the evaluation's max tokens must be at least 1, got {self.max_tokens}")
        if self.calculator_mode not in CALCULATOR_MODES:
            raise UserError(f"the calculator mode must be 'verify' or 'write', got {self.calculator_mode!r}")
        if self.synthetic_steps is None:
            return
        lo, hi = (int(v) for v in self.synthetic_steps)
        object.__setattr__(self, "synthetic_steps", (lo, hi))
        if self.split != "test":
            raise UserError(
                f"synthetic problems of chosen steps are held out: use split 'test', not {self.split!r}"
            )
        if self.data not in (None, "synthetic"):
            raise UserError(
                f"synthetic steps draw synthetic problems; they cannot be scored on data {self.data!r}"
            )
        if not 1 <= lo <= hi <= MAX_EVAL_STEPS:
            raise UserError(
                f"synthetic steps must be A-B with 1 <= A <= B <= {MAX_EVAL_STEPS}, got {lo}-{hi}"
            )

    @classmethod
    def make(cls, **kw: Any) -> EvalSettings:
        """The same as `EvalSettings(**kw)` (kept for the callers that build settings by keyword)."""
        return cls(**kw)

    def record(self, *, calculator: bool, max_tokens: int) -> dict[str, Any]:
        """The record's "settings" (JSON-ready): every field, with the calculator and token budget
        actually used; `synthetic_steps` only when set (records before it had no such key)."""
        out = dataclasses.asdict(self)
        out.update(calculator=calculator, max_tokens=max_tokens)
        if self.synthetic_steps is None:
            del out["synthetic_steps"]
        else:
            out["synthetic_steps"] = list(self.synthetic_steps)
        return out

    def argv(self) -> list[str]:
        """The `trm-tui eval RUN` flags that evaluate with these settings."""
        out = ["--which", self.which, "--split", self.split]
        if self.data is not None:
            out += ["--data", self.data]
        if self.limit is not None:
            out += ["--limit", str(self.limit)]
        if self.calculator is not None:
            out.append("--calculator" if self.calculator else "--no-calculator")
        if self.both:
            out.append("--both")
        if self.max_tokens is not None:
            out += ["--max-tokens", str(self.max_tokens)]
        if self.batch_size is not None:
            out += ["--batch-size", str(self.batch_size)]
        if self.calculator_mode != "verify":
            out += ["--calculator-mode", self.calculator_mode]
        if self.synthetic_steps is not None:
            out += ["--synthetic-steps", f"{self.synthetic_steps[0]}-{self.synthetic_steps[1]}"]
        return out
