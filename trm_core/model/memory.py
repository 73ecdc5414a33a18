"""Whether a profile's model fits this machine's memory, estimated before anything is allocated.

`check_fits` compares an estimate of parameter + optimizer + activation memory (or, for
inference, weights + KV cache) with this machine's memory (RAM or a cgroup limit, or the GPU's).
The estimate is arithmetic on the profile: nothing is built, not even on the meta device (a
million layers would take minutes to build as Python objects).
"""

from __future__ import annotations

import os
from typing import Any

from trm_core.errors import UserError
from trm_core.model.layers import swiglu_hidden_size

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
