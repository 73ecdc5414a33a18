"""The fast path: which precision and whether to compile, the on-disk compile cache, the warm-up.

Kept apart from the loop (`trainer.py`) and the step: the Trainer asks `choose_accel` once, wraps
its forward in `accel.autocast()`, and calls `compile_for_run` before the first step so that
compiling is its own phase (with its own event) instead of a frozen first step.

Why these rules (numbers in docs/performance.md, "CPU fast path"):
- bf16 autocast only where the CPU has native bf16 dot products (AVX512-BF16 or AMX); elsewhere
  bf16 is emulated and slower than fp32.
- `torch.compile` on CPU: the whole shared net, attention included, as one graph with dynamic
  lengths (`CausalLM.compile_net`): one compile serves every bucketed length and every sampled
  depth (the loops over cycles stay in Python); on CUDA the regional compile of each block. The
  compiled code is cached on disk so the next run or app launch skips codegen.
- `compile = "auto"` on CPU compiles only runs long enough to win back the compile time.
- the intra-op threads are not decided here: `cpu_share.CpuShare` fits them to the load.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trm_core.cpu_info import cpu_has_native_bf16
from trm_core.errors import UserError
from trm_core.events import Event, PhaseEvent

__all__ = [
    "Accel",
    "CPU_COMPILE_MIN_STEPS",
    "CPU_COMPILE_MIN_STEPS_COLD",
    "choose_accel",
    "compile_marker",
    "compile_cache_dir",
    "compile_for_run",
    "compile_regions_for",
    "enable_compile_cache",
]

# Fewest optimizer steps for which compiling pays on CPU (docs/performance-cpu-step.md, section 3:
# measured on the quickstart, AMD EPYC Zen 4 without AMX, interleaved A/B under load): the compiled
# net ran 1.07-1.21x the eager bf16 step (~0.03-0.07 s saved of ~0.4 s), and compiling cost 60
# CPU-s cold, 11 with the kernels in the on-disk cache: break-even ~170-370 steps warm, ~850-2000
# cold. 400 is above the whole warm range, 1500 near the middle of the cold one; a quickstart
# (<= 350 steps) never compiles by itself, cold or warm. Larger models save more per step for about the same compile
# cost, so for them the rule errs towards eager, never towards a compile that loses time.
CPU_COMPILE_MIN_STEPS = 400  # the cache holds this model's kernels (compiled here before)
CPU_COMPILE_MIN_STEPS_COLD = 1500  # first compile of this shape on this machine


def cpu_compiler_available() -> bool:
    """torch.compile on CPU builds C++: is the compiler inductor would call ($CXX or g++) here?"""
    return shutil.which(os.environ.get("CXX", "g++")) is not None


@dataclass(frozen=True)
class Accel:
    """What the Trainer runs: "bf16" | "fp32", compiled or not, and why (one line for the log)."""

    precision: str
    compile: bool
    device_type: str
    reason: str = ""

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def choose_accel(
    precision: str,
    compile: str,
    device: torch.device,
    total_steps: int,
    *,
    cpu_bf16: bool | None = None,
    cache_warm: bool | None = None,
    model_cfg: Any = None,
) -> Accel:
    """Resolve the profile's `precision` / `compile` ("auto" or explicit) for `device`.

    auto on CUDA: bf16 and compile. auto on CPU: fp32 (bf16's quickstart accuracy across seeds
    is unverified, see docs/performance.md) and compile when a C++ compiler exists and the run has at
    least CPU_COMPILE_MIN_STEPS steps if `cache_warm` (this model was compiled here before; by
    default judged from `model_cfg`'s compile_marker), else CPU_COMPILE_MIN_STEPS_COLD.
    An explicit "bf16" on a CPU without native bf16 falls back to fp32 with a reason.
    """
    cuda = device.type == "cuda"
    reasons = []
    if precision == "auto":
        prec = "bf16" if cuda else "fp32"
    elif precision == "bf16" and not cuda:
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        prec = "bf16" if native else "fp32"
        if not native:
            reasons.append("precision = 'bf16' needs a CPU with AVX512-BF16 or AMX; training in fp32")
    else:
        prec = precision
    if compile == "auto":
        if cache_warm is None:
            cache_warm = model_cfg is not None and compile_marker(model_cfg, prec).exists()
        need = CPU_COMPILE_MIN_STEPS if cache_warm else CPU_COMPILE_MIN_STEPS_COLD
        comp = cuda or (total_steps >= need and cpu_compiler_available())
        if not cuda and not cpu_compiler_available():
            reasons.append("compile = 'auto' on CPU: eager (no C++ compiler found for torch.compile)")
        elif not cuda:
            cache = "cached kernels" if cache_warm else "no cached kernels"
            reasons.append(
                f"compile = 'auto' on CPU: {'compiling' if comp else 'eager'} "
                f"({total_steps} steps; with {cache} compiling pays from {need})"
            )
    else:
        comp = compile == "on"
        if comp and not cuda and not cpu_compiler_available():
            raise UserError(
                "train.compile = 'on' needs a C++ compiler on CPU (g++, or $CXX); install one or "
                "set compile = 'auto' or 'off'"
            )
    return Accel(prec, comp, device.type, "; ".join(reasons))


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: $TORCHINDUCTOR_CACHE_DIR if set, else
    $XDG_CACHE_HOME/trm-tui/torch-compile (~/.cache/trm-tui/torch-compile)."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trm-tui" / "torch-compile"


def compile_marker(model_cfg: Any, precision: str) -> Path:
    """A file in the cache directory that says this model shape was compiled here (with this
    torch and precision, as one net since issue 29.2): `compile = "auto"` then expects the cheap,
    cached compile."""
    key = f"net|{torch.__version__}|{precision}|{model_cfg.hidden_size}|{model_cfg.num_heads}|"
    key += f"{model_cfg.num_layers}|{model_cfg.expansion}|{model_cfg.norm_eps}|{model_cfg.rope_theta}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return compile_cache_dir() / "trm-tui-compiled" / digest


def enable_compile_cache() -> Path:
    """Point inductor's on-disk caches (FX graph, AOT autograd) at compile_cache_dir() and turn
    them on; a second compile of the same graphs then skips tracing-to-C++ and the C++ build."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return path


def compile_regions_for(models: Iterable[torch.nn.Module], device: torch.device) -> None:
    """Compile each model's shared net for training. On CPU the whole net with attention inside,
    one graph (`compile_net`) with dynamic lengths: one compile serves every bucketed length and
    every sampled depth. On CUDA the regional compile of each block, as before."""
    enable_compile_cache()
    for m in models:
        if device.type == "cpu":
            m.compile_net(dynamic=True)
        else:
            m.compile_regions()


def compile_for_run(
    model: torch.nn.Module,
    data: Any,
    accel: Accel,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    step: int,
    emit: Callable[[Event], None],
    *,
    ema: Any = None,
) -> float:
    """Compile as its own phase: a "compiling" PhaseEvent, one forward + backward (the training
    graphs) and one validation forward (the inference graphs) on dummy batches of `data`'s
    shortest and longest lengths, then a "training" PhaseEvent with the seconds it took.
    Gradients are cleared afterwards and no random number is drawn, so the run is the same.

    `loss_fn(input_ids)` runs the training forward (through DDP if any) and returns the loss.
    """
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    lengths = sorted(data.train_ds.bucket_lengths() | data.val_ds.bucket_lengths())
    emit(PhaseEvent("compiling", step, f"compiling the shared net (cache {compile_cache_dir()})"))
    compile_regions_for([model] + ([ema.module] if ema is not None else []), device)
    # two lengths: the first call specialises, the second makes the length dynamic
    warm = sorted({lengths[0], lengths[-1]}) if lengths else []
    for T in warm:
        ids = torch.zeros(data.batch_size, T, dtype=torch.long, device=device)
        with accel.autocast():
            loss = loss_fn(ids)
        loss.backward()
    model.zero_grad(set_to_none=True)
    evaluated = ema.module if ema is not None else model
    evaluated.eval()
    with torch.no_grad(), accel.autocast():
        for T in warm:
            evaluated(torch.zeros(data.batch_size, T, dtype=torch.long, device=device))
    evaluated.train()
    model.train()
    seconds = time.perf_counter() - t0
    marker = compile_marker(model.cfg, accel.precision)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{seconds:.1f}\n")
    emit(PhaseEvent("training", step, f"compiled in {seconds:.1f} s", seconds=seconds))
    return seconds
