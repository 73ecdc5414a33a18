"""Limits on what a profile may ask for, and whether its model fits this machine's memory.

A profile can be valid TOML and still absurd: a batch of 10^9, a hidden size of 10^30, H_cycles of
10^9, `lr = nan`, a seed of 2^70. Those must be refused in one sentence *before* anything is
allocated or written, so every key gets a range its consumer accepts (`check_profile_limits`,
called by `parse_profile`), and `check_fits` compares an estimate of parameter + optimizer +
activation memory with this machine's memory (RAM, or the GPU's when training there). The
estimate is arithmetic on the profile: nothing is built, not even on the meta device (a million
layers would take minutes to build as Python objects).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from trm_core.errors import UserError

__all__ = [
    "MAX_SEED",
    "NAME_RULE",
    "MemoryEstimate",
    "check_fits",
    "check_profile_limits",
    "estimate_memory",
    "machine_memory",
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
    "train.checkpoint_every": 10**12,
    "train.keep_last": 10_000,
    "train.log_every": 10**12,
    "train.max_bad_steps": 1_000_000,
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


# --------------------------------------------------------------------------- memory


VOCAB_GUESS = {"byte": 258, "gpt2": 50257}  # hf: tokenizers are guessed at GPT-2's size


class MemoryEstimate:
    """Bytes a profile needs: `params` (count), `total` (bytes) and what they are made of."""

    def __init__(self, params: int, weights: int, optimizer: int, activations: int):
        self.params, self.weights, self.optimizer, self.activations = params, weights, optimizer, activations
        self.total = weights + optimizer + activations

    def describe(self) -> str:
        return (
            f"{_gib(self.total)} ({self.params:,} parameters: {_gib(self.weights)} of weights"
            + (f", {_gib(self.optimizer)} of gradients and optimizer state" if self.optimizer else "")
            + f", {_gib(self.activations)} of activations)"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def estimate_memory(profile: Any, vocab_size: int | None = None, *, training: bool = True) -> MemoryEstimate:
    """A lower-bound estimate in fp32 of what training (or inference) `profile` needs.

    Weights (x2 with EMA), gradients and AdamW's two moments; activations kept for backward by
    every net call that builds a graph (per layer: attention and SwiGLU inputs and outputs);
    the chunked loss's logits. Inference: the weights, one batch row's activations and a KV cache
    for the generation context.
    """
    from trm_core.model.layers import swiglu_hidden_size

    m, d, t = profile.model, profile.data, profile.train
    V = vocab_size or VOCAB_GUESS.get(profile.tokenizer.name, 50257)
    D, L = m.hidden_size, m.num_layers
    inter = swiglu_hidden_size(D, m.expansion)
    per_layer = 4 * D * D + 3 * D * inter  # qkv + o, gate_up + down
    params = V * D * (1 if m.tie_embeddings else 2) + L * per_layer
    f32 = 4
    weights = params * f32
    T = -(-d.max_length // d.bucket_multiple) * d.bucket_multiple
    if not training:
        calls = m.H_cycles * (m.L_cycles + 1) if m.arch == "trm" else 1
        kv = 2 * D * L * calls * t.supervision_steps * T * f32  # one K/V slot per (step, call, layer)
        return MemoryEstimate(params, weights, 0, kv + T * (10 * D + 2 * inter) * f32)
    if t.ema:
        weights *= 2
    optimizer = 3 * params * f32  # gradients + AdamW exp_avg + exp_avg_sq
    if m.arch == "trm":
        graph_calls = m.grad_cycles * (m.L_cycles + 1)
        if t.supervision == "accumulate" and not t.detach_carry:
            graph_calls *= t.supervision_steps
    else:
        graph_calls = 1
    tokens = t.batch_size * T
    acts = graph_calls * L * tokens * (10 * D + 3 * inter) * f32
    acts += min(tokens, 1024) * V * f32 * 3  # one loss chunk's logits, softmax and gradient
    return MemoryEstimate(params, weights, optimizer, acts)


def machine_memory(device: Any = "cpu") -> tuple[int, str]:
    """(bytes, what) of memory on `device`: the GPU's total, else RAM (or a smaller cgroup limit)."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        index = getattr(device, "index", None) or 0
        return torch.cuda.get_device_properties(index).total_memory, "GPU memory"
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max", "rb") as f:
            limit = f.read(64).strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total, "memory"


def check_fits(
    profile: Any, device: Any = "cpu", *, vocab_size: int | None = None, training: bool = True
) -> None:
    """UserError (one sentence, with the estimate) when the profile cannot fit in `device`'s memory."""
    est = estimate_memory(profile, vocab_size, training=training)
    have, what = machine_memory(device)
    if est.total > have:
        verb = "training" if training else "loading"
        raise UserError(
            f"{verb} this profile needs at least {est.describe()}, more than this machine's "
            f"{_gib(have)} of {what}; make the model, batch_size or max_length smaller"
        )
