"""Bounded reads of files a user (or an attacker) may have put anywhere: one loader for all of them.

Profiles, data files and every file of a run directory are read through `read_bounded`: regular
files only (a FIFO would block forever, /dev/zero would fill memory), at most `limit` bytes, and,
for files inside a run directory, symlinks followed only when they resolve inside that directory
(`root`) — a `latest` link into another run, or a profile.toml linked to /dev/zero, is refused.
The caller turns a `FileProblem` into its own one-sentence error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileProblem", "inside", "read_bounded", "read_text_file"]


class FileProblem(Exception):
    """Why a file cannot be read; `kind` in missing | directory | not-regular | too-large | outside |
    loop | unreadable, and `phrase` says it after the path ("is a FIFO, not a regular file")."""

    def __init__(self, kind: str, phrase: str):
        super().__init__(phrase)
        self.kind, self.phrase = kind, phrase


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def inside(path: str | Path, root: str | Path) -> bool:
    """Whether `path`, every symlink resolved, lies inside `root` (also resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _size_phrase(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def read_bounded(path: str | Path, limit: int, *, root: str | Path | None = None) -> bytes:
    """The bytes of regular file `path` (at most `limit`), else FileProblem. With `root`, `path`
    must resolve inside `root`."""
    path = Path(path)
    try:
        os.stat(path)  # a symlink loop fails here (ELOOP), before realpath could mask it
    except FileNotFoundError:
        raise FileProblem("missing", "is missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FileProblem("loop", "is a symlink loop") from None
        raise FileProblem("unreadable", f"cannot be read ({e.strerror})") from None
    if root is not None and not inside(path, root):
        raise FileProblem("outside", f"is a symlink that leads outside {root}")
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        )  # O_NONBLOCK: a FIFO must not hang open()
    except FileNotFoundError:
        raise FileProblem("missing", "is missing") from None
    except OSError as e:
        raise FileProblem("unreadable", f"cannot be read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileProblem("directory", "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem("not-regular", f"is {_kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileProblem("too-large", f"is larger than {_size_phrase(limit)} ({st.st_size:,} bytes)")
        # the whole file in one read (one buffer, no join doubling the peak); more only if it grew
        first = os.read(fd, min(st.st_size, limit) + 1)
        chunks, total = [first], len(first)
        while first and total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # the file grew while we read it
            raise FileProblem("too-large", f"is larger than {_size_phrase(limit)}")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as e:
        raise FileProblem("unreadable", f"cannot be read ({e.strerror})") from None
    finally:
        os.close(fd)


def read_text_file(
    path: str | Path,
    limit: int,
    *,
    what: str,
    error: Callable[[str], Exception],
    root: str | Path | None = None,
) -> str:
    """A UTF-8 text file read whole and exactly (no newline translation), bounded like read_bounded;
    `error(sentence)` builds the exception to raise ("PATH: no such profile file")."""
    from trm_core.printable import printable

    shown = printable(str(path))
    try:
        data = read_bounded(path, limit, root=root)
    except FileProblem as p:
        if p.kind == "missing":
            raise error(f"{shown}: no such {what}") from None
        if p.kind == "directory":
            raise error(f"{shown}: is a directory, not a {what}") from None
        raise error(f"{shown}: {p.phrase}, so it cannot be a {what}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{shown}: not a UTF-8 text file") from None
