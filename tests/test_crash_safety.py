"""Faults injected into training, and what must survive them.

kill -9 while training and while a checkpoint is being written (at chosen and at random moments),
SIGINT / SIGTERM, a disk that fills up mid-save, NaN / inf losses, two trainers on one run. After
every fault the newest complete checkpoint loads, `latest` never names a half-written directory,
`--resume` finishes the run, and nothing that was saved before the fault is lost.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from trm_core.events import read_events
from trm_core.profile import load_profile, set_value
from trm_core.runs.inference import load_for_inference
from trm_core.runs.read import (
    checkpoints_dir,
    list_checkpoints,
    load_training_state,
    read_state,
    resolve_checkpoint,
)
from trm_core.training.trainer import Trainer

from .cli_harness import CORPUS, CliServer, assert_one_sentence, changes, copy_run, snapshot

CKPT_FILES = {"model.safetensors", "ema.safetensors", "optimizer.pt", "state.json", "profile.toml"}


def write_profile(dst: Path, **changes: Any) -> Path:
    """profiles/good.toml (tiny, EMA on, a checkpoint every step) with `train__max_steps=…`-style changes."""
    text = (CORPUS / "profiles" / "good.toml").read_text()
    text = set_value(text, "name", "crash")
    changes = {"train__compile": "off", **changes}  # 100,000-step runs would compile on CPU ("auto")
    for key, value in changes.items():
        text = set_value(text, key.replace("__", "."), value)
    dst.write_text(text)
    return dst


def endless_profile(tmp_path: Path) -> Path:
    """A run that trains until it is killed: no step limit, no evaluation or checkpoint on the way."""
    return write_profile(
        tmp_path / "crash.toml",
        train__max_steps=100_000,
        train__eval_every=100_000,
        train__checkpoint_every=100_000,
    )


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def latest_step(run: Path) -> int:
    steps = list_checkpoints(run)
    return steps[-1][0] if steps else 0


def has_step_event(run: Path) -> bool:
    events, _ = read_events(run / "metrics.jsonl", 0)
    return any(e.kind == "step" for e in events)


def assert_consistent(run: Path) -> int:
    """`latest` names a complete checkpoint that loads for inference and for training; returns its step."""
    root = checkpoints_dir(run)
    for _, d in list_checkpoints(run):
        assert CKPT_FILES <= {p.name for p in d.iterdir()}, f"{d} is incomplete"
    link = root / "latest"
    if link.is_symlink():  # a pointer is only moved once its target is complete
        target = root / os.readlink(link)
        assert (target / "state.json").is_file() and not target.name.startswith(".")
    latest = resolve_checkpoint(run, "latest")
    state = load_training_state(latest)
    loaded = load_for_inference(run, "latest", device="cpu")
    assert loaded.step == state.state["step"]
    best = resolve_checkpoint(run, "best")
    load_training_state(best)
    return loaded.step


def assert_no_leftovers(run: Path) -> None:
    root = checkpoints_dir(run)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert not (run / ".lock").exists()


# --------------------------------------------------------------------------- kill -9


def test_kill9_while_training_then_resume(cli_server: CliServer, tmp_path: Path) -> None:
    prof = write_profile(tmp_path / "crash.toml", train__max_steps=30, train__eval_every=1000)
    run = tmp_path / "run"
    proc = cli_server.start(["train", str(prof), "--run-dir", str(run)], cwd=tmp_path)
    wait_for(lambda: latest_step(run) >= 3, "a third checkpoint")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait().returncode == -signal.SIGKILL
    step = assert_consistent(run)
    assert step >= latest_step(run) - 1 >= 2  # `latest` lags only when killed between rename and pointer move
    assert (run / ".lock").read_text().strip() == str(proc.pid)  # the dead trainer's lock is still there

    done = cli_server.run(["train", str(prof), "--run-dir", str(run), "--resume"], cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    logs = [e.message for e in read_events(run / "metrics.jsonl", 0)[0] if e.kind == "log"]
    assert any("took over a stale lock" in m and str(proc.pid) in m for m in logs), logs
    assert any(m.startswith(f"resumed from {run}") for m in logs), logs
    assert assert_consistent(run) == 30
    assert_no_leftovers(run)


def test_kill9_at_random_moments(cli_server: CliServer, tmp_path: Path) -> None:
    """Ten SIGKILLs at random moments of a run that checkpoints every step (so many land mid-save)."""
    prof = write_profile(tmp_path / "crash.toml", train__max_steps=100_000, train__eval_every=3)
    run = tmp_path / "run"
    rng = random.Random(20261123)
    mid_save, pointer = 0, 0
    good: dict[str, str] = {}  # files of the checkpoints `latest` had reached before this kill
    for i in range(10):
        before = latest_step(run)
        args = ["train", str(prof), "--run-dir", str(run)] + (["--resume"] if before else [])
        proc = cli_server.start(args, cwd=tmp_path)
        wait_for(lambda b=before: latest_step(run) > b, f"progress after kill {i}")
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait().returncode == -signal.SIGKILL, proc.output()
        mid_save += any(p.name.startswith(".tmp-") for p in checkpoints_dir(run).iterdir())
        step = assert_consistent(run)
        # `latest` never goes back, and lags the newest complete checkpoint by one step at most
        # (a kill between its rename and the pointer move)
        assert step >= max(pointer, latest_step(run) - 1), (step, pointer, latest_step(run))
        pointer = step
        # files lost: a file of a checkpoint `latest` had reached, still kept (not pruned), now different
        now = snapshot(checkpoints_dir(run))
        kept = {k for k in good if k.split("/")[0] in now and k.split("/")[0] + "/" in now}
        assert [k for k in kept if now.get(k) != good[k]] == []
        good = {k: v for k, v in now.items() if k.startswith("step-") and int(k[5:12]) <= step}
    print(f"10 kills survived, {mid_save} of them in the middle of a checkpoint save")


# Run in the forked CLI child before `trm-tui train` starts: hang inside the SECOND checkpoint's
# save (the first is complete by then) at WHERE, after touching MARKER; the test then kills it.
_HANG_HOOK = """
import time
from pathlib import Path
from trm_core.runs import checkpoint as c
from trm_core.runs.read import has_checkpoint

