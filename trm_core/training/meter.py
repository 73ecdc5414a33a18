"""Training speed as the StepEvent reports it: tokens/s and ETA over the last 20 steps."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["Throughput"]


class Throughput:
    """Wall time per step over a sliding window; `resume()` after evaluation or a checkpoint, whose
    time is not training throughput. `elapsed()` includes the time of the run before a resume."""

    def __init__(self, elapsed_before: float = 0.0, window: int = 20):
        self.elapsed_before = elapsed_before
        self.start = self.last = time.perf_counter()
        self.window: deque[tuple[float, float]] = deque(maxlen=window)
        self.tokens = 0.0  # every step's tokens this session (StepEvent.tokens)

    def step(self, tokens: float, steps_left: int) -> tuple[float, float]:
        """Record a step of `tokens`; (tokens/s, ETA in seconds) over the window."""
        now = time.perf_counter()
        self.tokens += tokens
        self.window.append((now - self.last, tokens))
        self.last = now
        dt = sum(w[0] for w in self.window)
        tps = sum(w[1] for w in self.window) / dt if dt > 0 else 0.0
        return tps, steps_left * dt / len(self.window)

    def resume(self) -> None:
        self.last = time.perf_counter()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start
