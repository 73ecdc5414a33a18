"""What this machine's CPU is, read once per process from /proc/cpuinfo: its model name (the key
of the measured attention precision, the bench's header) and its feature flags (native bf16, AMX).
The 2-core machines this runs on differ (AMD EPYC without AMX, Intel Xeon with AMX), so every
timing names the CPU, and the choices that depend on it are made here at run time."""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["cpu_flags", "cpu_has_native_bf16", "cpu_model", "describe_cpu"]


@functools.cache
def _cpuinfo_lines() -> tuple[str, ...]:
    try:
        return tuple(Path("/proc/cpuinfo").read_text(errors="replace").splitlines())
    except OSError:
        return ()


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) …"), "unknown cpu" where not readable."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[-1].strip()
    return "unknown cpu"


def cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags (avx512_bf16, amx_bf16, …); empty where not readable."""
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[-1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (avx512_bf16 or amx_bf16); elsewhere bf16 is
    emulated and slower than fp32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def describe_cpu() -> str:
    """One line for a timing: model name, and whether it has AMX and native bf16."""
    amx = "AMX" if "amx_bf16" in cpu_flags() else "no AMX"
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu_model()} ({amx}, {bf16})"
