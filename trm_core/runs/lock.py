"""The run-directory lock: an `fcntl.flock` on `runs/<name>/.lock`, held for the trainer's lifetime.

The kernel decides who holds the lock (one open file description at a time, released when the
holder exits, even by kill -9), so there is no window between creating the file and writing a pid
in which a racer could take a half-made lock for a stale one. The pid in the file is for humans
and for error messages only. Whether a run is live is a non-blocking flock attempt (`lock_holder`).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from trm_core.errors import CheckpointError

__all__ = ["LOCK_FILE", "acquire_lock", "file_lock", "lock_holder", "pid_alive", "try_claim"]

LOCK_FILE = ".lock"
PID_MAX = 1 << 22  # Linux's largest pid_max; a bigger number in a lock file is not a pid
_READ_LIMIT = 64  # bytes of the lock file read back: a pid and a newline


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or someone else's)."""
    if not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except (OSError, OverflowError):
        return False
    return True


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, _READ_LIMIT, 0)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit() or len(text) > 8:
        return None
    pid = int(text)
    return pid if 0 < pid <= PID_MAX else None


def _open(path: Path, flags: int) -> int:
    """open(2) the lock file without following a symlink; one sentence for what is not a file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a lock file; remove it to train here") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(f"{path} is a symlink, not a lock file; remove it to train here") from None
        raise CheckpointError(f"cannot open the lock file {path} ({e.strerror})") from None
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(
            f"{path} is not a regular file, so it cannot be a lock; remove it to train here"
        )
    return fd


def _write_pid(fd: int) -> None:
    """Our pid into the lock file, for humans only: a full or read-only disk leaves it empty ("pid
    unknown"); the flock, not the pid, is the lock."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass


def _flock_current(path: Path, blocking: bool, on_busy: Callable[[int], None] | None = None) -> int | None:
    """flock `path` exclusively (created if needed) and return the locked fd; None when another
    process holds it and `blocking` is False (after `on_busy(fd)`, which may raise). The holder
    before us may have unlinked the file between our open and our flock: then we locked an orphan
    inode and start over on the file now at `path`."""
    for _ in range(20):
        fd = _open(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            try:
                if on_busy is not None:
                    on_busy(fd)
            finally:
                os.close(fd)
            return None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise CheckpointError(f"could not take the lock {path}; another process keeps replacing it")


def _release(path: Path, fd: int) -> Callable[[], None]:
    """The release function of a lock taken by `_flock_current`."""

    def release() -> None:
        try:
            os.unlink(path)  # while still holding it: a racer that opened it re-checks the inode
        except OSError:
            pass
        os.close(fd)

    return release


def _locked_file(path: Path, blocking: bool) -> Callable[[], None] | None:
    """flock `path` exclusively (created if needed), our pid written in it; the release function,
    or None when another process holds it and `blocking` is False."""
    fd = _flock_current(path, blocking)
    if fd is None:
        return None
    _write_pid(fd)
    return _release(path, fd)


def try_claim(path: str | Path) -> Callable[[], None] | None:
    """Claim a piece of work (a sweep's run) for this process: a non-blocking flock on `path`.
    Returns the release function, or None when a live process holds the claim. The kernel drops the
    claim when its holder dies (even by kill -9), so a claim can never be stale."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create {path.parent} ({e.strerror})") from None
    return _locked_file(path, blocking=False)


def file_lock(path: str | Path) -> Callable[[], None]:
    """Wait for the exclusive flock on `path` (a short read-modify-write, such as sweep.json's)."""
    release = _locked_file(Path(path), blocking=True)
    assert release is not None
    return release


def acquire_lock(run_dir: str | Path, log: Callable[[str], None] | None = None) -> Callable[[], None]:
    """Take run_dir/.lock (exclusive flock, our pid written in it); returns the release function.

    A live holder → CheckpointError naming its pid. A lock file left by a process that died
    (no flock held) is taken over, with a log line naming the dead pid.
    """
    path = Path(run_dir) / LOCK_FILE

    def busy(fd: int) -> None:
        pid = _read_pid(fd)
        who = f"pid {pid}" if pid is not None else "pid unknown"
        raise CheckpointError(
            f"{run_dir} is being trained by another process ({who}); "
            f"stop it first or train into another run directory"
        ) from None  # raised inside _flock_current's except BlockingIOError

    fd = _flock_current(path, blocking=False, on_busy=busy)
    assert fd is not None  # busy raised otherwise
    stale = _read_pid(fd)
    if stale is not None and stale != os.getpid() and log:
        log(f"took over a stale lock in {run_dir} (pid {stale} is not running)")
    _write_pid(fd)
    return _release(path, fd)


def lock_holder(run_dir: str | Path) -> int | None:
    """The pid of the live process holding run_dir/.lock (0 when its pid is unreadable), else None."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
