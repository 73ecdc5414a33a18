"""How many intra-op threads a CPU training run takes: its share of the cores the rest of the
machine leaves free, measured now and re-measured while it trains.

Why (docs/performance-cpu-step.md, "Threads that fit the load"): on 2 cores the quickstart step
runs 1.57x faster on 2 threads than on 1 when the machine is quiet, but an oversubscribed core
costs far more than an idle one (1 thread ran 3.5x faster than 2 at load 11-19). The old rule
read the 1-minute load average once at start-up; that average lags by about a minute, so a run
started just after other work ended took 1 thread on an idle machine (the "quiet" quickstart of
2026-12-07 did: 140 s where 2 threads took 73-98 s), and a run started first never gave a core back
to one started next to it. Now the other processes' use is measured directly: the machine's busy
CPU time (/proc/stat, over the cores this process may use) minus this process's own CPU time,
over a short window at start and over the last ~10 s while training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["CpuShare", "DEFAULT_THREADS", "machine_busy_seconds", "threads_for", "usable_cores"]

DEFAULT_THREADS = torch.get_num_threads()  # torch's choice at start-up (OMP_NUM_THREADS or the cores)
START_WINDOW_S = 0.25  # the first measurement, before the first step
REFIT_EVERY_S = 10.0  # then once per this many seconds of training, between steps


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_for(jobs: int, cores: int | None = None, busy: float = 0.0) -> int:
    """Intra-op threads for each of `jobs` torch processes sharing `cores` (default: usable_cores())
    beside `busy` cores' worth of other work: each gets an equal share of the free cores, at least
    one. Oversubscribing costs far more than it saves (module docstring)."""
    cores = usable_cores() if cores is None else cores
    free = max(1, cores - int(busy + 0.5))
    return max(1, free // max(1, jobs))


def machine_busy_seconds(stat: str | None = None) -> float | None:
    """CPU seconds spent busy (not idle, not waiting on I/O) since boot on the cores this process
    may use, from /proc/stat (or its text `stat`); None where it cannot be read (not Linux)."""
    try:
        text = stat if stat is not None else Path("/proc/stat").read_text()
    except OSError:
        return None
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy, seen = 0, False
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        ticks = [int(x) for x in rest.split()]
        if len(ticks) < 5:
            continue
        busy += ticks[0] + ticks[1] + ticks[2] + sum(ticks[5:7])  # user nice system irq softirq
        seen = True
    return busy / hz if seen else None


class CpuShare:
    """The intra-op threads of one CPU training run (torch.set_num_threads), fitted to what the
    other processes leave free: `start()` before the first step, `refit()` between steps (it
    measures only every REFIT_EVERY_S). Does nothing off CPU or when OMP_NUM_THREADS is set (a
    sweep's children get theirs from the queue; a user's choice wins). Each returns a log line
    when the thread count changed, else ""."""

    def __init__(
        self,
        device: torch.device,
        *,
        cores: int | None = None,
        busy_seconds: Callable[[], float | None] = machine_busy_seconds,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.active = device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS")
        self.cores = usable_cores() if cores is None else cores
        self._busy, self._own, self._clock, self._sleep = busy_seconds, own_seconds, clock, sleep
        self._mark: tuple[float, float | None, float] | None = None
        self.others = 0.0  # cores' worth of other processes' work in the last window

    def _sample(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy(), self._own()

    def _measure(self) -> float | None:
        """Other processes' busy cores since the last mark; marks now."""
        assert self._mark is not None
        (t0, b0, o0), (t1, b1, o1) = self._mark, self._sample()
        self._mark = (t1, b1, o1)
        if b0 is None or b1 is None or t1 - t0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0))

    def _apply(self, others: float) -> str:
        self.others = others
        before = torch.get_num_threads()
        threads = min(DEFAULT_THREADS, threads_for(1, self.cores, busy=others))
        if threads == before:
            return ""
        torch.set_num_threads(threads)  # up again too: the app trains many times in one process
        why = "the machine is busy" if threads < DEFAULT_THREADS else "the other work has ended"
        return f"{threads} CPU thread(s) of {self.cores}: {why} (others use {others:.1f} cores)"

    def start(self) -> str:
        if not self.active:
            return ""
        self._mark = self._sample()
        self._sleep(START_WINDOW_S)
        others = self._measure()
        if others is None:  # no /proc/stat: the 1-minute load average, the best there is
            others = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        torch.set_num_threads(DEFAULT_THREADS)  # a new run starts from torch's default
        return self._apply(others)

    def refit(self) -> str:
        if not self.active or self._mark is None or self._clock() - self._mark[0] < REFIT_EVERY_S:
            return ""
        others = self._measure()
        return "" if others is None else self._apply(others)
