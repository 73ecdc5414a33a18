"""Compile cost of the quickstart model as the Trainer compiles it: wall and CPU s (self + children).

usage: TORCHINDUCTOR_CACHE_DIR=DIR PYTHONPATH=. python docs/perf/compile_cost.py LABEL
(run it twice with the same empty DIR: the first is the cold compile, the second hits the cache;
PRECISION=bf16|fp32, default bf16 as the quickstart; THREADS, default 2)
"""

import os
import resource
import sys
import time

import torch

from trm_core.profile import load_profile
from trm_core.training.accel import choose_accel, compile_for_run
from trm_core.training.setup import build_train_setup


def cpu_seconds() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


torch.set_num_threads(int(os.environ.get("THREADS", "2")))
p = load_profile("profiles/quickstart.toml")
s = build_train_setup(p, torch.device("cpu"), rank=0, world_size=1, max_steps=None)
accel = choose_accel(os.environ.get("PRECISION", "bf16"), "on", torch.device("cpu"), 600)
c0, w0 = cpu_seconds(), time.perf_counter()
compile_for_run(s.model, s.data, accel, lambda ids: s.model.loss(s.model(ids)[0], ids), 0, lambda e: None)
print(
    f"{sys.argv[1] if len(sys.argv) > 1 else 'run'}: compile wall {time.perf_counter() - w0:.1f} s, "
    f"cpu {cpu_seconds() - c0:.1f} s (cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR')})"
)
