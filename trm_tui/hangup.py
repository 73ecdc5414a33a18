"""When the terminal goes away (an SSH connection drops), stop as "stop and quit" would.

The kernel's SIGHUP does not always reach the app: something between the shell and the app may
hold it back (`make run`: make catches it and waits for its child; `setsid`, `nohup`). Then
Textual's input thread reads end-of-file in a loop, and the orphaned app spins on a core forever,
training on. So the app ignores SIGHUP and polls its terminal once a second for POLLHUP, which a
hung-up terminal reports however the signal went. Nobody is left to answer a question: a
running sweep or training is stopped the way F6 stops it (a checkpoint is saved; resuming is
exact), an evaluation after its batch (nothing written), and the app exits at once (`TrmApp.exit`: Textual's own shutdown writes to the dead
terminal and can block forever). Unsaved profile edits are lost, as they were to the signal.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Callable

__all__ = ["watch_terminal"]

HUNG_UP = select.POLLHUP | select.POLLERR | select.POLLNVAL


def terminal_fd() -> int | None:
    """The app's terminal (stdin), or None when it has none (tests, pipes)."""
    try:
        fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
        return fd if fd >= 0 and os.isatty(fd) else None
    except (OSError, ValueError):
        return None


def hung_up(poller: select.poll) -> bool:
    return any(events & HUNG_UP for _, events in poller.poll(0))


def watch_terminal(app, on_hang_up: Callable[[], None], every: float = 1.0) -> bool:
    """Call `on_hang_up` (once) when the app's terminal hangs up; False when there is no terminal."""
    fd = terminal_fd()
    if fd is None:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLHUP)  # POLLIN not asked for: Textual reads the input
    called = False

    def once() -> None:
        nonlocal called
        if not called:
            called = True
            on_hang_up()

    app.set_interval(every, lambda: hung_up(poller) and once())
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the poll above sees the hang-up within `every`
    return True
