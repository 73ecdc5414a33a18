"""trm_core.runs.lock: one holder at a time under a race, a live holder found by flock, odd lock files."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from trm_core.errors import CheckpointError
from trm_core.runs.listing import lock_pid
from trm_core.runs.lock import acquire_lock, lock_holder, pid_alive

PROCS, TRIALS = 4, 20


def _racer(root: str, start, holders, worst, taken) -> None:  # noqa: ANN001 (multiprocessing proxies)
    for trial in range(TRIALS):
        start.wait()  # every racer calls acquire_lock at the same moment
        try:
            release = acquire_lock(Path(root) / f"t{trial}")
        except CheckpointError:
            release = None
        if release is not None:
            with holders.get_lock():
                holders.value += 1
                worst.value = max(worst.value, holders.value)
            with taken.get_lock():
                taken.value += 1
            time.sleep(0.01)  # hold it a moment: a second holder would overlap
            with holders.get_lock():
                holders.value -= 1
            release()
        start.wait()


def test_racing_processes_never_hold_the_lock_together(tmp_path: Path) -> None:
    for t in range(TRIALS):
        (tmp_path / f"t{t}").mkdir()
    ctx = mp.get_context("fork")
    start = ctx.Barrier(PROCS)
    holders, worst, taken = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [
        ctx.Process(target=_racer, args=(str(tmp_path), start, holders, worst, taken)) for _ in range(PROCS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert worst.value == 1, f"{worst.value} processes held one run's lock at the same time"
    assert taken.value >= TRIALS  # every trial had a winner (later ones may take it after a release)
    assert not any((tmp_path / f"t{t}" / ".lock").exists() for t in range(TRIALS))


def test_live_holder_is_seen_through_flock(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None
    (tmp_path / ".lock").write_text(f"{os.getpid()}\n")  # a pid alone (no flock) is not a live run
    assert lock_holder(tmp_path) is None and lock_pid(tmp_path) is None
    release = acquire_lock(tmp_path)
    assert lock_holder(tmp_path) == os.getpid()
    release()
    assert lock_holder(tmp_path) is None


@pytest.mark.parametrize(
    "contents", ["99999999999999999999999999999999\n", "-5\n", "pid\n", "", "\x1b[31m7\n", str(2**70)]
)
def test_odd_lock_contents_are_a_stale_lock(tmp_path: Path, contents: str) -> None:
    (tmp_path / ".lock").write_text(contents)
    release = acquire_lock(tmp_path)
    assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    release()


def test_lock_that_is_a_directory_or_a_symlink_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / ".lock").mkdir()
    with pytest.raises(CheckpointError, match=r"\.lock is a directory, not a lock file"):
        acquire_lock(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "victim").write_text("keep me")
    (other / ".lock").symlink_to(other / "victim")
    with pytest.raises(CheckpointError, match="is a symlink"):
        acquire_lock(other)
    assert (other / "victim").read_text() == "keep me"


def test_pid_alive_refuses_numbers_that_are_not_pids() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(2**70) and not pid_alive(0) and not pid_alive(-1)
