"""The app over a terminal that goes away (an SSH connection drops), end to end: the real app in a
fresh interpreter on a pseudo-terminal whose far end is then closed. It runs in its own session,
so no SIGHUP arrives (as under `make run`, where make holds the signal back): the app must notice
the hang-up itself, stop training with a checkpoint and exit, not spin on a core forever."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cli_harness import CORPUS, cli_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal semantics of Linux")

F2, F5 = b"\x1bOQ", b"\x1b[15~"


def drain(fd: int, seconds: float) -> bytes:
    """What the app wrote within `seconds` (its screen), so that its writes never block."""
    out, end = b"", time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


def events(run: Path) -> list[dict]:
    """The complete lines of the run's metrics.jsonl (a line being written is not one yet)."""
    path = run / "metrics.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


BACKSTOP_S = int(
    os.environ.get("TRM_TEST_BACKSTOP_S", "600")
)  # only against a hang: every wait below ends on an event, however loaded the machine


def wait_for(fd: int, what: str, done) -> bytes:
    """Drain the app's screen until `done(screen)` holds (an event: text drawn, a line logged)."""
    screen, end = b"", time.monotonic() + BACKSTOP_S
    while not done(screen):
        assert time.monotonic() < end, f"no {what} after {BACKSTOP_S} s: {screen[-2000:]!r}"
        screen += drain(fd, 0.2)
    return screen


@pytest.mark.parametrize("training", [False, True])
def test_a_dropped_terminal_stops_training_with_a_checkpoint_and_exits(
    tmp_path: Path, training: bool
) -> None:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    text = (CORPUS / "profiles" / "good.toml").read_text().replace('name = "good"', 'name = "long"')
    for key, value in (("max_steps", 2), ("checkpoint_every", 1), ("eval_every", 2)):
        text = text.replace(f"{key} = {value}", f"{key} = 100000")
    # eager: with 100000 steps compile = "auto" compiles, minutes of a loaded CPU before the first step
    text = text.replace("[train]", '[train]\ncompile = "off"', 1)
    (profiles / "long.toml").write_text(text)  # no periodic or best checkpoint: the stop writes the only one
    env = {**cli_env(tmp_path), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    args = ["--profiles-dir", str(profiles), "--runs-dir", str(runs), "--profile", "long", "--no-mouse"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trm_tui", *args], stdin=slave, stdout=slave, stderr=slave,
        env=env, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        wait_for(master, "app drawn", lambda screen: b"Profiles" in screen)  # up once its tabs are drawn
        if training:
            os.write(master, F2)
            wait_for(master, "Train tab", lambda screen: b"Start" in screen)  # its footer: f5 Start
            os.write(master, F5)
            wait_for(master, "first step", lambda _: any(e["kind"] == "step" for e in events(runs / "long")))
        os.close(master)  # the terminal goes away
        master = -1
        assert proc.wait(timeout=60) == 0
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if training:
        evs = events(runs / "long")
        assert evs[-1]["kind"] == "done" and evs[-1]["reason"] == "stopped"
        stop = [e for e in evs if e["kind"] == "checkpoint" and e["reason"] == "stop"]
        assert len(stop) == 1 and stop[0]["step"] == evs[-1]["step"] and Path(stop[0]["path"]).is_dir()
