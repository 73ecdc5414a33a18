"""Snapshots of the main screens at 80×24 and 120×40, on fakes with fixed times and paths.

Update after an intended change with: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes import BASE_TIME, FakeGeneratorFactory, FakeTrainerFactory, TrainerScript, fake_backend
from tests.test_app import TINY, train_once, wait_for
from trm_tui.app import TrmApp
from trm_tui.panes.repl import ReplPane
from trm_tui.panes.runs import RunsPane
from trm_tui.panes.train import TrainPane
from trm_tui.screens.evaluation import EvalScreen
from trm_tui.screens.mismatch import MismatchModal
from trm_tui.screens.modals import ChoiceModal

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY, encoding="utf-8")
    (profiles / "wide.toml").write_text(
        TINY.replace('"tiny"', '"wide"').replace("hidden_size = 32", "hidden_size = 256"), encoding="utf-8"
    )
    return profiles, runs


def _app(dirs, trainer=None, generator=None) -> TrmApp:
    return TrmApp(
        profiles_dir=dirs[0],
        runs_dir=dirs[1],
        profile="tiny",
        backend=fake_backend(trainer=trainer, generator=generator),
    )


def _age_runs(runs: Path) -> None:
    """Fixed modification times: the Runs table shows ages against the fake clock."""
    for i, run in enumerate(sorted(runs.iterdir())):
        for p in [run, *run.rglob("*")]:
            if not p.is_symlink():
                os.utime(p, (BASE_TIME + 60 * i, BASE_TIME + 60 * i))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_profiles(snap_compare, dirs, size):
    async def ready(pilot):
        await wait_for(pilot, lambda: len(pilot.app.query_one("ProfilesPane").params) == 2)
        await pilot.pause(0.1)

    assert snap_compare(_app(dirs), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_train_mid_run(snap_compare, dirs, size):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=60, plateau_at=15, patience=4, pause_at=30))

    async def mid_run(pilot):
        await pilot.press("f2", "f5")
        pane = pilot.app.query_one(TrainPane)
        await wait_for(
            pilot, lambda: pane.history.last_step is not None and pane.history.last_step.step == 30
        )
        await pilot.pause(0.4)  # one coalesced redraw

    assert snap_compare(_app(dirs, trainer), terminal_size=size, run_before=mid_run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mismatch_modal(snap_compare, dirs, size):
    train_once(dirs, TrainerScript(total_steps=10))
    path = dirs[0] / "tiny.toml"
    path.write_text(
        path.read_text().replace("lr = 1e-3", "lr = 5e-4").replace("num_heads = 2", "num_heads = 4")
    )

    async def modal(pilot):
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, MismatchModal))
        await pilot.pause(0.1)

    assert snap_compare(_app(dirs), terminal_size=size, run_before=modal)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_repl_answer(snap_compare, dirs, size):
    train_once(dirs, TrainerScript(total_steps=10))

    async def answer(pilot):
        await pilot.press("f3")
        await pilot.pause(0.1)
        await pilot.press(*"Natalia sold 48 clips in April", "enter")
        pane = pilot.app.query_one(ReplPane)
        await pilot.pause(0.1)
        await wait_for(pilot, lambda: not pane.generating)
        pilot.app.query_one("#repl-prompt").cursor_blink = False  # a blinking cursor is not deterministic
        await pilot.pause(0.1)

    assert snap_compare(_app(dirs, generator=FakeGeneratorFactory()), terminal_size=size, run_before=answer)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs(snap_compare, dirs, size):
    train_once(dirs, TrainerScript(total_steps=30), TINY.replace('"tiny"', '"alpha"'))
    train_once(dirs, TrainerScript(total_steps=100, plateau_at=20), TINY.replace('"tiny"', '"beta"'))
    train_once(dirs, TrainerScript(error_at=7), TINY.replace('"tiny"', '"gamma"'))
    _age_runs(dirs[1])

    async def listed(pilot):
        await pilot.press("f4")
        pane = pilot.app.query_one(RunsPane)
        await wait_for(pilot, lambda: len(pane.runs) == 3)
        await pilot.pause(0.2)

    assert snap_compare(_app(dirs), terminal_size=size, run_before=listed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unsaved_changes_dialog(snap_compare, dirs, size):
    async def dialog(pilot):
        editor = pilot.app.query_one("ProfileEditor")
        editor.text_area.text = TINY.replace("hidden_size = 32", "hidden_size = 64")
        await pilot.pause(0.5)
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChoiceModal))
        await pilot.pause(0.1)

    assert snap_compare(_app(dirs), terminal_size=size, run_before=dialog)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_evaluation_screen(snap_compare, dirs, size):
    train_once(dirs, TrainerScript(total_steps=10))

    async def evaluated(pilot):
        await pilot.press("f4")
        await wait_for(pilot, lambda: len(pilot.app.query_one(RunsPane).runs) == 1)
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EvalScreen))
        await pilot.press("f5")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.record is not None)
        detail = screen.query_one("#eval-detail")
        await wait_for(pilot, lambda: "Mia has 3 boxes" in str(detail.content))
        await pilot.pause(0.5)  # the table's highlight and the toast settle

    assert snap_compare(_app(dirs), terminal_size=size, run_before=evaluated)
