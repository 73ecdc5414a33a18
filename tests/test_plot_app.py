"""The chart's metric/axis/smoothing keys in the Train tab and the plot screen over marked runs (Pilot)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Input

from tests.fakes import FakeTrainerFactory, TrainerScript
from tests.test_app import TINY, make_app, train_once, wait_for
from trm_core.metrics.series import PlotSpec
from trm_tui.panes.train import TrainPane
from trm_tui.screens.modals import NameModal
from trm_tui.screens.plot import PlotScreen
from trm_tui.widgets.loss_chart import LossChart

SIZE = (80, 24)
pytestmark = pytest.mark.anyio


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY, encoding="utf-8")
    return profiles, runs


def shown(widget) -> str:
    """What a widget renders, as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.render())
    return console.export_text()


async def test_train_chart_cycles_metric_axis_and_smoothing(dirs):
    app = make_app(dirs, FakeTrainerFactory(TrainerScript(total_steps=40)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: app.query_one(TrainPane).state == "finished")
        chart = app.query_one("#train-chart", LossChart)
        assert "━ train" in shown(chart) and "step 40" in shown(chart)  # the loss chart, as before
        chart.focus()
        await pilot.press("m")  # loss -> grad norm
        assert chart.spec == PlotSpec("grad_norm")
        await pilot.press("x", "s", "s")
        await pilot.pause()
        assert chart.spec == PlotSpec("grad_norm", "tokens", 0.9)
        text = shown(chart)
        assert "grad norm vs tokens · ema 0.9" in text
        # the fake logs 12,345 tokens/s and one second per step: 40 steps ≈ 494k tokens
        axis = next(line for line in text.splitlines() if "└" in line)
        assert axis.rstrip().endswith("tokens 494k")  # the x axis' right end
        # lr, tokens/s, val loss, val token accuracy, then round to the loss: train and val again
        await pilot.press("m", "m", "m", "m", "m")
        assert chart.spec.metric == "loss" and "━ train" in shown(chart)


async def test_plot_screen_overlays_marked_runs_and_exports(dirs):
    profiles, runs = dirs
    train_once(dirs)
    train_once(dirs, text=TINY.replace('"tiny"', '"zeta"'))
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.query_one("#runs-table").row_count == 2)
        await pilot.press("space", "space", "p")
        await wait_for(pilot, lambda: isinstance(app.screen, PlotScreen))
        screen = app.screen
        assert sorted(label for label, _ in screen.histories) == ["tiny", "zeta"]
        await pilot.press("m", "x")  # grad norm against tokens, both runs
        await pilot.pause()
        assert screen.chart.spec == PlotSpec("grad_norm", "tokens")
        assert all(len(line.points) == 40 for line in screen.chart.lines())
        legend = shown(screen.query_one("#plot-legend"))
        assert "tiny" in legend and "zeta" in legend
        assert "grad norm vs tokens" in shown(screen.chart)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, NameModal))
        app.screen.query_one("#name", Input).value = "gn.csv"
        await pilot.press("enter")
        out = runs.parent / "plots" / "gn.csv"
        await wait_for(pilot, out.is_file)
        rows = list(csv.DictReader(out.open()))
        assert {r["run"] for r in rows} == {"tiny", "zeta"} and len(rows) == 80
        assert float(rows[0]["grad_norm"]) == 1.0 and float(rows[-1]["tokens"]) > 0
        await pilot.press("escape")
        assert not isinstance(app.screen, PlotScreen)
