"""Sampling: a request's options, top-k / nucleus filtering of logits, and the next-token draw.

Greedy (temperature 0) is a plain argmax; otherwise the logits are tempered, filtered and drawn
from with the request's own `torch.Generator`, so a seed reproduces a continuation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["SamplingOptions", "filter_logits", "sample_next", "resolve_seed"]


def resolve_seed(seed: int | None) -> int:
    """`seed` itself, or for None / a negative seed a fresh one (shown, so it can be reproduced)."""
    return int(seed) if seed is not None and seed >= 0 else secrets.randbelow(2**31)


@dataclass
class SamplingOptions:
    """One request's settings. `Generator.defaults` holds the profile's `[generate]` values."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    calculator: bool = False
    calculator_mode: str = "verify"  # "verify": the model writes results, wrong ones are corrected; "write"
    kv_cache: bool = True
    stop: tuple[str, ...] = ()

    @classmethod
    def from_profile(cls, gen: Any) -> SamplingOptions:
        return cls(
            temperature=gen.temperature,
            top_k=gen.top_k,
            top_p=gen.top_p,
            max_tokens=gen.max_tokens,
            seed=gen.seed,
            calculator=gen.calculator,
            kv_cache=gen.kv_cache,
        )


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits [..., V] with everything outside the top-k, then outside the nucleus, set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability reaches `top_p`
    (the most likely token is always kept).
    """
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of strictly better tokens
        drop_sorted = mass_before >= top_p  # already reached top_p without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Next ids [B] from logits [B, V]: argmax at temperature 0, else a filtered, tempered draw."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
