"""Whole-file writes that a crash can never leave half done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_failure", "write_text_atomic"]


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = True) -> Path:
    """Write `text` (UTF-8) to `path`: a temporary file beside it, fsync, then `os.replace`.

    `fsync=False` skips the flush to disk for files that are cheap to lose after a power cut
    (a crash of the process alone still never leaves half a file).

    Readers see the old file or the new one, never a mix; the temporary file is removed when
    anything fails, and the error propagates (callers turn an OSError into their own sentence).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"


def _mount_of(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def write_failure(path: str | Path, error: BaseException, needed: int | None = None) -> str | None:
    """Why writing `path` failed, as a phrase for one sentence ("No space left on device (about 3.1 MiB
    needed, 12.0 KiB free on /mnt)"; "the file system is read-only"; "permission denied"), or None when
    `error` is not a write failure (a programming error, to be raised as is). Recognises what the
    writers raise on a full disk besides OSError: safetensors' SafetensorError, torch.save's
    RuntimeError ("unexpected pos", "file write failed")."""
    import errno
    import shutil

    path = Path(path)
    code = getattr(error, "errno", None)
    text = str(error)
    writer = type(error).__name__ == "SafetensorError" or (
        isinstance(error, RuntimeError)
        and any(k in text for k in ("unexpected pos", "write failed", "PytorchStreamWriter"))
    )
    if not isinstance(error, OSError) and not writer:
        return None
    mount = _mount_of(path)
    try:
        free = shutil.disk_usage(mount).free
    except OSError:
        free = None
    if code == errno.EROFS:
        return f"the file system at {mount} is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied ({path})"
    if code in (errno.ENOSPC, errno.EDQUOT) or writer and (free is not None and free < (needed or 1 << 20)):
        need = f"about {_size(needed)} needed, " if needed else ""
        have = f"{_size(free)} free" if free is not None else "no space left"
        return f"No space left on device ({need}{have} on {mount})"
    return getattr(error, "strerror", None) or text.splitlines()[0][:160] if text else type(error).__name__
