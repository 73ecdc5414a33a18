"""Checkpoints: round trip, retention and pointers, refusal of corrupt / foreign / newer / malicious
files, failed writes that leave the previous checkpoint intact, the run lock, the safety check."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trm_core.errors import CheckpointError
from trm_core.model.lm import build_model
from trm_core.profile import parse_profile
from trm_core.runs.checkpoint import save_checkpoint
from trm_core.runs.inference import load_for_inference
from trm_core.runs.lock import acquire_lock
from trm_core.runs.read import (
    FORMAT_VERSION,
    check_run_dir,
    list_checkpoints,
    load_training_state,
    propose_fresh_run_dir,
    read_state,
    resolve_checkpoint,
    saved_profile,
)

from .cli_harness import copy_run
from .test_train import tiny_profile, tiny_text, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of 12 steps: checkpoints every 4 steps and at evaluations, keep_last 2, EMA on."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    p = tiny_profile(train__max_steps=12, train__checkpoint_every=4, train__eval_every=6, train__ema=True)
    done, _, _ = train(p, run)
    assert done.reason == "finished", done.message
    return run


def test_retention_and_pointers(trained):
    steps = [s for s, _ in list_checkpoints(trained)]
    best = resolve_checkpoint(trained, "best")
    latest = resolve_checkpoint(trained, "latest")
    assert latest.name == "step-0000012"
    assert steps[-2:] == [8, 12] and set(steps) <= {8, 12, int(best.name[5:])}
    for which in ("best", "latest"):
        link = trained / "checkpoints" / which
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert not list((trained / "checkpoints").glob(".tmp-*"))
    assert (trained / "profile.toml").read_text() == (latest / "profile.toml").read_text()
    assert resolve_checkpoint(trained, "12") == latest
    with pytest.raises(CheckpointError, match="no checkpoint at step 3"):
        resolve_checkpoint(trained, "3")


def test_round_trip_weights_equal(trained):
    latest = resolve_checkpoint(trained, "latest")
    raw = load_training_state(latest)
    loaded = load_for_inference(trained, "latest", ema=False, device="cpu")
    assert loaded.step == 12 and loaded.tokenizer.spec == "byte"
    sd = loaded.model.state_dict()
    assert sd.keys() == raw.model.keys()
    assert all(torch.equal(sd[k], raw.model[k]) for k in sd)
    ema = load_for_inference(trained, "latest", ema=True, device="cpu")
    assert not torch.equal(ema.model.embed_tokens.weight, loaded.model.embed_tokens.weight)
    assert raw.optimizer["optimizer"]["state"]  # Adam moments came back through weights_only
    assert isinstance(raw.optimizer["rng"]["torch"], torch.Tensor)


def test_tied_weights_saved_once_and_restored_tied(tmp_path):
    p = tiny_profile()
    model = build_model(p.model, 258)
    save_checkpoint(
        tmp_path, 1, model_state=model.state_dict(), ema_state=None, optimizer_payload={},
        state={}, profile_text=tiny_text(), is_best=True, keep_last=1,
    )  # fmt: skip
    st = load_training_state(tmp_path / "checkpoints" / "step-0000001")
    other = build_model(p.model, 258)
    other.load_state_dict(st.model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    )


def _copy(trained: Path, tmp_path: Path) -> Path:
    return copy_run(trained, tmp_path / "run")


def test_corrupt_missing_and_newer_are_refused(trained, tmp_path):
    run = _copy(trained, tmp_path)
    latest = resolve_checkpoint(run, "latest")
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or corrupted"):
        load_for_inference(run, "latest", ema=False, device="cpu")
    weights.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_training_state(latest)
    (latest / "optimizer.pt").write_bytes(b"not a zip")
    state = json.loads((latest / "state.json").read_text())
    state["format_version"] = FORMAT_VERSION + 1
    (latest / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="newer trm-tui"):
        load_for_inference(run, "latest", device="cpu")
    (latest / "state.json").write_text("{trunc")
    with pytest.raises(CheckpointError, match="state.json is truncated or corrupted"):
        read_state(latest)


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_malicious_optimizer_pickle_is_refused(trained, tmp_path):
    run = _copy(trained, tmp_path)
    latest = resolve_checkpoint(run, "latest")
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Evil(str(marker))}, latest / "optimizer.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_training_state(latest)
    assert not marker.exists()
    done, _, _ = train(tiny_profile(train__max_steps=14), run)  # a trainer resuming it refuses too
    assert done.reason == "error" and "optimizer.pt" in done.message
    assert not marker.exists()


def test_failed_write_keeps_previous_checkpoint(trained, tmp_path, monkeypatch):
    run = _copy(trained, tmp_path)
    before = resolve_checkpoint(run, "latest")

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(
            run, 99, model_state={"w": torch.zeros(2)}, ema_state=None, optimizer_payload={},
            state={}, profile_text="", is_best=True, keep_last=1,
        )  # fmt: skip
    assert resolve_checkpoint(run, "latest") == before
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert not (run / "checkpoints" / "step-0000099").exists()
    # the trainer turns it into an error DoneEvent with that sentence
    done, events, _ = train(tiny_profile(train__max_steps=13, train__checkpoint_every=1), run)
    assert done.reason == "error" and "could not write checkpoint" in done.message
    assert any(e.kind == "log" and e.level == "error" for e in events)
    assert resolve_checkpoint(run, "latest") == before


def test_lock(tmp_path):
    release = acquire_lock(tmp_path)
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
        acquire_lock(tmp_path)
    release()
    assert not (tmp_path / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid}\n")
    logs: list[str] = []
    release = acquire_lock(tmp_path, log=logs.append)
    assert logs and "stale" in logs[0]
    release()


def test_safety_check_and_fresh_dir(trained, tmp_path):
    assert check_run_dir(tiny_profile(), tmp_path / "nothing") is None
    saved = saved_profile(trained)
    assert check_run_dir(saved, trained) == []
    changed = parse_profile(tiny_text(model__hidden_size=64, train__lr=1e-3, description="x"))
    grades = {m.key: m.severity for m in check_run_dir(changed, trained)}
    assert grades["model.hidden_size"] == "incompatible"
    assert grades["train.lr"] == "changes-training"
    assert grades["description"] == "harmless"
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart-2").mkdir()
    assert propose_fresh_run_dir(tmp_path / "runs" / "quickstart") == tmp_path / "runs" / "quickstart-3"
    assert propose_fresh_run_dir(tmp_path / "runs" / "other") == tmp_path / "runs" / "other-2"
