"""Limits on what a profile may ask for (whether its model fits in memory: `model/memory.py`).

A profile can be valid TOML and still absurd: a batch of 10^9, a hidden size of 10^30, H_cycles of
10^9, `lr = nan`, a seed of 2^70. Those must be refused in one sentence *before* anything is
allocated or written, so every key gets a range its consumer accepts (`check_profile_limits`,
called by `parse_profile`), and `model.memory.check_fits` compares an estimate of parameter + optimizer +
activation memory with this machine's memory (RAM, or the GPU's when training there). The
estimate is arithmetic on the profile: nothing is built, not even on the meta device (a million
layers would take minutes to build as Python objects).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "MAX_SEED",
    "NAME_RULE",
    "check_profile_limits",
    "name_problem",
    "safe_name",
]

MAX_SEED = 2**63 - 1  # torch.manual_seed and random.seed both take 0..2**63-1

# Upper bounds (inclusive) of integer keys, each with why; lower bounds live in profile.py.
INT_MAX: dict[str, int] = {
    "model.hidden_size": 65_536,
    "model.num_heads": 1_024,
    "model.num_layers": 1_024,
    "model.H_cycles": 256,  # each step runs H_cycles * (L_cycles + 1) net calls
    "model.L_cycles": 256,
    "model.grad_cycles": 256,
    "data.max_length": 65_536,
    "data.val_size": 10_000_000,
    "data.bucket_multiple": 65_536,
    "data.synthetic_size": 10_000_000,  # drawn in memory before training (20,000 take ~1 s)
    "data.seed": MAX_SEED,
    "train.batch_size": 1_000_000,
    "train.epochs": 1_000_000,
    "train.max_steps": 10**12,
    "train.warmup_steps": 10**12,
    "train.supervision_steps": 256,
    "train.eval_every": 10**12,
    "train.eval_accuracy_problems": 100_000,  # each one is decoded at every evaluation
    "train.checkpoint_every": 10**12,
    "train.keep_last": 10_000,
    "train.log_every": 10**12,
    "train.max_bad_steps": 1_000_000,
    "train.depth_min": 256,  # sampled H-cycles, as model.H_cycles
    "train.depth_max": 256,
    "train.backprop_depth": 256,
    "train.seed": MAX_SEED,
    "early_stopping.patience": 1_000_000,
    "generate.top_k": 10_000_000,
    "generate.max_tokens": 1_000_000,  # the generator caps it by the context anyway
    "generate.seed": MAX_SEED,
}
# Float keys with an upper bound beyond "finite"; every float key must be finite (no NaN, no inf:
# none of them gives inf a meaning — 0 already means "off" for grad_clip and stop_below).
FLOAT_MAX: dict[str, float] = {
    "train.lr": 10.0,  # AdamW turns lr into a float32: above ~3e38 its step raises, far below it diverges
    "model.expansion": 64.0,
    "model.rope_theta": 1e12,
    "model.norm_eps": 1.0,
    "train.depth_mean": 256.0,  # as model.H_cycles
    "train.depth_sigma": 4.0,  # exp(4 sigma) spreads λ over ~7 orders of magnitude already
}

NAME_RULE = "1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with '.'"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a run directory, or None. The run directory is RUNS_DIR/<name>."""
    if _NAME.fullmatch(name):
        return None
    from trm_core.printable import printable

    return f"name must be {NAME_RULE}, got '{printable(name)[:80]}'"


def safe_name(stem: str) -> str:
    """A file stem made into a valid name ("my profile" -> "my-profile") for profiles without `name`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip(".")[:64]
    return name or "unnamed"


def check_profile_limits(flat: dict[str, Any], problems: list[str]) -> None:
    """Append a sentence for every key beyond its bound and every non-finite float."""
    for path, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path} must be a finite number, got {value!r}")
        elif isinstance(value, float) and path in FLOAT_MAX and value > FLOAT_MAX[path]:
            problems.append(f"{path} must be at most {FLOAT_MAX[path]:g}, got {value:g}")
        elif isinstance(value, int) and not isinstance(value, bool) and path in INT_MAX:
            if value > INT_MAX[path]:
                problems.append(f"{path} must be at most {INT_MAX[path]:,}, got {_short(value)}")


def _short(value: int) -> str:
    digits = len(str(abs(value)))
    return f"{value:,}" if digits <= 15 else f"a {digits}-digit number"
