"""SDPA forward + backward on CPU in fp32 at the quickstart's shape (B32, 4 heads, T 192, head 32):
is_causal against the block-diagonal causal mask that packing two problems per row needs,
interleaved (docs/performance-cpu-step.md, "Packed batches").

usage: OMP_NUM_THREADS=1 python docs/perf/packed_mask_ab.py
"""

import statistics
import time

import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, H, T, D = 32, 4, 192, 32
q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
g = torch.randn(B, H, T, D)
doc = torch.zeros(B, T, dtype=torch.long)
doc[:, T // 2 :] = 1  # two problems per row
mask = ((doc[:, :, None] == doc[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril())[:, None]


def causal() -> None:
    F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)


def packed() -> None:
    F.scaled_dot_product_attention(q, k, v, attn_mask=mask).backward(g)


for f in (causal, packed, causal, packed):  # warm-up
    f()
ratios = []
for _ in range(15):
    t = time.perf_counter()
    causal()
    a = time.perf_counter() - t
    t = time.perf_counter()
    packed()
    ratios.append((time.perf_counter() - t) / a)
print(
    f"masked/causal time ratio median {statistics.median(ratios):.2f} (min {min(ratios):.2f} max {max(ratios):.2f})"
)
