"""Interleaved A/B of the quickstart training step (docs/performance.md, "CPU fast path").

usage: PYTHONPATH=. GOMP_SPINCOUNT=20000 R=4 N=3 python docs/perf/ab_train_step.py eager,regions_dyn,bf16
Variants (comma list; the first is the baseline): eager, bf16, fused (AdamW fused=True),
regions (compiled block, one static graph per length), regions_dyn (dynamic lengths),
net (the whole shared net with attention as one graph, dynamic lengths: the Trainer's CPU path
since issue 29.2), brk (attention kept out of the compiled graph, as the Trainer's regional CPU
compile did before: regions_dyn_brk is that path), a32 (with bf16: attention in fp32; without
a32 bf16 attention is forced),
t1 (this variant's steps on 1 intra-op thread, the others on THREADS),
and combinations such as regions_dyn_bf16, bf16_a32 or bf16_t1. Same weights and batches for all;
R rounds of N steps per variant, variants interleaved within each round; prints the median ratio.
"""

import contextlib
import os
import resource
import statistics
import sys
import time

import torch

import trm_core.model.layers as layers
from trm_core.model.attention_precision import cpu_attention
from trm_core.model.lm import build_model
from trm_core.profile import load_profile
from trm_core.training.setup import build_train_setup
from trm_core.training.state import Position

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
p = load_profile("profiles/quickstart.toml")
s = build_train_setup(p, torch.device("cpu"), rank=0, world_size=1, max_steps=None)
batches = [batch for _, (_, _, batch) in zip(range(40), s.data.walk(Position()), strict=False)]
shapes = sorted({tuple(b.input_ids.shape) for b in batches})
print("shapes", shapes)
init = s.model.state_dict()
graph_sdpa = layers.cpu_sdpa
eager_sdpa = torch.compiler.disable(graph_sdpa)


def cpu_seconds():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def make(v):
    m = build_model(p.model, s.tokenizer.vocab_size)
    m.load_state_dict(init)
    m.train()
    if "regions" in v:
        m.compile_regions(dynamic="dyn" in v)
    if "net" in v:
        m.compile_net(dynamic=True)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused="fused" in v)
    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in v else contextlib.nullcontext

    attn = "fp32" if "a32" in v else "bf16"

    threads = 1 if "t1" in v else int(os.environ.get("THREADS", "2"))

    def step(b):
        torch.set_num_threads(threads)
        layers.cpu_sdpa = eager_sdpa if "brk" in v else graph_sdpa
        with ac(), cpu_attention(attn):
            h, _ = m(b.input_ids)
            loss = m.loss(h, b.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


variants = sys.argv[1].split(",")
steps = {}
for v in variants:
    t0, c0 = time.perf_counter(), cpu_seconds()
    st = make(v)
    for shp in shapes:  # warm (and compile) every length
        st(next(b for b in batches if tuple(b.input_ids.shape) == shp))
    print(v, "warm-up/compile s", round(time.perf_counter() - t0, 1), "CPU s", round(cpu_seconds() - c0, 1), flush=True)
    steps[v] = st
R, N = int(os.environ.get("R", "5")), int(os.environ.get("N", "3"))
res = {v: [] for v in variants}
for _ in range(R):
    for v in variants:
        t0 = time.perf_counter()
        for b in batches[:N]:
            steps[v](b)
        res[v].append((time.perf_counter() - t0) / N)
print("load average", os.getloadavg())
for v in variants:
    ratios = [res[variants[0]][i] / res[v][i] for i in range(R)]
    print(
        f"{v:20s} median {1000 * statistics.median(res[v]):.1f} ms/step  speedup median "
        f"{statistics.median(ratios):.2f} (min {min(ratios):.2f} max {max(ratios):.2f})"
    )
