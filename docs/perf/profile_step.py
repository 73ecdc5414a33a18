"""Where the quickstart's eager training step spends its time: torch.profiler over 6 real steps
(bf16 autocast, attention in the precision the run would pick, after 3 warm-up steps), grouped
into matmuls, attention, elementwise, copies and the rest (docs/performance-cpu-step.md, §6).

usage: PYTHONPATH=. python docs/perf/profile_step.py      (THREADS=1 for one intra-op thread)
"""

import collections
import os

import torch
from torch.profiler import ProfilerActivity, profile

from trm_core.profile import load_profile
from trm_core.training.setup import build_train_setup
from trm_core.training.state import Position

p = load_profile("profiles/quickstart.toml")
s = build_train_setup(p, torch.device("cpu"), rank=0, world_size=1, max_steps=None)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
batches = [b for _, (_, _, b) in zip(range(9), s.data.walk(Position()), strict=False)]
m, opt = s.model, s.optimizer
m.train()


def step(b):
    with s.accel.autocast():
        h, _ = m(b.input_ids)
        loss = m.loss(h, b.labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


for b in batches[:3]:
    step(b)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for b in batches[3:]:
        step(b)
MATMUL = {"mm", "bmm", "addmm", "matmul", "linear"}
COPIES = {
    "copy_",
    "to",
    "_to_copy",
    "cat",
    "fill_",
    "clone",
    "contiguous",
    "empty",
    "zero_",
    "zeros",
    "ones",
    "empty_like",
    "zeros_like",
}


def group(op: str) -> str:
    if "attention" in op:
        return "attention (SDPA)"
    if op in MATMUL:
        return "matmul"
    if op in COPIES:
        return "copies, casts, fills"
    return "elementwise and the rest"


by: collections.Counter[str] = collections.Counter()
for e in prof.key_averages():
    if e.key.startswith("aten::"):
        by[group(e.key.removeprefix("aten::"))] += e.self_cpu_time_total
total = sum(e.self_cpu_time_total for e in prof.key_averages())
print(
    f"threads {torch.get_num_threads()}, {s.accel.reason or s.accel.precision}; self CPU time {total / 1e6:.2f} s over 6 steps"
)
for g, t in by.most_common():
    print(f"{g:26s} {100 * t / total:5.1f} %")
print(f"{'not aten (autograd, python)':26s} {100 * (total - sum(by.values())) / total:5.1f} %")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
