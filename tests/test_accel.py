"""The CPU fast path: what `precision`/`compile = "auto"` choose, bf16 and compiled losses against
fp32 eager on the same batch (stated bounds), and the compile phase's events.

The exactness tests elsewhere run fp32 eager; this file holds the suite's only torch.compile calls
(a 32-wide, 1-layer model, a few steps), with their kernels cached on disk between runs.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from tests.test_train import tiny_profile, train
from trm_core.data.batches import iterate_batches
from trm_core.errors import UserError
from trm_core.model.attention_precision import cpu_attention
from trm_core.model.depth import Depth
from trm_core.model.lm import build_model
from trm_core.training import accel
from trm_core.training.accel import (
    CPU_COMPILE_MIN_STEPS,
    CPU_COMPILE_MIN_STEPS_COLD,
    choose_accel,
    compile_cache_dir,
    compile_marker,
)
from trm_core.training.setup import build_train_setup

CPU = torch.device("cpu")
BF16_BOUND = 0.02  # |bf16 - fp32| / fp32 of the loss on one batch (bf16 keeps 8 mantissa bits)
COMPILED_BOUND = 1e-4  # |compiled - eager| / eager per step, fp32 (only the summation order differs)


@pytest.fixture
def compiler(monkeypatch):
    monkeypatch.setattr(accel, "cpu_compiler_available", lambda: True)


def test_auto_on_cpu_is_fp32_and_compiles_only_runs_long_enough(compiler):
    short = choose_accel("auto", "auto", CPU, CPU_COMPILE_MIN_STEPS - 1, cache_warm=True)
    long = choose_accel("auto", "auto", CPU, CPU_COMPILE_MIN_STEPS, cache_warm=True)
    assert (short.precision, short.compile) == ("fp32", False)
    assert (long.precision, long.compile) == ("fp32", True)
    assert "eager" in short.reason and "compiling" in long.reason
    # a first compile costs ~4x a cached one: only long runs win it back
    assert not choose_accel("auto", "auto", CPU, CPU_COMPILE_MIN_STEPS_COLD - 1, cache_warm=False).compile
    assert choose_accel("auto", "auto", CPU, CPU_COMPILE_MIN_STEPS_COLD, cache_warm=False).compile
    cuda = choose_accel("auto", "auto", torch.device("cuda"), 1)
    assert (cuda.precision, cuda.compile, cuda.reason) == ("bf16", True, "")
    assert choose_accel("fp32", "on", CPU, 1).compile and not choose_accel("fp32", "off", CPU, 10**6).compile


def test_without_a_cpp_compiler_auto_stays_eager_and_on_is_one_sentence(monkeypatch):
    monkeypatch.setattr(accel, "cpu_compiler_available", lambda: False)
    auto = choose_accel("auto", "auto", CPU, 10**6, cache_warm=True)
    assert not auto.compile and "no C++ compiler" in auto.reason
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):
        choose_accel("auto", "on", CPU, 10)


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32():
    emulated = choose_accel("bf16", "off", CPU, 10, cpu_bf16=False)
    assert emulated.precision == "fp32" and "AVX512-BF16" in emulated.reason
    assert choose_accel("bf16", "off", CPU, 10, cpu_bf16=True).precision == "bf16"


def test_compile_cache_dir_is_documented_and_overridable(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "trm-tui" / "torch-compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"


def test_bucket_lengths_cover_every_batch_length():
    p = tiny_profile()
    s = build_train_setup(p, CPU, rank=0, world_size=1, max_steps=None)
    seen = {b.input_ids.shape[1] for b in iterate_batches(s.data.train_ds, 16, seed=0, epoch=0)}
    assert seen <= s.data.train_ds.bucket_lengths()


def test_bf16_loss_within_bound_of_fp32_on_the_same_batch():
    p = tiny_profile()
    s = build_train_setup(p, CPU, rank=0, world_size=1, max_steps=None)
    batch = next(iterate_batches(s.data.train_ds, 16, seed=0, epoch=0))
    model = s.model
    with torch.no_grad():
        fp32 = float(model.loss(model(batch.input_ids)[0], batch.labels))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = float(model.loss(model(batch.input_ids)[0], batch.labels))
    assert abs(bf16 - fp32) <= BF16_BOUND * fp32, (bf16, fp32)


def _compiler_available() -> bool:
    return shutil.which("g++") is not None or shutil.which("c++") is not None


@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager_and_compiling_is_its_own_phase(tmp_path, monkeypatch):
    # a fixed cache directory: the second run of the suite reuses the kernels (a few seconds)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "trm-tui-test-compile"))
    torch._dynamo.reset()
    losses = {}
    for mode in ("off", "on"):
        p = tiny_profile(train__compile=mode, train__max_steps=3, train__eval_every=100)
        done, events, _ = train(p, tmp_path / mode)
        assert done.reason == "finished", done.message
        losses[mode] = [e.loss for e in events if e.kind == "step"]
        kinds = [(e.kind, getattr(e, "phase", "")) for e in events]
        if mode == "on":
            i = kinds.index(("phase", "compiling"))
            assert kinds[i + 1] == ("phase", "training") and kinds.index(("step", "")) > i + 1
            assert kinds.index(("start", "")) < i
        else:
            assert ("phase", "compiling") not in kinds
    torch._dynamo.reset()
    assert compile_marker(tiny_profile().model, "fp32").is_file()  # auto now expects a cached compile
    assert len(losses["on"]) == len(losses["off"]) == 3
    for eager, compiled in zip(losses["off"], losses["on"], strict=True):
        assert abs(compiled - eager) <= COMPILED_BOUND * eager, (losses["off"], losses["on"])


@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_net_bf16_equals_eager_over_lengths_and_sampled_depths_with_bounded_graphs(monkeypatch):
    """The CPU compile (issue 29.2): the shared net with attention inside, one graph with dynamic
    lengths. Under bf16 autocast, with attention in either precision, over bucket lengths in any
    order and a new H per step (sampled depth, 1-step gradient: no-grad cycles before the last),
    the training losses equal eager's within bf16 rounding, attention breaks no graph, and after
    one step of each kind (grad/no-grad x attention precision) no new depth or length compiles."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "trm-tui-test-compile"))
    torch._dynamo.reset()
    counters.clear()
    cfg = tiny_profile().model
    torch.manual_seed(0)
    models = {"eager": build_model(cfg, 260)}
    models["compiled"] = copy.deepcopy(models["eager"])
    models["compiled"].compile_net(dynamic=True)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    # (length, H-cycles, attention): the first two steps compile both attention precisions (H=2:
    # a no-grad cycle then a grad cycle); every later depth and length must reuse those graphs. The
    # first length equals the hidden size (32): with duck sizing the length would be tied to it.
    plan = [
        (32, 2, "bf16"),
        (48, 2, "fp32"),
        (64, 1, "bf16"),
        (32, 4, "bf16"),
        (80, 3, "fp32"),
        (48, 5, "bf16"),
    ]
    graphs_after_warmup = None
    for i, (T, H, attention) in enumerate(plan):
        ids = torch.randint(0, 260, (4, T), generator=gen)
        losses = {}
        for name, model in models.items():
            with torch.autocast("cpu", dtype=torch.bfloat16), cpu_attention(attention):
                hidden, _ = model(ids, depth=Depth.trained(cfg).with_H(H), grad_cycles=1)
                loss = model.loss(hidden, ids)
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            losses[name] = float(loss.detach())
        assert abs(losses["compiled"] - losses["eager"]) <= BF16_BOUND * losses["eager"], (i, losses)
        if i == 1:
            graphs_after_warmup = counters["stats"]["unique_graphs"]
    graphs_after_plan = counters["stats"]["unique_graphs"]
    # a deep copy (the EMA) runs its own weights through the same graphs, not the original's
    ema = copy.deepcopy(models["compiled"])
    with torch.no_grad():
        for p in ema.net.parameters():
            p.mul_(0.5)
        eager_ema = copy.deepcopy(models["eager"])
        eager_ema.load_state_dict(ema.state_dict())
        ids = torch.randint(0, 260, (4, 40), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16), cpu_attention("bf16"):  # the graphs above
            got, want, original = ema(ids)[0], eager_ema(ids)[0], models["compiled"](ids)[0]
        assert (got - want).abs().max() <= BF16_BOUND * want.abs().max() < (got - original).abs().max()
    torch._dynamo.reset()
    assert not counters["graph_break"], dict(counters["graph_break"])  # attention is inside the graph
    assert 1 <= graphs_after_warmup <= 4 and graphs_after_plan == graphs_after_warmup


