"""Sweeps that never orphan their children and stay truthful under concurrency (issue 28.1), on a real
tiny sweep: `kill -9` of `sweep --jobs 2` mid-training leaves no trainer running, and the resume at
once finishes every run exactly once, evaluated; two sweep processes on one folder share the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_harness import CORPUS, REPO, cli_env
from trm_core.events import DoneEvent, StartEvent, read_events

GOOD = CORPUS / "profiles" / "good.toml"


def sweep_file(tmp: Path, name: str, seeds: int, steps: int) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nbase = "{GOOD}"\nseeds = {list(range(seeds))}\n[set]\n'
        f'"train.max_steps" = {steps}\n"train.ema" = false\n"train.checkpoint_every" = 5\n'
        f'"train.eval_every" = {steps}\n"train.log_every" = 1\n'
        '[eval]\nsplit = "test"\nlimit = 2\ncalculator = false\nmax_tokens = 4\nbatch_size = 2\n'
    )
    return path


def sweep_argv(file: Path, runs: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "trm_tui", "sweep", str(file), "--runs-dir", str(runs), "--jobs", str(jobs)]


def wait_for(cond, what: str, timeout: float = 180.0) -> None:
    """Poll for an event (a file, a line); the timeout is only a backstop against a hang."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def trainer_pid(run_dir: Path) -> int | None:
    try:
        text = (run_dir / ".lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stepped(run_dir: Path) -> bool:
    try:
        return '"kind": "step"' in (run_dir / "metrics.jsonl").read_text()
    except OSError:
        return False


def assert_each_run_finished_once_and_evaluated(root: Path, names: list[str], steps: int) -> None:
    manifest = json.loads((root / "sweep.json").read_text())
    assert {r["name"]: r["state"] for r in manifest["runs"]} == dict.fromkeys(names, "done")
    for name in names:
        events = read_events(root / name / "metrics.jsonl")[0]
        done = [e for e in events if isinstance(e, DoneEvent) and e.reason == "finished"]
        assert [d.step for d in done] == [steps], name  # trained to the end exactly once
        fresh = [e for e in events if isinstance(e, StartEvent) and not e.resumed]
        assert len(fresh) == 1, name  # never started over
        assert len(list((root / name / "eval").glob("*.json"))) == 1, name  # evaluated once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill9_of_a_jobs2_sweep_leaves_no_trainer_and_the_resume_finishes_each_run_once(
    tmp_path: Path,
) -> None:
    steps = 30
    file, runs = sweep_file(tmp_path, "k", 2, steps), tmp_path / "runs"
    root = runs / "k"
    env = cli_env(tmp_path)
    parent = subprocess.Popen(
        sweep_argv(file, runs, 2),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        names = ["seed0", "seed1"]
        wait_for(
            lambda: all(stepped(root / n) and trainer_pid(root / n) for n in names),
            "both trainers' first step",
        )
        pids = [trainer_pid(root / n) for n in names]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    # the resume starts at once, while the killed sweep's trainers may still be saving
    resume = subprocess.Popen(
        sweep_argv(file, runs, 2), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids if p) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if p and alive(p)], "trainers outlived the killed sweep"
        out = resume.communicate(timeout=300)[0].decode()
    finally:
        if resume.poll() is None:
            resume.kill()
    assert resume.returncode == 0, out[-3000:]
    for name in names:  # each trainer stopped with the sweep (an orphan would have trained on to the end)
        reasons = [
            e.reason for e in read_events(root / name / "metrics.jsonl")[0] if isinstance(e, DoneEvent)
        ]
        assert reasons == ["stopped", "finished"], (name, reasons)
    assert_each_run_finished_once_and_evaluated(root, names, steps)


def test_two_sweep_processes_on_one_folder_share_the_runs_and_sweep_json_tells_the_truth(
    tmp_path: Path,
) -> None:
    steps = 4
    file, runs = sweep_file(tmp_path, "two", 3, steps), tmp_path / "runs"
    env = cli_env(tmp_path)
    procs = [
        subprocess.Popen(
            sweep_argv(file, runs, 1), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert_each_run_finished_once_and_evaluated(runs / "two", ["seed0", "seed1", "seed2"], steps)
