"""Which precision causal attention runs in on CPU under bf16 autocast: measured, not assumed.

Under `torch.autocast("cpu", bfloat16)` SDPA runs in bf16. Whether that is faster than fp32
depends on the CPU and the head size (docs/performance-cpu-step.md): on an Intel Xeon with AMX the
bf16 attention backward at head size 32 was 1.8x slower than fp32's (the issue's profile), on an
AMD EPYC Zen 4 without AMX bf16 and fp32 are even at head size 32 and bf16 wins at 64 and 128.
So the choice is measured once per (CPU model, torch version, threads, head size): a tiny
interleaved micro-benchmark of SDPA forward + backward in both precisions (~0.1-0.3 s), kept in
memory for the process and on disk for the machine (the same choice on every later run here, so
runs stay reproducible). fp32 is chosen only when it wins by FP32_MARGIN, else autocast's bf16.

Override: `TRM_CPU_ATTENTION=fp32|bf16|auto` in the environment, or `cpu_attention(mode)` (the
bench's rows). CUDA never asks this module: there attention stays in the autocast dtype.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from trm_core.cpu_info import cpu_model

__all__ = ["ENV", "FP32_MARGIN", "MODES", "cache_file", "cpu_attention", "cpu_attention_fp32", "measure"]

ENV = "TRM_CPU_ATTENTION"
MODES = ("auto", "fp32", "bf16")
FP32_MARGIN = 1.10  # fp32 attention only where bf16 is >= 10 % slower (noise must not flip it)

_override: list[str] = []  # a stack: cpu_attention() contexts nest
_chosen: dict[tuple[str, int], bool] = {}  # this process's decisions, by (machine key, head size)


def _mode() -> str:
    mode = _override[-1] if _override else os.environ.get(ENV, "auto").strip().lower()
    return mode if mode in MODES else "auto"


@contextlib.contextmanager
def cpu_attention(mode: str) -> Iterator[None]:
    """Run the body with attention forced to `mode` ("fp32", "bf16" or "auto")."""
    if mode not in MODES:
        raise ValueError(f"attention precision must be one of {', '.join(MODES)}, not {mode!r}")
    _override.append(mode)
    try:
        yield
    finally:
        _override.pop()


def cache_file() -> Path:
    """$XDG_CACHE_HOME/trm-tui/cpu-attention.json (~/.cache/...): the measured choices of this machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trm-tui" / "cpu-attention.json"


def _machine_key() -> str:
    return f"{cpu_model()}|torch {torch.__version__}|{torch.get_num_threads()} threads"


def measure(head_dim: int, *, rounds: int = 5, batch_heads: int = 16, length: int = 128) -> dict[str, float]:
    """Median seconds of causal SDPA forward + backward at [batch_heads, length, head_dim], bf16 and
    fp32 interleaved round by round (so load on the machine hits both alike)."""
    times: dict[str, list[float]] = {"bf16": [], "fp32": []}
    with torch.enable_grad(), torch.autocast("cpu", enabled=False):
        tensors = {}
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            gen = torch.Generator().manual_seed(0)
            q, k, v, g = (torch.randn(1, batch_heads, length, head_dim, generator=gen) for _ in range(4))
            tensors[name] = [t.to(dtype).requires_grad_(i < 3) for i, t in enumerate((q, k, v, g))]
        for i in range(rounds + 1):  # the first round warms up and is not counted
            for name, (q, k, v, g) in tensors.items():
                t0 = time.perf_counter()
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(g)
                if i:
                    times[name].append(time.perf_counter() - t0)
                q.grad = k.grad = v.grad = None
    return {name: statistics.median(ts) for name, ts in times.items()}


def _measured_choice(head_dim: int) -> bool:
    key = _machine_key()
    if (key, head_dim) in _chosen:
        return _chosen[(key, head_dim)]
    path = cache_file()
    entry = f"{key}|head {head_dim}"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    record = known.get(entry)
    if not (isinstance(record, dict) and isinstance(record.get("fp32"), bool)):
        t = measure(head_dim)
        record = {
            "fp32": t["bf16"] > FP32_MARGIN * t["fp32"],
            "bf16_ms": t["bf16"] * 1e3,
            "fp32_ms": t["fp32"] * 1e3,
        }
        known[entry] = record
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
            tmp.replace(path)
    _chosen[(key, head_dim)] = record["fp32"]
    return record["fp32"]


def cpu_attention_fp32(head_dim: int) -> bool:
    """Should CPU attention under bf16 autocast run in fp32 for this head size? (See the module doc.)"""
    mode = _mode()
    if mode != "auto":
        return mode == "fp32"
    return _measured_choice(head_dim)
