"""End to end: the real app, real Trainer and Generator, driven through tmux like a user over SSH."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from trm_core.profile import set_value

pytestmark = [pytest.mark.tmux, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SIZE = (100, 30)

TINY_SETTINGS = {
    "name": "e2e",
    "model.hidden_size": 32,
    "model.num_heads": 2,
    "model.H_cycles": 1,
    "model.L_cycles": 1,
    "data.synthetic_size": 256,
    "data.val_size": 16,
    "data.max_length": 128,
    "train.batch_size": 8,
    # never ends on its own (the test stops it with F6), so a poll always sees the counter
    # mid-run, however fast the machine: a 40-step run could finish before the first poll
    "train.max_steps": 100000,
    "train.compile": "off",  # so long a run would compile on CPU (compile = "auto")
    "early_stopping.enabled": False,
    "train.warmup_steps": 2,
    "train.eval_every": 10,
    "train.checkpoint_every": 10,
    "train.log_every": 1,
    "generate.max_tokens": 8,
}


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


def _capture(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_screen(
    session: str, pattern: str, timeout: float, accept: Callable[[re.Match[str]], bool] = bool
) -> re.Match[str]:
    """The first match of `pattern` on the screen that `accept` takes, polled until `timeout`."""
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _capture(session)
        m = re.search(pattern, screen)
        if m and accept(m):
            return m
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} did not appear within {timeout:.0f} s; the screen:\n{screen}")


def _wait_step(session: str, minimum: int, timeout: float) -> int:
    """The Train tab's step counter, once it reads at least `minimum`."""
    m = _wait_screen(session, r"step (\d+)/100000", timeout, lambda m: int(m.group(1)) >= minimum)
    return int(m.group(1))


def _alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


@pytest.fixture
def session(tmp_path: Path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    name = f"trm-e2e-{tmp_path.name}"[:60].replace(".", "-")
    yield name
    if _alive(name):
        _tmux("kill-session", "-t", name)


def test_train_then_repl_then_quit(tmp_path: Path, session: str) -> None:
    pytest.importorskip("torch")
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    text = (REPO / "profiles" / "quickstart.toml").read_text(encoding="utf-8")
    for key, value in TINY_SETTINGS.items():
        text = set_value(text, key, value)
    (profiles / "e2e.toml").write_text(text, encoding="utf-8")
    rc_file = tmp_path / "rc"
    cmd = (
        f"cd {REPO} && HF_HUB_OFFLINE=1 {sys.executable} -m trm_tui --profiles-dir {profiles} "
        f"--runs-dir {runs} --profile e2e; echo $? > {rc_file}"
    )
    w, h = SIZE
    _tmux("new-session", "-d", "-s", session, "-x", str(w), "-y", str(h), cmd)
    _wait_screen(session, r"F2 Train", 30)
    _wait_screen(session, r"e2e\.toml", 15)

    _tmux("send-keys", "-t", session, "F2")
    _wait_screen(session, r"● new", 10)  # the run F5 writes has no history yet
    _tmux("send-keys", "-t", session, "F5")
    first = _wait_step(session, 1, 90)
    later = _wait_step(session, max(first + 1, 12), 120)  # the counter moves; step 10 was evaluated
    _tmux("send-keys", "-t", session, "F6")
    done = _wait_screen(session, r"done: stopped at step (\d+)", 60)
    assert int(done.group(1)) >= later
    assert (runs / "e2e" / "checkpoints" / "best").exists()

    _tmux("send-keys", "-t", session, "F3")
    _wait_screen(session, r"run e2e", 10)
    _tmux("send-keys", "-t", session, "-l", "Tom has 3 apples and buys 4 more.")
    _tmux("send-keys", "-t", session, "Enter")
    _wait_screen(session, r"Question: Tom has 3 apples and buys 4 more\.", 10)
    _wait_screen(session, r"done: \d+ tokens", 60)

    _tmux("send-keys", "-t", session, "C-q")
    end = time.monotonic() + 20
    while _alive(session) and time.monotonic() < end:
        time.sleep(0.2)
    assert not _alive(session), _capture(session)
    assert rc_file.read_text().strip() == "0"
