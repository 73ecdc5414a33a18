"""Whole-file writes that a crash can never leave half done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


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
