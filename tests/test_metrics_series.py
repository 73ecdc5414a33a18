"""Series of any logged metric (trm_core.metrics.series) from the one event fold (RunHistory)."""

from __future__ import annotations

import math

import pytest

from trm_core.events import AccuracyEvent, EvalEvent, StartEvent, StepEvent
from trm_core.metrics.series import PlotSpec, available_metrics, ema, series, x_at
from trm_core.runs.history import RunHistory


def step(
    n: int, *, loss: float = 1.0, grad: float = 0.5, tokens: float = -1.0, tps: float = 100.0
) -> StepEvent:
    return StepEvent(n, 100, 1, loss, 1e-3, grad, tps, float(n), 0.0, tokens=tokens)


def start(n: int = 0, resumed: bool = False) -> StartEvent:
    return StartEvent("r", "p", n, 100, resumed, "cpu", 10)


def test_every_metric_is_kept_and_listed_in_order() -> None:
    h = RunHistory()
    h.extend([start(), EvalEvent(0, 3.0, 0.1), step(1), step(2), AccuracyEvent(2, 0.25, 1, 4)])
    assert available_metrics(h) == [
        "loss",
        "grad_norm",
        "lr",
        "tokens_per_s",
        "val_loss",
        "val_token_acc",
        "accuracy",
    ]
    assert h.train == [(1, 1.0), (2, 1.0)] and h.val == [(0, 3.0)]
    assert series(h, PlotSpec("accuracy")) == [(2.0, 0.25)]
    assert series(h, PlotSpec("grad_norm")) == [(1.0, 0.5), (2.0, 0.5)]


def test_tokens_axis_uses_the_logged_count_and_survives_a_resume() -> None:
    h = RunHistory()
    h.extend([start(), step(10, tokens=1000.0), step(20, tokens=2000.0), EvalEvent(15, 2.0, 0.2)])
    # the eval at step 15 lies halfway between the logged steps 10 and 20
    assert series(h, PlotSpec("val_loss", x="tokens")) == [(1500.0, 2.0)]
    assert x_at(h, "tokens", 5) == 500.0  # before the first logged step: from (0, 0)
    # a resume from step 20: the new session counts its tokens from 0 again
    h.extend([start(20, resumed=True), step(30, tokens=1000.0)])
    assert [x for x, _ in series(h, PlotSpec("loss", x="tokens"))] == [1000.0, 2000.0, 3000.0]
    assert [x for x, _ in series(h, PlotSpec("loss", x="wall"))] == [10.0, 20.0, 30.0]


def test_a_fresh_start_forgets_the_old_curves() -> None:
    h = RunHistory()
    h.extend([start(), step(1, tokens=5.0), AccuracyEvent(1, 0.5, 1, 2), start(), step(1, tokens=7.0)])
    assert h.samples.get("accuracy") == [] and series(h, PlotSpec("loss", x="tokens")) == [(7.0, 1.0)]


def test_older_logs_without_a_token_count_estimate_it_from_tokens_per_s() -> None:
    h = RunHistory()
    h.extend([start(), step(1, tps=100.0), step(2, tps=300.0)])  # elapsed 1 s, 2 s
    assert [x for x, _ in series(h, PlotSpec("loss", x="tokens"))] == [100.0, 400.0]


def test_smoothing_is_a_debiased_ema_and_skips_non_finite_values() -> None:
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no ramp from 0
    assert ema([0.0, 10.0], 0.5) == pytest.approx([0.0, 10.0 * 0.5 / 0.75])
    h = RunHistory()
    h.extend([start(), step(1, grad=1.0), step(2, grad=math.nan), step(3, grad=3.0)])
    assert series(h, PlotSpec("grad_norm", smoothing=0.5)) == [(1.0, 1.0), (3.0, pytest.approx(1.75 / 0.75))]


def test_the_spec_cycles_and_refuses_bad_values() -> None:
    s = PlotSpec()
    assert s.is_default and s.label == "train loss vs step"
    assert s.next_x().x == "tokens" and s.next_x().next_x().next_x() == s
    assert s.next_smoothing().smoothing == 0.6
    assert s.next_metric(["loss", "grad_norm"]).metric == "grad_norm"
    assert s.next_metric(["accuracy"]).metric == "accuracy"  # not there: the first available
    assert PlotSpec("grad_norm", "tokens", 0.9).label == "grad norm vs tokens · ema 0.9"
    with pytest.raises(ValueError):
        PlotSpec(x="epochs")
    with pytest.raises(ValueError):
        PlotSpec(smoothing=1.0)


def test_headline_only_history_keeps_no_points() -> None:
    h = RunHistory(points=False)
    h.extend([start(), step(1), EvalEvent(1, 2.0, 0.1)])
    assert h.samples == {} and h.clock == [] and h.best_val_loss == 2.0