def test_threads_for_shares_the_free_cores():
    assert accel.threads_for(1, 2) == 2 and accel.threads_for(2, 2) == 1 and accel.threads_for(3, 2) == 1
    assert accel.threads_for(2, 16) == 8
    assert accel.threads_for(1, 2, busy=0.4) == 2  # a quiet machine: all cores
    assert accel.threads_for(1, 2, busy=1.2) == 1  # one core busy (another run beside it)
    assert accel.threads_for(1, 2, busy=14.0) == 1  # never fewer than one


def test_fit_cpu_threads_follows_the_load_and_respects_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(accel, "_DEFAULT_THREADS", 2)
    monkeypatch.setattr(accel, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        monkeypatch.setattr(accel.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
        assert "1 CPU thread(s) of 2" in accel.fit_cpu_threads(CPU) and torch.get_num_threads() == 1
        monkeypatch.setattr(accel.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
        assert accel.fit_cpu_threads(CPU) == "" and torch.get_num_threads() == 2  # back up when quiet
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a sweep child's (or the user's) setting wins
        torch.set_num_threads(1)
        monkeypatch.setattr(accel.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert accel.fit_cpu_threads(CPU) == "" and torch.get_num_threads() == 1
        assert accel.fit_cpu_threads(torch.device("cuda")) == ""
    finally:
        torch.set_num_threads(before)