def hang():
    Path(MARKER).write_text(WHERE)
    time.sleep(600)

if WHERE == "mid-file":
    real_save = c._save_weights
    def _save_weights(path, state_dict):
        real_save(path, state_dict)
        if has_checkpoint(RUN):
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])  # half a file on disk, as a crash mid-write leaves
            hang()
    c._save_weights = _save_weights
elif WHERE == "before-rename":
    real_fsync = c._fsync_path
    def _fsync_path(path):
        if has_checkpoint(RUN) and path.parent.name.startswith(".tmp-"):
            hang()
        real_fsync(path)
    c._fsync_path = _fsync_path
elif WHERE == "before-pointer":
    real_replace = c._replace_symlink
    def _replace_symlink(link, target_name):
        if target_name != "step-0000001":  # step 2 is renamed into place; `latest` not moved yet
            hang()
        real_replace(link, target_name)
    c._replace_symlink = _replace_symlink
"""


@pytest.mark.parametrize("where", ["mid-file", "before-rename", "before-pointer"])
def test_kill9_during_a_checkpoint_save(where: str, cli_server: CliServer, tmp_path: Path) -> None:
    prof = write_profile(tmp_path / "crash.toml", train__max_steps=3, train__eval_every=1000)
    run, marker = tmp_path / "run", tmp_path / "in-save"
    hook = f"RUN, MARKER, WHERE = {str(run)!r}, {str(marker)!r}, {where!r}\n" + _HANG_HOOK
    proc = cli_server.start(["train", str(prof), "--run-dir", str(run)], cwd=tmp_path, hook=hook)
    try:
        wait_for(marker.exists, f"the trainer to hang {where}")
        first = snapshot(resolve_checkpoint(run, "latest"))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait().returncode == -signal.SIGKILL
    assert resolve_checkpoint(run, "latest").name == "step-0000001"
    assert assert_consistent(run) == 1
    assert snapshot(resolve_checkpoint(run, "latest")) == first  # the good one is untouched
    leftovers = [p.name for p in checkpoints_dir(run).iterdir() if p.name.startswith(".tmp-")]
    assert bool(leftovers) == (where != "before-pointer")  # the half-written save is hidden, not pointed to

    done = cli_server.run(["train", str(prof), "--run-dir", str(run), "--resume"], cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert assert_consistent(run) == 3
    assert_no_leftovers(run)


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint(sig: int, code: int, cli_server: CliServer, tmp_path: Path) -> None:
    prof = endless_profile(tmp_path)
    run = tmp_path / "run"
    proc = cli_server.start(["train", str(prof), "--run-dir", str(run)], cwd=tmp_path)
    wait_for(lambda: has_step_event(run), "the first step")
    os.kill(proc.pid, sig)
    done = proc.wait()
    assert done.returncode == code, (done.stdout + done.stderr).decode()
    step = assert_consistent(run)
    state = read_state(resolve_checkpoint(run, "latest"))
    assert state["reason"] == "stop" and step >= 1
    assert_no_leftovers(run)
    events, _ = read_events(run / "metrics.jsonl", 0)
    assert events[-1].kind == "done" and events[-1].reason == "stopped"


# --------------------------------------------------------------------------- a failing disk


def _enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _half_then_enospc(tensors: dict[str, Any], filename: str, metadata: Any = None) -> None:
    Path(filename).write_bytes(b"\x00" * 64)  # a partial file, then the disk is full
    _enospc()


_real_replace = os.replace


def _pointer_replace_fails(src: Any, dst: Any, **kw: Any) -> None:
    if Path(src).name.startswith((".latest.tmp", ".best.tmp")):
        _enospc()
    _real_replace(src, dst, **kw)


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "fsync": lambda mp: mp.setattr(os, "fsync", _enospc),
    "safetensors-partial": lambda mp: mp.setattr("safetensors.torch.save_file", _half_then_enospc),
    "pointer-symlink": lambda mp: mp.setattr(os, "symlink", _enospc),
    "rename": lambda mp: mp.setattr(os, "rename", _enospc),
    "pointer-replace": lambda mp: mp.setattr(os, "replace", _pointer_replace_fails),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_disk_full_keeps_the_previous_checkpoint(
    fault: str,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = copy_run(trained_run, tmp_path / "run")
    before = snapshot(checkpoints_dir(run))
    prof = tmp_path / "good.toml"
    prof.write_text(set_value((CORPUS / "profiles" / "good.toml").read_text(), "train.max_steps", 4))
    FAULTS[fault](monkeypatch)
    from trm_tui.__main__ import main

    code = main(["train", str(prof), "--run-dir", str(run), "--resume", "--yes"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1
    line = assert_one_sentence(err)
    assert "could not write checkpoint" in line and "No space left on device" in line, line
    after = snapshot(checkpoints_dir(run))
    # what was saved is intact; a pointer may have moved only onto a complete checkpoint
    lost = [k for k in changes(before, after) if k in before and k not in ("latest", "best")]
    assert lost == []
    assert assert_consistent(run) in (2, 3)
    assert_no_leftovers(run)


# --------------------------------------------------------------------------- numerical faults


def _train_copy(trained: Path, tmp_path: Path, **changes: Any) -> tuple[Any, list[Any], Path]:
    run = copy_run(trained, tmp_path / "run")
    text = (CORPUS / "profiles" / "good.toml").read_text()
    for key, value in changes.items():
        text = set_value(text, key.replace("__", "."), value)
    prof = tmp_path / "good.toml"
    prof.write_text(text)
    events: list[Any] = []
    done = Trainer(load_profile(prof), run, on_event=events.append).run()
    return done, events, run


def test_inf_loss_once_is_skipped(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trm_core.model.lm import CausalLM

    real, calls = CausalLM.loss, {"n": 0}

    def once_inf(self: Any, hidden: Any, labels: Any, **kw: Any) -> Any:
        calls["n"] += 1
        out = real(self, hidden, labels, **kw)
        return out + math_inf() if calls["n"] == 1 else out

    monkeypatch.setattr(CausalLM, "loss", once_inf)
    done, events, run = _train_copy(trained_run, tmp_path, train__max_steps=4)
    assert done.reason == "finished" and done.step == 4, done.message
    warnings = [e.message for e in events if e.kind == "log" and e.level == "warning"]
    assert any("the loss is inf; skipped the update (1 of 5 in a row)" in w for w in warnings), warnings
    assert assert_consistent(run) == 4


def test_nan_gradient_norm_is_skipped(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = torch.nn.utils.clip_grad_norm_, {"n": 0}

    def once_nan(params: Any, max_norm: float, *a: Any, **kw: Any) -> torch.Tensor:
        calls["n"] += 1
        norm = real(params, max_norm, *a, **kw)
        return torch.tensor(float("nan")) if calls["n"] == 1 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", once_nan)
    done, events, _ = _train_copy(trained_run, tmp_path, train__max_steps=4)
    assert done.reason == "finished" and done.step == 4
    assert any("the gradient norm is nan" in e.message for e in events if e.kind == "log")


def test_bad_steps_in_a_row_stop_with_the_last_good_checkpoint(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trm_core.model.lm import CausalLM

    real = CausalLM.loss
    monkeypatch.setattr(CausalLM, "loss", lambda self, h, y, **kw: real(self, h, y) + math_inf())
    before = snapshot(trained_run / "checkpoints")
    done, events, run = _train_copy(trained_run, tmp_path, train__max_steps=10, train__max_bad_steps=3)
    assert done.reason == "error" and done.step == 2
    assert "training stopped: 3 non-finite losses in a row" in done.message
    assert "the last good checkpoint is" in done.message and "step-0000002" in done.message
    assert sum("skipped the update" in e.message for e in events if e.kind == "log") == 3
    assert changes(before, snapshot(run / "checkpoints")) == []  # nothing written, nothing lost
    assert assert_consistent(run) == 2
    assert not (run / ".lock").exists()


def math_inf() -> float:
    return float("inf")


# --------------------------------------------------------------------------- one writer per run


def test_second_trainer_on_a_run_refuses_naming_the_pid(cli_server: CliServer, tmp_path: Path) -> None:
    prof = endless_profile(tmp_path)
    run = tmp_path / "run"
    first = cli_server.start(["train", str(prof), "--run-dir", str(run)], cwd=tmp_path)
    try:
        wait_for(lambda: has_step_event(run), "the first trainer's first step")
        metrics_before = (run / "metrics.jsonl").read_bytes()
        second = cli_server.run(["train", str(prof), "--run-dir", str(run)], cwd=tmp_path)
        line = assert_one_sentence(second.stderr.decode())
        assert second.returncode == 1
        assert f"is being trained by another process (pid {first.pid})" in line, line
        # the second one wrote nothing into the first one's metrics
        assert (run / "metrics.jsonl").read_bytes().startswith(metrics_before)
        assert (run / ".lock").read_text().strip() == str(first.pid)
    finally:
        os.kill(first.pid, signal.SIGTERM)
    assert first.wait().returncode == 143
    assert_consistent(run)
    assert_no_leftovers(run)


def test_resume_after_a_torn_metrics_line(trained_run: Path, tmp_path: Path) -> None:
    """A crash mid-line must not swallow the next run's first event (it would glue onto the torn line)."""
    run = copy_run(trained_run, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "step": 3, "lo')
    done = Trainer(load_profile(CORPUS / "profiles" / "good.toml"), run, max_steps=3).run()
    assert done.reason == "finished"
    events, _ = read_events(run / "metrics.jsonl", 0)
    starts = [e for e in events if e.kind == "start"]
    assert len(starts) == 2 and starts[-1].resumed
    assert any(e.kind == "log" and e.message.startswith("resumed from") for e in events)
    assert events[-1].kind == "done" and events[-1].step == 3
