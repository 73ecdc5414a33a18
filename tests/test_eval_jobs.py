"""Evaluation is a job of the app's one job owner (trm_tui/jobs.py), as training and sweeps are: the
Evaluation screen asks `app.jobs` to run it and hears it on `jobs.eval_news`; the owner's stop, quit
and hang-up end it the way they end training. Real code on the tiny trained run; a gate holds the
evaluation at its first progress report, so every check happens mid-evaluation."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from .test_app_jobs import until

pytestmark = pytest.mark.anyio


def gated_backend(gate: threading.Event, reached: threading.Event) -> Any:
    """The real backend, its evaluations and depth studies waiting at each progress report until
    `gate` opens (`reached` says the first report came: the model is loaded, a batch answered)."""
    from trm_tui.backend import Backend

    real = Backend()

    def held(progress: Any) -> Any:
        def report(*args: Any) -> None:
            reached.set()
            gate.wait(60)
            progress(*args)

        return report

    def evaluate_run(run_dir: Path, *, progress: Any, **kw: Any) -> Any:
        return real.evaluate_run(run_dir, progress=held(progress), **kw)

    def depth_study(run_dir: Path, *, progress: Any, **kw: Any) -> Any:
        return real.depth_study(run_dir, progress=held(progress), **kw)

    return dataclasses.replace(real, evaluate_run=evaluate_run, depth_study=depth_study)


def setup(tmp_path: Path, trained_run: Path) -> tuple[Any, Path, threading.Event, threading.Event]:
    from trm_tui.app import TrmApp

    run = tmp_path / "runs" / "tiny"
    shutil.copytree(trained_run, run)
    gate, reached = threading.Event(), threading.Event()
    app = TrmApp(
        profiles_dir=tmp_path / "profiles", runs_dir=run.parent, backend=gated_backend(gate, reached)
    )
    return app, run, gate, reached


async def start(app: Any, pilot: Any, run: Path, key: str) -> Any:
    """Open the run's Evaluation screen and start an evaluation (f5) or a depth study (f7) on 4 problems."""
    from textual.widgets import Input

    from trm_tui.screens.evaluation import EvalScreen

    app.open_evaluation(run)
    await until(lambda: isinstance(app.screen, EvalScreen) and bool(app.screen.query("#eval-H")))
    await pilot.pause()
    screen = app.screen
    screen.query_one("#eval-limit", Input).value = "4"
    screen.query_one("#eval-H", Input).value = "1,2"
    await pilot.press(key)
    return screen


def written(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob("*") if p.parent.name == "eval" or p.name == "depth.json")


