"""An early-stopped run: resuming it trains nothing and changes none of its files; extending it
(`Trainer(extend_patience=N)`, the app's "continue past early stopping") trains on from its last
checkpoint with a patience of its own."""

from __future__ import annotations

from .test_train import of, tiny_profile, train


def stopped_early(tmp_path):
    p = tiny_profile(
        train__lr=1e-9, train__eval_every=1, train__max_steps=50,
        early_stopping__patience=2, early_stopping__min_delta=0.01,
    )  # fmt: skip
    run = tmp_path / "run"
    done, _, _ = train(p, run)
    assert done.reason == "early-stopped" and done.step == 3
    return run


def snapshot(run):
    return {
        p.relative_to(run): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_resuming_an_early_stopped_run_changes_none_of_its_files(tmp_path):
    run = stopped_early(tmp_path)
    before = snapshot(run)
    raised = tiny_profile(
        train__lr=1e-9, train__eval_every=1, train__max_steps=80,
        early_stopping__patience=2, early_stopping__min_delta=0.01,
    )  # fmt: skip
    done, events, _ = train(raised, run)  # "Resume anyway" with a raised max_steps
    assert (
        done.reason == "nothing-to-train"
        and "already stopped early at step 3; nothing to train" in done.message
    )
    assert events[-1].kind == "done" and not of(events, "step")
    assert snapshot(run) == before  # profile.toml was rewritten to max_steps = 80 before


def test_extending_an_early_stopped_run_trains_on_with_its_own_patience(tmp_path):
    run = stopped_early(tmp_path)
    p = tiny_profile(
        train__lr=1e-9, train__eval_every=1, train__max_steps=50,
        early_stopping__patience=2, early_stopping__min_delta=0.01,
    )  # fmt: skip
    done, events, _ = train(p, run, extend_patience=4)
    assert of(events, "start")[0].resumed and of(events, "start")[0].step == 3
    assert [e.state for e in of(events, "early_stop")] == ["waiting", "waiting", "waiting", "stopped"]
    assert done.reason == "early-stopped" and done.step == 7
