"""A sweep's child processes (`--jobs N`): their environments, and a spawn that ties each child's life
to the sweep's.

A child runs in its own session (a terminal's Ctrl+C reaches the queue only, which forwards one
SIGINT), so neither the terminal's hang-up nor a signal to the sweep's process group reaches it.
Instead the kernel sends it SIGTERM when the sweep process dies for any reason — kill -9, SIGHUP,
a crash (`PR_SET_PDEATHSIG`, Linux) — and the trainer stops with a checkpoint, as on any SIGTERM:
a sweep never leaves orphaned trainers behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["child_envs", "spawn_child"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> Callable[[], None] | None:
    """preexec_fn for a child that gets SIGTERM when `parent` dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(143)

    return preexec


def spawn_child(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `argv` with its output appended to `log_path`, dying with this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),  # noqa: PLW1509 — prctl only, no Python objects touched
        )


def child_envs(jobs: int, device: str | None) -> list[dict[str, str]]:
    """One environment per slot: one GPU each on CUDA, else cores // jobs threads each."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gpus = _visible_gpus() if device != "cpu" else []
    if gpus:
        return [{**env, "CUDA_VISIBLE_DEVICES": gpus[i]} for i in range(min(jobs, len(gpus)))]
    from trm_core.training.cpu_share import threads_for  # (imports torch: only when children run)

    threads = str(threads_for(jobs))  # cores // jobs, at least 1
    return [{**env, "OMP_NUM_THREADS": threads} for _ in range(jobs)]


def _visible_gpus() -> list[str]:
    """The GPU ids a child may be pinned to (respecting the parent's CUDA_VISIBLE_DEVICES)."""
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        return []
    if n == 0:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(n)]
    return ids[:n]
