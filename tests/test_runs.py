"""trm_core.runs.listing: status of run directories from metrics.jsonl and the lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakes import FakeTrainer, TrainerScript
from trm_core.events import DoneEvent, StartEvent
from trm_core.profile import parse_profile
from trm_core.runs.listing import list_runs, run_info
from trm_core.runs.lock import acquire_lock


def _train(runs: Path, name: str, script: TrainerScript) -> Path:
    profile = parse_profile(f'name = "{name}"\n')
    FakeTrainer(profile, runs / name, script=script).run()
    return runs / name


def test_statuses(tmp_path: Path) -> None:
    _train(tmp_path, "done", TrainerScript(total_steps=20))
    _train(tmp_path, "plateau", TrainerScript(total_steps=100, plateau_at=10, patience=3))
    _train(tmp_path, "broken", TrainerScript(error_at=4))
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    start = StartEvent(
        run_dir="x", profile="p", step=0, total_steps=50, resumed=False, device="cpu", params=1
    )
    (stopped / "metrics.jsonl").write_text(
        start.to_json() + "\n" + DoneEvent(reason="stopped", step=7).to_json() + "\n"
    )
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text(start.to_json() + "\n")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (killed / ".lock").write_text(dead.stdout.strip())  # a stale lock: its process is gone
    live = tmp_path / "live"
    live.mkdir()
    (live / "metrics.jsonl").write_text(start.to_json() + "\n")
    release = acquire_lock(live)  # a held flock, as a live trainer holds it
    (tmp_path / "empty-dir").mkdir()  # not a run: ignored

    runs = {r.name: r for r in list_runs(tmp_path)}
    assert {n: r.status for n, r in runs.items()} == {
        "done": "finished",
        "plateau": "early-stopped",
        "broken": "failed",
        "stopped": "stopped",
        "killed": "interrupted",
        "live": "running",
    }
    assert runs["done"].step == 20 and runs["done"].total_steps == 20
    assert runs["plateau"].best_val_loss is not None and runs["plateau"].step == 25
    assert runs["broken"].message == "the fake data source is unreadable"
    assert runs["live"].pid == os.getpid() and runs["killed"].pid is None
    release()
    assert run_info(live).status == "interrupted"  # the flock is gone: the run is no longer live


def test_resumed_run_status_comes_from_the_last_session(tmp_path: Path) -> None:
    run = _train(tmp_path, "r", TrainerScript(total_steps=20, error_at=5))
    assert run_info(run).status == "failed"
    profile = parse_profile('name = "r"\n')
    FakeTrainer(profile, run, script=TrainerScript(total_steps=20)).run()
    info = run_info(run)
    assert info.status == "finished" and info.message == "" and info.step == 20


def test_missing_runs_dir_and_partial_line(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "nope") == []
    run = tmp_path / "partial"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "step", "step": 3')  # a writer mid-line
    assert run_info(run).status == "new"