async def test_the_job_owner_runs_the_evaluation_and_its_stop_ends_it(
    tmp_path: Path, trained_run: Path
) -> None:
    from textual.widgets import Static

    from trm_core.evaluation.record import latest_eval
    from trm_tui.screens.evaluation import EvalScreen

    app, run, gate, reached = setup(tmp_path, trained_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(app, pilot, run, "f5")
        assert app.jobs.evaluating == "evaluation" and app.jobs.evaluation.run_dir == run
        assert app.jobs.busy is None  # a training may still start beside it, as before
        assert screen.running
        assert [w.node for w in app.workers if w.group == "evaluate"] == [app.jobs]  # not the screen's
        await until(reached.is_set)
        assert app.jobs.stop() is True
        gate.set()
        await until(lambda: app.jobs.evaluation is None and not screen.running)
        assert "evaluation stopped" in str(screen.query_one("#eval-summary", Static).render())
        assert isinstance(app.screen, EvalScreen) and latest_eval(run) is None
        assert app.jobs.stop() is False and app.is_running  # nothing runs now; no quit was asked
        await pilot.press("f5")  # a new one runs to its end and is shown
        await until(lambda: screen.record is not None)
        assert app.jobs.evaluation is None
    record = latest_eval(run)
    assert record is not None and record["n"] == 4


@pytest.mark.parametrize(
    "key, how",
    [("f5", "quit"), ("f7", "quit"), ("f5", "hang-up"), ("f5", "keep")],
    ids=["evaluation-quit", "depth-study-quit", "evaluation-hang-up", "evaluation-quit-cancelled"],
)
async def test_quitting_while_an_evaluation_runs_asks_then_stops_it_like_training(
    tmp_path: Path, trained_run: Path, key: str, how: str
) -> None:
    from textual.widgets import Static

    from trm_tui.screens.evaluation import EvalScreen
    from trm_tui.screens.modals import ConfirmModal

    app, run, gate, reached = setup(tmp_path, trained_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await start(app, pilot, run, key)
        assert app.jobs.evaluating == {"f5": "evaluation", "f7": "depth study"}[key]
        await until(reached.is_set)
        if how == "hang-up":
            app.jobs.hang_up()  # what the app's hang-up does, less its os._exit (trm_tui/hangup.py)
        else:
            await pilot.press("ctrl+q")
            await until(lambda: isinstance(app.screen, ConfirmModal))
            question = str(app.screen.query_one(".question", Static).render())
            expected = {"f5": "An evaluation is running", "f7": "A depth study is running"}[key]
            assert question.startswith(expected)
            await pilot.click("#no" if how == "keep" else "#yes")
        assert app.is_running  # not before the evaluation has ended
        gate.set()
        if how == "keep":
            await until(lambda: not screen.running)
            assert isinstance(app.screen, EvalScreen) and screen.record is not None
            assert app.jobs.evaluation is None and app.is_running
        else:
            await until(lambda: not app.is_running, timeout=60)
    assert app.jobs.evaluation is None
    if how == "keep":
        assert written(run) == ["val-step2.json", "val-step2.jsonl"]
    else:
        assert written(run) == []  # stopped after its first batch: no record, no depth.json


async def test_closing_the_evaluation_while_training_runs_stops_the_evaluation_only(tmp_path: Path) -> None:
    """The screen once cancelled `self.workers`, which are all the app's workers: the training too."""
    from tests.fakes import FakeEvaluator, FakeTrainerFactory, TrainerScript, fake_backend
    from tests.test_app import TINY, train_once
    from trm_tui.app import TrmApp
    from trm_tui.panes.train import TrainPane
    from trm_tui.screens.evaluation import EvalScreen

    dirs = tmp_path / "profiles", tmp_path / "runs"
    dirs[0].mkdir()
    (dirs[0] / "tiny.toml").write_text(TINY, encoding="utf-8")
    other = train_once(dirs, TrainerScript(total_steps=10), text=TINY.replace('"tiny"', '"zeta"'))
    trainer = FakeTrainerFactory(TrainerScript(total_steps=100, pause_at=5))
    evaluator = FakeEvaluator(gate=threading.Event())
    backend = fake_backend(trainer=trainer, evaluator=evaluator)
    app = TrmApp(profiles_dir=dirs[0], runs_dir=dirs[1], profile="tiny", backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await until(lambda: pane.state == "training", timeout=10)
        app.open_evaluation(other)
        await until(
            lambda: isinstance(app.screen, EvalScreen) and bool(app.screen.query("#eval-H")), timeout=10
        )
        await pilot.pause()
        await pilot.press("f5")
        await until(lambda: bool(evaluator.calls), timeout=10)
        assert app.jobs.busy == "training" and app.jobs.evaluating == "evaluation"
        await pilot.press("escape")
        evaluator.gate.set()
        await until(lambda: app.jobs.evaluation is None, timeout=10)
        await pilot.pause(0.2)
        assert app.jobs.busy == "training" and pane.state == "training"
        assert not trainer.created[0].stopped_via_request
        app.jobs.stop()
        await until(lambda: pane.state != "training", timeout=10)
    assert trainer.created[0].stopped_via_request
    assert not (other / "eval").exists()  # the evaluation ended at its next progress report
