"""Interleaved A/B: the quickstart's first 24 training batches (bucket_multiple 8) against the same
batches padded to a multiple of 32 (the old bucket), bf16 step, same weights; prints ms/step and
the 32/8 time ratio (docs/performance-cpu-step.md, "Packed batches").

usage: PYTHONPATH=. R=4 python docs/perf/bucket_ab.py
"""

import os
import statistics
import time

import torch
import torch.nn.functional as F

from trm_core.data.batches import Batch
from trm_core.profile import load_profile
from trm_core.training.setup import build_train_setup
from trm_core.training.state import Position

THREADS = int(os.environ.get("THREADS", "2"))
p = load_profile("profiles/quickstart.toml")
s = build_train_setup(p, torch.device("cpu"), rank=0, world_size=1, max_steps=None)
torch.set_num_threads(THREADS)
b8 = [b for _, (_, _, b) in zip(range(24), s.data.walk(Position()), strict=False)]


def pad32(b: Batch) -> Batch:
    extra = -(-b.input_ids.shape[1] // 32) * 32 - b.input_ids.shape[1]
    ids = F.pad(b.input_ids, (0, extra), value=s.tokenizer.pad_id)
    return Batch(ids, F.pad(b.labels, (0, extra), value=-100), b.num_tokens)


b32 = [pad32(b) for b in b8]
print(
    f"padded tokens: bucket 8 {sum(b.input_ids.numel() for b in b8)}, 32 {sum(b.input_ids.numel() for b in b32)}"
)
m = s.model
m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4)


def step(b: Batch) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, _ = m(b.input_ids)
        loss = m.loss(h, b.labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for b in b8 + b32:  # warm-up
    step(b)
r8: list[float] = []
r32: list[float] = []
for _ in range(int(os.environ.get("R", "4"))):
    for batches, out in ((b8, r8), (b32, r32)):
        t = time.perf_counter()
        for b in batches:
            step(b)
        out.append(time.perf_counter() - t)
ratios = [a / b for a, b in zip(r32, r8, strict=True)]
print(
    f"load {os.getloadavg()[0]:.2f}: bucket 8 {1000 * statistics.median(r8) / len(b8):.1f} ms/step, "
    f"bucket 32 {1000 * statistics.median(r32) / len(b8):.1f} ms/step; 32/8 time ratio median "
    f"{statistics.median(ratios):.3f} (min {min(ratios):.3f} max {max(ratios):.3f})"
)
