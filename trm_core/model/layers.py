"""The building blocks of the shared net: RoPE, causal attention with an optional KV slot, SwiGLU.

Blocks are post-norm like the official TRM (`x = rms_norm(x + attn(x)); x = rms_norm(x + mlp(x))`,
RMSNorm without a weight), so every net call returns a unit-RMS state however deep the recursion.
Nothing here knows about cycles or supervision steps; `lm.py` composes these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["trunc_normal_", "rms_norm", "Rotary", "Attention", "SwiGLU", "Block", "Net", "swiglu_hidden_size"]

RoPE = tuple[Tensor, Tensor]  # (cos, signed sin), each [B or 1, 1, T, head_dim]
KVSlot = tuple[Tensor, Tensor]  # (k, v) views of the cache, each [B, num_heads, max_len, head_dim]


def trunc_normal_(tensor: Tensor, std: float = 1.0, bound: float = 2.0) -> Tensor:
    """Normal truncated at +-bound standard deviations, rescaled so the result really has `std`.

    (`nn.init.trunc_normal_` truncates without rescaling, which shrinks the std; the official TRM
    uses the JAX/flax convention implemented here.)
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        # variance of a unit normal truncated to [-bound, bound]
        mass = math.erf(bound / math.sqrt(2))
        pdf = math.exp(-0.5 * bound**2) / math.sqrt(2 * math.pi)
        truncated_var = 1 - 2 * bound * pdf / mass
        scale = std / math.sqrt(truncated_var)
        # inverse-CDF sampling restricted to the truncated range
        tensor.uniform_(-mass, mass).erfinv_().mul_(math.sqrt(2) * scale)
        return tensor.clamp_(-bound * scale, bound * scale)


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """Weightless RMSNorm, computed in fp32 and cast back (as the official TRM does)."""
    return F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def swiglu_hidden_size(hidden_size: int, expansion: float) -> int:
    """round(expansion * hidden * 2/3), rounded up to a multiple of 64 (of 8 for tiny models)."""
    multiple = 64 if hidden_size >= 128 else 8
    inter = round(expansion * hidden_size * 2 / 3)
    return max(multiple, -(-inter // multiple) * multiple)


class Rotary(nn.Module):
    """RoPE for arbitrary positions, computed on the fly: no table, so no maximum length."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta

    def forward(self, positions: Tensor) -> RoPE:
        """positions [T] or [B, T] (long) -> (cos, signed sin), each [B or 1, 1, T, head_dim], fp32.

        The sine's first half is negated so that `apply_rope` needs one `roll` instead of
        chunk + neg + cat for the rotate-half (the products are the same numbers, bit for bit).
        """
        # inv_freq is rebuilt each call (head_dim/2 numbers) so that casting the model to bf16
        # can never degrade it; positions * inv_freq stays in fp32.
        exponent = torch.arange(0, self.head_dim, 2, device=positions.device, dtype=torch.float32)
        inv_freq = 1.0 / (self.theta ** (exponent / self.head_dim))
        freqs = positions.float().unsqueeze(-1) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        if emb.dim() == 2:
            emb = emb.unsqueeze(0)
        emb = emb.unsqueeze(1)
        sin = emb.sin()
        half = self.head_dim // 2
        return emb.cos(), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: Tensor, rope: RoPE) -> Tensor:
    """x [..., B, H, T, hd] rotated by (cos, signed sin); rotate-half convention, in fp32.

    rotate_half(x) * sin == roll(x, hd/2) * [-sin, sin]: 4 ops instead of 7, which matters in the
    launch-bound one-token decode step.
    """
    cos, signed_sin = rope
    x32 = x.float()
    return (x32 * cos + x32.roll(x.shape[-1] // 2, dims=-1) * signed_sin).to(x.dtype)


def cpu_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    fp32: bool = False,
    is_causal: bool = False,
    attn_mask: Tensor | None = None,
) -> Tensor:
    """Parallel attention on CPU. `fp32` (decided by the caller, `CausalLM.attention_fp32`: under
    bf16 autocast where fp32 measured faster for this head size on this CPU) runs it in fp32; the
    output is then fp32 and the next projection casts it back.

    Traced into the compiled net (`CausalLM.compile_net`): there q, k, v are made contiguous first.
    With a permuted view as input and dynamic lengths, inductor in torch 2.13 records the stride
    of SDPA's saved output with the first length's value and asserts in backward at the next
    length (docs/performance.md, "Dynamic lengths and the inductor bug"); contiguous inputs (and
    the fp32 copies) do not trip it, and the copy is fused into the RoPE kernel."""
    if torch.compiler.is_compiling():
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if fp32 and q.dtype != torch.float32:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, is_causal=is_causal
            )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)


class Attention(nn.Module):
    """Multi-head causal self-attention.

    Parallel (no `kv`): SDPA with is_causal=True, or under `mask` when one is given. Cached (`kv` given): the new keys/values are
    written into the slot at `index` and the queries attend over the slot under `mask`.
    `index` is a Python int (eager: write at [index:index+T], attend over [:index+T]) or a
    LongTensor of T write positions (CUDA-graph path: attend over the full slot, `mask` decides).
    """

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self,
        x: Tensor,
        rope: RoPE,
        kv: KVSlot | None = None,
        index: int | Tensor | None = None,
        mask: Tensor | None = None,
        attn_fp32: bool = False,
    ) -> Tensor:
        B, T, D = x.shape
        qkv = self.qkv_proj(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], rope).unbind(0)  # q and k rotated in one go
        v = qkv[2]
        if kv is None:
            # ACT (`mask` given): causal and restricted to the keys still running (the mask says both)
            if x.device.type == "cpu":
                y = cpu_sdpa(q, k, v, fp32=attn_fp32, is_causal=mask is None, attn_mask=mask)
            else:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=mask is None, attn_mask=mask)
        else:
            k_cache, v_cache = kv
            if isinstance(index, int):
                k_cache.narrow(2, index, T).copy_(k)
                v_cache.narrow(2, index, T).copy_(v)
                k, v = k_cache.narrow(2, 0, index + T), v_cache.narrow(2, 0, index + T)
            else:
                assert index is not None
                k_cache.index_copy_(2, index, k.to(k_cache.dtype))
                v_cache.index_copy_(2, index, v.to(v_cache.dtype))
                k, v = k_cache, v_cache
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inter = swiglu_hidden_size(hidden_size, expansion)
        self.gate_up_proj = nn.Linear(hidden_size, 2 * inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: attention then SwiGLU, each followed by a weightless RMSNorm."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, norm_eps: float):
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion)
        self.norm_eps = norm_eps

    def forward(
        self,
        x: Tensor,
        rope: RoPE,
        kv: KVSlot | None = None,
        index: int | Tensor | None = None,
        mask: Tensor | None = None,
        attn_fp32: bool = False,
    ) -> Tensor:
        x = rms_norm(x + self.self_attn(x, rope, kv, index, mask, attn_fp32), self.norm_eps)
        return rms_norm(x + self.mlp(x), self.norm_eps)


class Net(nn.Module):
    """A stack of blocks: TRM's one shared net (called many times), or the baseline's whole stack."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, expansion: float, norm_eps: float):
        super().__init__()
        self.layers = nn.ModuleList(
            Block(hidden_size, num_heads, expansion, norm_eps) for _ in range(num_layers)
        )

    def forward(
        self,
        x: Tensor,
        rope: RoPE,
        kv: list[KVSlot] | None = None,
        index: int | Tensor | None = None,
        mask: Tensor | None = None,
        attn_fp32: bool = False,
    ) -> Tensor:
        """`attn_fp32`: parallel attention on CPU in fp32 (see `cpu_sdpa`); ignored elsewhere."""
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, None if kv is None else kv[i], index, mask, attn_fp32)
        return x
