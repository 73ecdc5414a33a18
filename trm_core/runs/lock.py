"""The run-directory lock: `runs/<name>/.lock` holds the pid of the one trainer writing there."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from trm_core.errors import CheckpointError

__all__ = ["LOCK_FILE", "acquire_lock"]

LOCK_FILE = ".lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or someone else's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return False
    return True


def acquire_lock(run_dir: str | Path, log: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Create run_dir/.lock with our pid (O_EXCL); returns a release function.

    A live owner → CheckpointError naming its pid; a dead owner's lock is taken over.
    """
    path = Path(run_dir) / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                raw = path.read_text().strip()
                pid = int(raw)
            except FileNotFoundError:
                continue  # released between our attempts
            except (OSError, ValueError):
                pid = -1
            if pid > 0 and pid_alive(pid):
                raise CheckpointError(
                    f"{run_dir} is being trained by another process (pid {pid}); "
                    f"stop it first or remove {path} if that process is not a trainer"
                ) from None
            if log:
                log(f"took over a stale lock in {run_dir} (pid {pid if pid > 0 else '?'} is not running)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        mine = os.getpid()

        def release(mine: int = mine) -> None:
            try:
                if int(path.read_text().strip()) == mine:
                    path.unlink()
            except (OSError, ValueError):
                pass

        return release
    raise CheckpointError(f"could not take the lock {path}")
