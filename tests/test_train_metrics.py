"""What a real tiny training logs beyond the loss: answer accuracy during training (without touching
the losses), the token count behind the tokens axis, and the TensorBoard mirror read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_train import tiny_profile, train
from trm_core.events import AccuracyEvent, StepEvent, read_events
from trm_core.metrics.series import PlotSpec, series
from trm_core.runs.history import RunHistory


def close(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """TensorBoard stores float32: the same steps, the values to float32 precision."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx(
        [v for _, v in want], rel=1e-6
    )


def run(tmp_path: Path, name: str, **changes: object):
    profile = tiny_profile(train__max_steps=8, generate__max_tokens=12, **changes)
    done, events, _ = train(profile, tmp_path / name)
    assert done.reason == "finished", done.message
    return events


def test_accuracy_during_training_is_logged_and_leaves_the_losses_bit_identical(tmp_path):
    plain = run(tmp_path, "plain")
    probed = run(tmp_path, "probed", train__eval_accuracy_problems=3)
    key = [(e.step, e.loss, e.grad_norm, e.lr, e.tokens) for e in plain if isinstance(e, StepEvent)]
    assert key == [(e.step, e.loss, e.grad_norm, e.lr, e.tokens) for e in probed if isinstance(e, StepEvent)]
    assert [(e.step, e.val_loss) for e in plain if e.kind == "eval"] == [
        (e.step, e.val_loss) for e in probed if e.kind == "eval"
    ]
    acc = [e for e in probed if isinstance(e, AccuracyEvent)]
    assert [(e.step, e.total) for e in acc] == [(4, 3), (8, 3)] and all(0 <= e.accuracy <= 1 for e in acc)
    assert not any(isinstance(e, AccuracyEvent) for e in plain)
    # in metrics.jsonl, and plottable against tokens
    logged, _ = read_events(tmp_path / "probed" / "metrics.jsonl")
    assert [e.step for e in logged if isinstance(e, AccuracyEvent)] == [4, 8]
    h = RunHistory.read(tmp_path / "probed")
    pts = series(h, PlotSpec("accuracy", x="tokens"))
    steps = {e.step: e.tokens for e in probed if isinstance(e, StepEvent)}
    assert [x for x, _ in pts] == [steps[4], steps[8]] and steps[4] > 0


def test_step_events_count_tokens(tmp_path):
    events = run(tmp_path, "t")
    tokens = [e.tokens for e in events if isinstance(e, StepEvent)]
    assert tokens[0] > 0 and tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_tensorboard_mirror_reads_back(tmp_path):
    pytest.importorskip("tensorboard", reason="the `tensorboard` extra is not installed")
    from trm_core.metrics.tensorboard import read_scalars

    events = run(tmp_path, "tb", train__tensorboard=True, train__eval_accuracy_problems=2)
    scalars = read_scalars(tmp_path / "tb" / "tensorboard")
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert close(scalars["train/loss"], [(e.step, e.loss) for e in steps])
    assert close(scalars["train/grad_norm"], [(e.step, e.grad_norm) for e in steps])
    vals = [(e.step, e.val_loss) for e in events if e.kind == "eval"]
    assert close(scalars["val/loss"], vals)
    accs = [(e.step, e.accuracy) for e in events if isinstance(e, AccuracyEvent)]
    assert close(scalars["val/accuracy"], accs) and len(accs) == 2


def test_tensorboard_without_the_package_is_one_sentence_before_training(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    done, events, _ = train(tiny_profile(train__max_steps=2, train__tensorboard=True), tmp_path / "r")
    assert done.reason == "error" and "pip install 'trm-tui[tensorboard]'" in done.message
    assert not any(isinstance(e, StepEvent) for e in events)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
