"""The latent start of a sequence under `model.init_state = "noise"` (Huginn): Gaussian noise per
sequence, seeded, that is the same at training, in the parallel forward and in KV-cached decoding.

The noise of position t is a pure function of (the sequence's seed, t, the stream, the channel): a
counter-based hash (no generator state), so it does not depend on the sequence length, on how many
positions are processed at once (prefill, one token, a left-padded batch: RoPE positions are used)
nor on the device. Uniforms from the hash, Box–Muller to a standard normal.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["position_noise"]

_M32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) of int64 values taken mod 2**32; int64 out."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def position_noise(seeds: Tensor, positions: Tensor, dim: int, stream: int) -> Tensor:
    """Standard-normal noise [B, T, dim] (fp32) for sequences `seeds` [B] (int64) at `positions`
    ([T] or [B, T]); `stream` (0 = z_H, 1 = z_L) gives independent noise for each latent."""
    device = positions.device
    seeds = seeds.to(device=device, dtype=torch.long)
    pos = positions.to(torch.long)
    if pos.dim() == 1:
        pos = pos[None, :]
    channel = torch.arange(dim, device=device, dtype=torch.long)
    row = _hash32(_hash32(seeds * 2 + stream) ^ (seeds >> 32))[:, None]  # [B, 1]
    at = _hash32(row + pos * 0x9E3779B9)[..., None]  # [B, T, 1]
    h1 = _hash32(at + channel * 0x85EBCA6B)  # [B, T, D]
    h2 = _hash32(h1 ^ 0x68E31DA4)
    u1 = (h1.double() + 0.5) / 2**32
    u2 = (h2.double() + 0.5) / 2**32
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).float()
