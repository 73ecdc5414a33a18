"""The training engine on tiny CPU models: supervision modes, exact resume, early stopping, NaN skips,
the run lock, and the `trm-tui train` command (safety check, exit codes, Ctrl+C)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trm_core.events import read_events
from trm_core.profile import parse_profile, set_value
from trm_core.runs.inference import load_for_inference
from trm_core.runs.lock import acquire_lock
from trm_core.runs.read import has_checkpoint, read_state, resolve_checkpoint
from trm_core.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

TINY = """\
name = "tiny"
[model]
hidden_size = 32
num_heads = 2
num_layers = 1
H_cycles = 2
L_cycles = 2
[data]
source = "synthetic"
synthetic_size = 120
synthetic_max_steps = 1
val_size = 16
max_length = 160
bucket_multiple = 16
[train]
batch_size = 16
epochs = 1
lr = 3e-3
warmup_steps = 2
supervision_steps = 1
eval_every = 4
checkpoint_every = 4
keep_last = 2
log_every = 1
[early_stopping]
patience = 3
"""


def tiny_text(**changes: object) -> str:
    text = TINY
    for key, value in changes.items():
        text = set_value(text, key.replace("__", "."), value)
    return text


def tiny_profile(**changes: object):
    return parse_profile(tiny_text(**changes), "<tiny>")


def train(profile, run_dir, *, stop_at: int | None = None, **kw):
    events = []
    trainer: Trainer

    def on_event(ev):
        events.append(ev)
        if stop_at is not None and ev.kind == "step" and ev.step == stop_at:
            trainer.request_stop()

    trainer = Trainer(profile, run_dir, on_event=on_event, **kw)
    done = trainer.run()
    return done, events, trainer


def of(events, kind):
    return [e for e in events if e.kind == kind]


def test_deep_and_accumulate_differ_in_steps_and_both_learn(tmp_path):
    results = {}
    for mode in ("deep", "accumulate"):
        p = tiny_profile(train__supervision=mode, train__supervision_steps=2, train__eval_every=100)
        done, events, tr = train(p, tmp_path / mode)
        assert done.reason == "finished", done.message
        steps = of(events, "step")
        results[mode] = (tr.batches_per_epoch, done.step, steps[0].loss, steps[-1].loss)
    nb = results["deep"][0]
    assert results["deep"][1] == 2 * nb  # a step per supervision pass
    assert results["accumulate"][1] == nb  # a step per batch
    for _, _, first, last in results.values():
        assert last < first - 0.3


@pytest.mark.parametrize("halting,S,stop", [("none", 2, 5), ("act", 3, 2)])
def test_exact_resume_matches_one_go(tmp_path, monkeypatch, halting, S, stop):
    # deep supervision and a stop mid-batch: resume must restore the carry (under ACT also which
    # tokens still run and exploration's minimum depths, drawn at the batch's first pass)
    if halting == "act":  # a Q-head that halts about half the tokens from the start
        import trm_core.model.lm as lm

        def build(cfg, vocab_size, _build=lm.build_model):
            model = _build(cfg, vocab_size)
            with torch.no_grad():
                model.q_head.weight.copy_(torch.linspace(-1, 1, cfg.hidden_size))
                model.q_head.bias.zero_()
            return model

        monkeypatch.setattr(lm, "build_model", build)
    p = tiny_profile(
        train__supervision_steps=S, train__max_steps=9, train__ema=True, train__eval_every=4,
        model__halting=halting, train__halt_exploration=0.5,
    )  # fmt: skip
    done_a, ev_a, _ = train(p, tmp_path / "a")
    assert done_a.reason == "finished"
    done_b1, ev_b1, _ = train(p, tmp_path / "b", stop_at=stop)
    assert done_b1.reason == "stopped" and done_b1.step == stop
    state = read_state(resolve_checkpoint(tmp_path / "b", "latest"))
    assert state["pass_in_batch"] == stop % S and state["has_carry"]
    done_b2, ev_b2, _ = train(p, tmp_path / "b")
    assert done_b2.reason == "finished" and of(ev_b2, "start")[0].resumed
    la = [e.loss for e in of(ev_a, "step")]
    lb = [e.loss for e in of(ev_b1, "step") + of(ev_b2, "step")]
    assert len(la) == len(lb) == 9
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) <= 1e-6
    va = [e.val_loss for e in of(ev_a, "eval")]
    vb = [e.val_loss for e in of(ev_b1, "eval") + of(ev_b2, "eval")]
    assert va == pytest.approx(vb, abs=1e-6)


def test_fresh_run_starts_the_curve_with_a_step0_evaluation(tmp_path):
    p = tiny_profile(train__max_steps=4, train__eval_every=2)
    done, events, _ = train(p, tmp_path / "r", stop_at=2)
    evals = of(events, "eval")
    assert [e.step for e in evals] == [0, 2]
    assert evals[1].val_loss < evals[0].val_loss  # the curve starts from the untrained model
    # step 0 is a reference point, not a judgement: early stopping saw one evaluation
    assert [e.step for e in of(events, "early_stop")] == [2]
    _, resumed, _ = train(p, tmp_path / "r")
    assert [e.step for e in of(resumed, "eval")] == [4]  # no second step-0 point on resume


def test_early_stopping_patience(tmp_path):
    # a vanishing lr: the validation loss never improves by min_delta, so patience runs out
    p = tiny_profile(
        train__lr=1e-9, train__eval_every=1, train__max_steps=50,
        early_stopping__patience=2, early_stopping__min_delta=0.01,
    )  # fmt: skip
    done, events, _ = train(p, tmp_path / "run")
    assert done.reason == "early-stopped"
    assert [e.state for e in of(events, "early_stop")] == ["improving", "waiting", "stopped"]
    assert done.step == 3
    assert resolve_checkpoint(tmp_path / "run", "best").name == "step-0000001"
    # every event is in metrics.jsonl, in order
    saved, _ = read_events(tmp_path / "run" / "metrics.jsonl")
    assert [e.kind for e in saved] == [e.kind for e in events]


def test_stop_below_target(tmp_path):
    p = tiny_profile(train__eval_every=2, train__max_steps=50, early_stopping__stop_below=50.0)
    done, events, _ = train(p, tmp_path / "run")
    assert done.reason == "early-stopped" and done.step == 2
    assert of(events, "early_stop")[-1].state == "target-reached"


def test_nan_losses_are_skipped_then_stop(tmp_path, monkeypatch):
    from trm_core.model.lm import CausalLM

    real = CausalLM.loss
    calls = {"n": 0}

    def flaky(self, hidden, labels, **kw):
        calls["n"] += 1
        out = real(self, hidden, labels, **kw)
        return out * math.nan if calls["n"] == 2 else out

    monkeypatch.setattr(CausalLM, "loss", flaky)
    done, events, _ = train(tiny_profile(train__max_steps=4, train__eval_every=100), tmp_path / "a")
    assert done.reason == "finished" and done.step == 4
    warnings = [e for e in of(events, "log") if e.level == "warning"]
    assert any("skipped the update" in w.message for w in warnings)

    monkeypatch.setattr(CausalLM, "loss", lambda self, h, y, **kw: real(self, h, y) * math.nan)
    done, events, _ = train(tiny_profile(train__max_bad_steps=3, train__eval_every=100), tmp_path / "b")
    assert done.reason == "error" and "3 non-finite losses in a row" in done.message
    assert done.step == 0 and not has_checkpoint(tmp_path / "b")


def test_lock_refuses_second_trainer_and_takes_over_stale(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    release = acquire_lock(run)  # held (a flock on another open file description) by "another trainer"
    done, _, _ = train(tiny_profile(train__max_steps=1), run)
    assert done.reason == "error" and f"pid {os.getpid()}" in done.message
    release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(f"{dead.pid}\n")
    done, events, _ = train(tiny_profile(train__max_steps=1), run)
    assert done.reason == "finished"
    assert any("stale lock" in e.message for e in of(events, "log"))
    assert not (run / ".lock").exists()  # released at the end


def test_trainer_refuses_incompatible_resume(tmp_path):
    train(tiny_profile(train__max_steps=1), tmp_path / "run")
    done, _, _ = train(tiny_profile(model__hidden_size=64, train__max_steps=2), tmp_path / "run")
    assert done.reason == "error" and "model.hidden_size" in done.message


def test_missing_data_leaves_no_run_dir(tmp_path):
    done, _, _ = train(tiny_profile(data__source="jsonl:/nonexistent/gsm8k"), tmp_path / "run")
    assert done.reason == "error" and done.message
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- CLI


def cli(*args: str, cwd: Path) -> tuple[int, str]:
    """`trm-tui train …` in-process, capturing what it prints."""
    import contextlib
    import io

    from trm_tui.__main__ import main

    out = io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["train", *args])
    finally:
        os.chdir(old)
    return code, out.getvalue()


def test_cli_safety_check_and_exit_codes(tmp_path):
    prof = tmp_path / "tiny.toml"
    prof.write_text(tiny_text(train__max_steps=2))
    code, out = cli("tiny.toml", cwd=tmp_path)
    assert code == 0, out
    assert has_checkpoint(tmp_path / "runs" / "tiny")

    code, out = cli("tiny.toml", cwd=tmp_path)  # identical profile: resumes (nothing left to do)
    assert code == 0 and "resuming" in out

    prof.write_text(tiny_text(train__max_steps=2, model__hidden_size=64))
    code, out = cli("tiny.toml", cwd=tmp_path)
    assert code == 2
    assert "model.hidden_size" in out and "incompatible" in out and "--fresh" in out and "tiny-2" in out

    prof.write_text(tiny_text(train__max_steps=3, train__lr=1e-3))
    code, out = cli("tiny.toml", cwd=tmp_path)
    assert code == 2 and "train.lr" in out and "changes-training" in out and "--yes" in out
    code, out = cli("tiny.toml", "--yes", cwd=tmp_path)
    assert code == 0, out
    assert read_state(resolve_checkpoint(tmp_path / "runs" / "tiny", "latest"))["step"] == 3

    prof.write_text(tiny_text(train__max_steps=3, train__lr=1e-3, description="renamed"))
    code, out = cli("tiny.toml", cwd=tmp_path)
    assert code == 0 and "harmless" in out

    prof.write_text(tiny_text(train__max_steps=1, model__hidden_size=64))
    code, out = cli("tiny.toml", "--fresh", cwd=tmp_path)
    assert code == 0, out
    assert has_checkpoint(tmp_path / "runs" / "tiny-2")


def test_cli_missing_data_one_sentence(tmp_path):
    (tmp_path / "bad.toml").write_text(tiny_text(data__source="jsonl:/nonexistent/gsm8k"))
    code, out = cli("bad.toml", cwd=tmp_path)
    assert code == 1 and "Traceback" not in out and "trm-tui:" in out
    assert not (tmp_path / "runs" / "tiny").exists()


def test_sigint_saves_a_resumable_checkpoint(tmp_path):
    # no periodic checkpoint can race the signal: the only save is the one the stop makes
    (tmp_path / "tiny.toml").write_text(
        tiny_text(
            train__max_steps=100000,
            train__eval_every=100000,
            train__checkpoint_every=100000,
            train__compile="off",  # so long a run would compile on CPU (compile = "auto")
        )  # fmt: skip
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trm_tui", "train", "tiny.toml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if metrics.exists() and '"kind": "step"' in metrics.read_text():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("training never started: " + proc.communicate()[0].decode())
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out
    run = tmp_path / "runs" / "tiny"
    state = read_state(resolve_checkpoint(run, "latest"))
    assert state["reason"] == "stop" and state["step"] >= 1
    last = [json.loads(line) for line in metrics.read_text().splitlines()][-1]
    assert last["kind"] == "done" and last["reason"] == "stopped"
    assert not (run / ".lock").exists()
    loaded = load_for_inference(run, "latest", device="cpu")
    assert loaded.step == state["step"]
    assert isinstance(next(loaded.model.parameters()), torch.Tensor)


def test_noop_resume_leaves_the_run_byte_for_byte_unchanged(tmp_path):
    """Issue 15.3: resuming a run that already reached its step budget trains nothing and writes nothing."""
    from tests.cli_harness import snapshot

    prof = tmp_path / "tiny.toml"
    prof.write_text(tiny_text(train__max_steps=3))
    code, out = cli("tiny.toml", cwd=tmp_path)
    assert code == 0, out
    run = tmp_path / "runs" / "tiny"
    before = snapshot(run)
    mtime = (run / "metrics.jsonl").stat().st_mtime_ns
    code, out = cli("tiny.toml", "--max-steps", "2", cwd=tmp_path)
    assert code == 0, out
    assert "already finished at step 3; nothing to train" in out and "N > 3" in out
    assert snapshot(run) == before and (run / "metrics.jsonl").stat().st_mtime_ns == mtime
    events: list = []
    done = Trainer(tiny_profile(train__max_steps=3), run, on_event=events.append).run()
    assert (
        done.reason == "nothing-to-train" and done.step == 3 and {e.kind for e in events} <= {"log", "done"}
    )
    assert snapshot(run) == before


def test_the_trainer_sets_every_attribute_in_init_and_saves_its_state_whole(tmp_path):
    from trm_core.training.schedule import EarlyStopper
    from trm_core.training.state import TrainState

    trainer = Trainer(tiny_profile(train__max_steps=5, train__eval_every=2), tmp_path / "r")
    before = set(vars(trainer))
    done = trainer.run()
    assert done.reason == "finished" and done.step == 5
    assert set(vars(trainer)) == before, f"set outside __init__: {set(vars(trainer)) - before}"
    # the checkpoint holds the whole TrainState: restoring it gives the trainer's own back
    state = read_state(resolve_checkpoint(tmp_path / "r", "latest"))
    es = trainer.profile.early_stopping
    restored = TrainState.restore(
        state, tmp_path, EarlyStopper(es.enabled, es.patience, es.min_delta, es.stop_below)
    )
    mine = trainer.state
    assert (restored.step, restored.pos, restored.last_eval_step, restored.saved_step, restored.bad_steps) == (
        mine.step, mine.pos, mine.last_eval_step, mine.saved_step, mine.bad_steps,
    )  # fmt: skip
    counters = ("best_val_loss", "best_step", "evals_since_best")  # (its label is re-graded on load)
    assert [getattr(restored.stopper, k) for k in counters] == [getattr(mine.stopper, k) for k in counters]
    assert restored.elapsed_s == mine.elapsed_s
