"""The CPU fast path: what `precision`/`compile = "auto"` choose, bf16 and compiled losses against
fp32 eager on the same batch (stated bounds), and the compile phase's events.

The exactness tests elsewhere run fp32 eager; this file holds the suite's only torch.compile calls
(a 32-wide, 1-layer model, a few steps), with their kernels cached on disk between runs.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
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
    from trm_core.training.cpu_share import threads_for

    assert threads_for(1, 2) == 2 and threads_for(2, 2) == 1 and threads_for(3, 2) == 1
    assert threads_for(2, 16) == 8
    assert threads_for(1, 2, busy=0.4) == 2  # a quiet machine: all cores
    assert threads_for(1, 2, busy=1.2) == 1  # one core busy (another run beside it)
    assert threads_for(1, 2, busy=14.0) == 1  # never fewer than one


def test_machine_busy_seconds_reads_the_allowed_cores_without_idle_iowait_or_steal(monkeypatch):
    from trm_core.training import cpu_share

    stat = (
        "cpu  900 0 300 5000 70 0 0 40 0 0\n"
        "cpu0 100 10 50 1000 7 2 3 40 0 0\n"  # busy: 100+10+50+2+3 = 165 ticks
        "cpu1 200 0 100 2000 9 0 0 0 0 0\n"  # busy: 300 ticks
        "intr 12345\n"
    )
    hz = os.sysconf("SC_CLK_TCK")
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: {0, 1})
    assert cpu_share.machine_busy_seconds(stat) == pytest.approx(465 / hz)
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: {1})
    assert cpu_share.machine_busy_seconds(stat) == pytest.approx(300 / hz)
    assert cpu_share.machine_busy_seconds("intr 1\n") is None


class _Clock:
    """Scripted samples for CpuShare: the machine's busy seconds and this process's, per tick."""

    def __init__(self):
        self.t = self.busy = self.own = 0.0

    def run(self, seconds: float, *, others: float, own: float) -> None:
        self.t += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own


def test_cpu_share_measures_the_other_processes_and_refits_while_training(monkeypatch):
    from trm_core.training import cpu_share

    before = torch.get_num_threads()
    monkeypatch.setattr(cpu_share, "DEFAULT_THREADS", 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    c = _Clock()
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        c.run(s, others=c_others[0], own=0.1)

    c_others = [1.8]  # another training on ~2 cores when this one starts
    share = cpu_share.CpuShare(
        CPU, cores=2, busy_seconds=lambda: c.busy, own_seconds=lambda: c.own, clock=lambda: c.t, sleep=sleep
    )
    try:
        line = share.start()
        assert sleeps == [cpu_share.START_WINDOW_S] and share.others == pytest.approx(1.8)
        assert "1 CPU thread(s) of 2: the machine is busy" in line and torch.get_num_threads() == 1
        c.run(5.0, others=0.0, own=1.0)  # the other run ended, but not 10 s ago yet
        assert share.refit() == "" and torch.get_num_threads() == 1
        c.run(6.0, others=0.0, own=1.0)
        line = share.refit()  # 11 s: others 0 over the window since the start
        assert "2 CPU thread(s) of 2: the other work has ended" in line and torch.get_num_threads() == 2
        c.run(12.0, others=0.9, own=1.1)  # a second run starts beside this one (1 thread's worth)
        assert "1 CPU thread(s)" in share.refit() and torch.get_num_threads() == 1
        c.run(12.0, others=1.0, own=1.0)
        assert share.refit() == ""  # unchanged: no log line
        # a new run in the same process (the app trains many times) starts from torch's default
        c_others[0] = 0.1
        assert share.start() == "" and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_cpu_share_leaves_omp_num_threads_cuda_and_no_proc_stat_alone_or_falls_back(monkeypatch):
    from trm_core.training import cpu_share

    before = torch.get_num_threads()
    monkeypatch.setattr(cpu_share, "DEFAULT_THREADS", 2)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a sweep child's (or the user's) setting wins
        torch.set_num_threads(1)
        share = cpu_share.CpuShare(CPU, cores=2, busy_seconds=lambda: 0.0, sleep=lambda s: None)
        assert share.start() == "" and share.refit() == "" and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert cpu_share.CpuShare(torch.device("cuda"), cores=2).start() == ""
        # no /proc/stat: the 1-minute load average decides
        monkeypatch.setattr(cpu_share.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
        share = cpu_share.CpuShare(CPU, cores=2, busy_seconds=lambda: None, sleep=lambda s: None)
        assert "1 CPU thread(s) of 2" in share.start() and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cpu_share_sees_a_real_busy_process_beside_it(monkeypatch):
    """The real /proc/stat: a child spinning on one core is counted as another process's work."""
    import subprocess
    import sys

    from trm_core.training import cpu_share

    if cpu_share.machine_busy_seconds() is None:
        pytest.skip("no /proc/stat here")
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_share, "START_WINDOW_S", 1.0)
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.time() + 30\nwhile time.time() < t: pass"]
    )
    try:
        time.sleep(0.3)  # the child is spinning
        share = cpu_share.CpuShare(CPU)
        share.start()
        assert share.others >= 0.5  # at least half a core's worth, even beside other test workers
    finally:
        child.kill()
        child.wait()
        torch.set_num_threads(before)


def test_cpu_info_names_the_model_amx_and_native_bf16(monkeypatch):
    from trm_core import cpu_info

    xeon = (
        "model name\t: Intel(R) Xeon(R) Platinum 8481C",
        "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile",
    )
    epyc = ("model name\t: AMD EPYC", "flags\t\t: fpu avx512f avx512_bf16")
    old = ("model name\t: Intel(R) Xeon(R) CPU E5-2690", "flags\t\t: fpu avx2")
    monkeypatch.setattr(cpu_info, "_cpuinfo_lines", lambda: xeon)
    assert cpu_info.describe_cpu() == "Intel(R) Xeon(R) Platinum 8481C (AMX, native bf16)"
    assert cpu_info.cpu_has_native_bf16()
    monkeypatch.setattr(cpu_info, "_cpuinfo_lines", lambda: epyc)
    assert cpu_info.describe_cpu() == "AMD EPYC (no AMX, native bf16)" and cpu_info.cpu_has_native_bf16()
    monkeypatch.setattr(cpu_info, "_cpuinfo_lines", lambda: old)
    assert cpu_info.describe_cpu().endswith("(no AMX, no native bf16)") and not cpu_info.cpu_has_native_bf16()
    monkeypatch.setattr(cpu_info, "_cpuinfo_lines", lambda: ())
    assert cpu_info.cpu_model() == "unknown cpu" and cpu_info.cpu_flags() == frozenset()
