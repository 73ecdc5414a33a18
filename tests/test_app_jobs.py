"""The app's jobs and the Runs tab at 80×24: a sweep seen before it starts, stopped from the Train
tab's F6 and the palette, its runs named short, sorted, filtered, hidden and trashed; profiles added
on disk appear without a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from .test_experiments import GOOD, SWEEP, build_swept


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_swept(tmp_path_factory)


async def until(
    cond, timeout: float = 180.0
) -> None:  # a backstop against a hang: the first real step can take a minute on a loaded machine
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def long_sweep(profiles: Path) -> None:
    text = (
        SWEEP.replace('name = "tiny"', 'name = "long"')
        .replace('"train.max_steps" = 4', '"train.max_steps" = 100000')
        .replace('"train.checkpoint_every" = 2', '"train.checkpoint_every" = 100000')
        .replace('"train.eval_every" = 2', '"train.eval_every" = 100000\n"train.compile" = "off"')
        .replace("seeds = [0, 1]", "seeds = [0]")
    )
    (profiles / "sweeps").mkdir(parents=True, exist_ok=True)
    (profiles / "sweeps" / "long.toml").write_text(text)
    (profiles / "sweeps" / "a-first.toml").write_text(text.replace('name = "long"', 'name = "first"'))


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["f6", "palette"])
async def test_a_sweep_shows_its_size_first_and_stops_from_the_train_tab(tmp_path: Path, how: str) -> None:
    from textual.widgets import OptionList, Static

    from tests.fakes import fake_backend
    from trm_core.experiments.manifest import read_manifest
    from trm_tui.app import TrmApp
    from trm_tui.backend import Backend
    from trm_tui.panes.runs import RunsPane
    from trm_tui.screens.modals import ConfirmModal
    from trm_tui.screens.sweep_start import SweepPickModal

    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    long_sweep(profiles)
    # the sweep trains for real (a sweep goes through the backend's trainer factory)
    backend = dataclasses.replace(fake_backend(), trainer_factory=Backend.trainer_factory)
    app = TrmApp(profiles_dir=profiles, runs_dir=runs, backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4", "f9")
        await pilot.pause()
        picker = app.screen.query_one(OptionList)
        assert picker.highlighted == 0
        await pilot.press("down", "down", "down", "down")  # past the end: stays on the last sweep
        assert picker.highlighted == 1
        await pilot.press("up", "up", "up")  # and not wrapping upwards either
        assert picker.highlighted == 0
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and app.jobs.busy is None  # nothing runs yet
        question = str(app.screen.query_one(".question", Static).render())
        assert "Run sweep long: 2 runs, 200,000 steps, time unknown" in question
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmModal, SweepPickModal)) and app.jobs.busy is None
        assert not (runs / "long").exists()

        await pilot.press("f9", "down", "enter")
        await pilot.pause()
        await pilot.press("enter")  # "Run sweep"
        pane = app.query_one(RunsPane)
        await until(lambda: "step" in str(pane.query_one("#sweep-status", Static).render()))
        assert app.jobs.busy == "sweep"
        if how == "f6":
            await pilot.press("f2", "f6")
        else:
            (stop,) = [c for c in app.get_system_commands(app.screen) if c.title == "Train: Stop"]
            stop.callback()  # the palette's entry
        await until(lambda: app.jobs.busy is None)
        status = pane.query_one("#sweep-status", Static)
        await until(lambda: "stopped: F9 resumes it" in str(status.render()), timeout=5)  # the news arrives
    states = {r["name"]: r["state"] for r in read_manifest(runs / "long")["runs"]}
    assert states == {"hidden_size-16_seed0": "stopped", "hidden_size-32_seed0": "queued"}
    assert list((runs / "long" / "hidden_size-16_seed0" / "checkpoints").glob("step-*"))  # saved on stop


@pytest.mark.anyio
async def test_the_runs_table_fits_80_columns_with_short_sweep_names_sorts_and_filters(
    swept: tuple[Path, Path], tmp_path: Path
) -> None:
    from textual.widgets import DataTable

    from tests.fakes import fake_backend
    from trm_tui.app import TrmApp
    from trm_tui.panes.runs import RunsPane

    _, runs = swept
    (tmp_path / "profiles").mkdir()
    app = TrmApp(profiles_dir=tmp_path / "profiles", runs_dir=runs, backend=fake_backend())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        pane = app.query_one(RunsPane)
        table = pane.query_one("#runs-table", DataTable)
        await until(lambda: table.row_count == 4)
        names = [str(table.get_row_at(i)[0]) for i in range(4)]
        assert names == [
            "tiny/hidden_size=16 s0",
            "tiny/hidden_size=16 s1",
            "tiny/hidden_size=32 s0",
            "tiny/hidden_size=32 s1",
        ]
        assert [str(c.label) for c in table.columns.values()] == [
            "run",
            "status",
            "steps",
            "val",
            "acc",
            "wall",
        ]
        await pilot.pause()
        assert table.virtual_size.width <= table.size.width  # every column on screen, no sideways scroll
        vals = [r.info.best_val_loss for r in pane.rows]
        await pilot.press("s", "s", "s")  # newest → name → status → val loss
        assert [r.info.best_val_loss for r in pane.rows] == sorted(vals)
        await pilot.press("slash", *"=32", "enter")
        assert sorted(str(table.get_row_at(i)[0]) for i in range(table.row_count)) == [
            "tiny/hidden_size=32 s0",
            "tiny/hidden_size=32 s1",
        ]
        await pilot.press("slash")
        pane.query_one("#runs-filter").value = "acc>101%"  # no run is that good
        await pilot.pause()
        assert table.row_count == 0


@pytest.mark.anyio
async def test_runs_are_hidden_and_trashed_with_confirmation_never_deleted(
    swept: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    from textual.widgets import DataTable

    from tests.fakes import fake_backend
    from trm_tui.app import TrmApp
    from trm_tui.panes.runs import RunsPane
    from trm_tui.screens.modals import ConfirmModal

    runs = tmp_path / "runs"
    shutil.copytree(swept[1], runs)
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    (tmp_path / "profiles").mkdir()
    app = TrmApp(profiles_dir=tmp_path / "profiles", runs_dir=runs, backend=fake_backend())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        pane = app.query_one(RunsPane)
        table = pane.query_one("#runs-table", DataTable)
        await until(lambda: table.row_count == 4)
        table.move_cursor(row=0)
        await pilot.press("space", "space", "h")  # the two marked runs
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")
        assert table.row_count == 4  # cancelled: nothing hidden
        await pilot.press("h", "enter")
        await until(lambda: table.row_count == 2)
        assert json.loads((runs / ".hidden-runs.json").read_text()) == [
            "tiny/hidden_size-16_seed0",
            "tiny/hidden_size-16_seed1",
        ]
        assert sorted(p.relative_to(runs) for p in runs.rglob("*") if p.name != ".hidden-runs.json") == before
        await pilot.press("full_stop")  # shows the hidden runs again
        assert table.row_count == 4
        await pilot.press("full_stop", "delete")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("enter")  # danger: the focus is on Cancel
        assert (runs / "tiny").is_dir()
        await pilot.press("delete", "left", "enter")
        await until(lambda: table.row_count == 0)
    assert not (runs / "tiny").exists()
    (moved,) = (runs / ".trash").iterdir()
    assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == sorted(
        p.relative_to(Path("tiny")) for p in before if p.parts[0] == "tiny" and len(p.parts) > 1
    )


@pytest.mark.anyio
async def test_a_profile_added_on_disk_appears_without_a_restart(tmp_path: Path) -> None:
    from textual.widgets import OptionList

    from tests.fakes import fake_backend
    from trm_tui.app import TrmApp

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "a.toml").write_text(GOOD.read_text().replace('name = "good"', 'name = "a"'))
    app = TrmApp(profiles_dir=profiles, runs_dir=tmp_path / "runs", backend=fake_backend())
    async with app.run_test(size=(80, 24)) as pilot:
        plist = app.query_one("#profile-list", OptionList)
        assert plist.option_count == 1
        (profiles / "b.toml").write_text(GOOD.read_text().replace('name = "good"', 'name = "b"'))
        await pilot.press("ctrl+r")
        await until(lambda: plist.option_count == 2, timeout=5)
        (profiles / "c.toml").write_text(GOOD.read_text().replace('name = "good"', 'name = "c"'))
        await pilot.press("f2", "f1")  # showing the tab re-reads it too
        await until(lambda: plist.option_count == 3, timeout=5)


@pytest.mark.anyio
async def test_an_early_stopped_run_is_extended_from_the_app_and_untouched_until_then(tmp_path: Path) -> None:
    from textual.widgets import Button

    from tests.test_train import tiny_text
    from trm_core.profile import parse_profile
    from trm_core.runs.listing import run_info
    from trm_core.training.trainer import Trainer
    from trm_tui.app import TrmApp
    from trm_tui.panes.train import TrainPane
    from trm_tui.screens.mismatch import MismatchModal
    from trm_tui.screens.modals import ChoiceModal

    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    keys = dict(
        name="tiny", train__lr=1e-9, train__eval_every=1, train__max_steps=50,
        early_stopping__patience=2, early_stopping__min_delta=0.01,
    )  # fmt: skip
    Trainer(parse_profile(tiny_text(**keys)), runs / "tiny").run()
    assert run_info(runs / "tiny").status == "early-stopped"
    keys["train__max_steps"] = 80  # raised: "changes-training"
    (profiles / "tiny.toml").write_text(tiny_text(**keys))

    def files() -> dict:
        return {
            p: p.read_bytes() for p in sorted((runs / "tiny").rglob("*")) if p.is_file() and p.name != ".lock"
        }

    before = files()
    app = TrmApp(profiles_dir=profiles, runs_dir=runs)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(TrainPane)
        await pilot.press("f2", "f5")
        await until(lambda: isinstance(app.screen, MismatchModal))
        await pilot.click("#resume")  # "Resume anyway"
        await until(lambda: isinstance(app.screen, ChoiceModal))
        assert "stopped early at step 3" in str(app.screen.query_one(".question").render())
        await pilot.press("escape")
        await until(lambda: pane.state == "idle")
        assert files() == before  # nothing trained, nothing written: profile.toml still says 50

        await pilot.press("f5")
        await until(lambda: isinstance(app.screen, MismatchModal))
        await pilot.click("#resume")
        await until(lambda: isinstance(app.screen, ChoiceModal))
        assert str(app.screen.query_one("#extend", Button).label) == "Continue (patience 2)"
        await pilot.press("enter")
        await until(lambda: pane.state == "early-stopped", timeout=60)
    info = run_info(runs / "tiny")
    assert info.step == 5 and info.total_steps == 80  # two more evaluations without improvement
    assert "max_steps = 80" in (runs / "tiny" / "profile.toml").read_text()
