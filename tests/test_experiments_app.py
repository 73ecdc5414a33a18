"""The app's side of experiments: sweep runs in the Runs tab, marking and the compare view, a sweep run
from the app as a queue in its worker, and the sweep builder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from .test_experiments import GOOD, SWEEP, build_swept


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_swept(tmp_path_factory)


# --------------------------------------------------------------------------- the app


@pytest.mark.anyio
async def test_runs_tab_lists_sweep_runs_marks_them_and_opens_the_compare_view(
    swept: tuple[Path, Path], tmp_path: Path
) -> None:
    import asyncio

    from textual.widgets import DataTable, Static

    from tests.fakes import fake_backend
    from trm_tui.app import TrmApp
    from trm_tui.panes.runs import RunsPane
    from trm_tui.screens.compare import CompareScreen

    _, runs = swept
    (tmp_path / "profiles").mkdir()
    app = TrmApp(profiles_dir=tmp_path / "profiles", runs_dir=runs, backend=fake_backend())

    async def until(cond, timeout: float = 20.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out")

    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        pane = app.query_one(RunsPane)
        await until(lambda: len(pane.runs) == 4)
        assert [r.name for r in pane.runs][0] == "tiny/hidden_size-16_seed0"  # grouped by sweep
        table = pane.query_one("#runs-table", DataTable)
        table.move_cursor(row=0)
        await pilot.press("space", "space", "space")  # marks three, the cursor moves down each time
        assert pane.marked == {
            "tiny/hidden_size-16_seed0",
            "tiny/hidden_size-16_seed1",
            "tiny/hidden_size-32_seed0",
        }
        await pilot.press("f8")
        await until(lambda: isinstance(app.screen, CompareScreen) and app.screen.result is not None)
        screen = app.screen
        assert [g["n"] for g in screen.result["groups"]] == [2, 1]
        assert screen.query_one("#compare-table", DataTable).row_count == 2
        verdict = str(screen.query_one("#compare-verdict", Static).render())
        assert verdict == (  # every accuracy is 0 after 4 steps: equal, not unresolved
            "exact, calculator: equal in every group (0.0%). exact, none: equal in every group (0.0%). "
            "the other metrics: fewer than two groups with ≥ 2 runs, nothing can be resolved."
        )
        plot = str(screen.query_one("#compare-plot", Static).render())
        assert "hidden_size=16" in plot and "hidden_size=32" in plot
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


def test_a_sweep_built_in_the_app_is_a_valid_sweep_file(tmp_path: Path) -> None:
    from trm_core.experiments.sweep import parse_sweep
    from trm_tui.screens.sweep_start import build_sweep_text

    text = build_sweep_text("lr", GOOD, 'train.lr = 1e-3, 3e-3\nmodel.arch = "trm", "transformer"\n', "0, 1")
    sweep = parse_sweep(text, tmp_path / "lr.toml")
    assert len(sweep.runs) == 8 and sweep.grid["model.arch"] == ["trm", "transformer"]
    with pytest.raises(ValueError, match="seeds"):
        build_sweep_text("x", GOOD, "", "zero")
    with pytest.raises(ValueError, match="key = value"):
        build_sweep_text("x", GOOD, "train.lr 1e-3", "0")


@pytest.mark.anyio
async def test_the_app_runs_a_sweep_as_a_queue_in_its_worker(tmp_path: Path) -> None:
    import asyncio

    from textual.widgets import OptionList, Static

    from tests.fakes import fake_backend
    from trm_core.experiments.manifest import read_manifest
    from trm_tui.app import TrmApp
    from trm_tui.backend import Backend
    from trm_tui.panes.runs import RunsPane
    from trm_tui.screens.modals import ConfirmModal

    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    (profiles / "sweeps").mkdir(parents=True)
    one = (
        SWEEP.replace("seeds = [0, 1]", "seeds = [0]")
        .replace("[16, 32]", "[16]")
        .replace("limit = 2", "limit = 1")
    )
    (profiles / "sweeps" / "one.toml").write_text(one)
    # sweeps train through the backend (issue 26.2); this one trains and evaluates for real
    backend = dataclasses.replace(fake_backend(), trainer_factory=Backend.trainer_factory)
    app = TrmApp(profiles_dir=profiles, runs_dir=runs, backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4", "f9")
        await pilot.pause()
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)  # its size and time first, then it runs
        question = str(app.screen.query_one(".question", Static).render())
        assert question.startswith("Run sweep tiny: 1 run, 4 steps, time unknown")
        await pilot.press("enter")
        pane = app.query_one(RunsPane)

        def status() -> str:
            found = pane.query("#sweep-status")
            return str(found.first(Static).render()) if found else ""

        for _ in range(600):
            await asyncio.sleep(0.05)
            if "finished" in status():
                break
        assert app.jobs.busy is None
        status = status()
        assert "1 done" in status and "finished" in status
    assert [r["state"] for r in read_manifest(runs / "tiny")["runs"]] == ["done"]
