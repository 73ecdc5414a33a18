"""First-piece latency of Generator.stream on the quickstart shape (untrained weights: timing only).

usage: PYTHONPATH=. GOMP_SPINCOUNT=20000 python docs/perf/first_token.py
"""

import statistics
import time

import torch

from trm_core.data.sources import format_prompt
from trm_core.data.tokenizers import build_tokenizer
from trm_core.generation.generator import Generator
from trm_core.model.depth import Depth
from trm_core.model.lm import build_model
from trm_core.profile import load_profile

torch.set_num_threads(2)
p = load_profile("profiles/quickstart.toml")
tok = build_tokenizer("byte")
torch.manual_seed(0)
g = Generator(build_model(p.model, tok.vocab_size), tok, depth=Depth(1))
q = format_prompt(
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
wall, cpu = [], []
for _ in range(7):
    t0, c0 = time.perf_counter(), time.process_time()
    it = g.stream(q, max_tokens=8)
    next(it)
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
    list(it)
print("first piece, wall s:", [round(t, 3) for t in wall], "median", round(statistics.median(wall), 3))
print("first piece, cpu s: ", [round(c, 3) for c in cpu], "median", round(statistics.median(cpu), 3))
