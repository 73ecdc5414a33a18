"""Issue 27.10 at 80×24: keys and labels that fit, Esc on the keys panel, the REPL's transcript after
switching runs, the sweep builder's file, and the app refusing to start without a terminal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from tests.fakes import TrainerScript
from tests.test_app import SIZE, TINY, make_app, train_once, wait_for
from trm_tui.panes.repl import ReplPane
from trm_tui.widgets.transcript import Transcript

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY)
    return profiles, runs


def test_the_app_without_a_terminal_exits_with_one_line(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "trm_tui", "--profiles-dir", str(tmp_path), "--runs-dir", str(tmp_path / "r")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and time.monotonic() - start < 30
    assert proc.stderr.splitlines() == [
        "trm-tui: the app needs a terminal (stdin and stdout are not a tty); "
        "the headless commands are listed by trm-tui --help"
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("tab", ["f1", "f2", "f3", "f4"])
async def test_80_column_footers_show_quit_and_the_runs_tab_sweep_and_evaluate(dirs, tab) -> None:
    from textual.widgets._footer import FooterKey

    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(tab)
        await pilot.pause(0.2)
        shown = {k.description for k in app.screen.query(FooterKey) if k.region.right <= SIZE[0] - 12}
        assert "Quit" in shown  # left of the palette hint, not cut
        if tab == "f4":
            assert {"Sweep", "Evaluate"} <= shown


@pytest.mark.anyio
async def test_esc_closes_the_keys_panel(dirs) -> None:
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        app.action_show_help_panel()
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        keys = app.screen.query_one("KeyPanel")
        await pilot.pause(0.2)
        import io

        from rich.console import Console

        console = Console(width=80, record=True, file=io.StringIO())
        console.print(keys.query_one("BindingsTable").render())
        assert "Mark (moves down)" in console.export_text()  # space is documented
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")


@pytest.mark.anyio
async def test_switching_runs_shows_the_new_runs_example_or_names_it(dirs) -> None:
    train_once(dirs, TrainerScript(total_steps=20), TINY.replace('"tiny"', '"one"'))
    train_once(dirs, TrainerScript(total_steps=20), TINY.replace('"tiny"', '"two"'))
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(ReplPane)
        transcript = app.query_one(Transcript)
        await wait_for(pilot, lambda: "learned text like this" in transcript.plain)
        first = str(app.query_one("#repl-run", Select).value)
        other = str(dirs[1] / ("one" if first.endswith("two") else "two"))
        app.query_one("#repl-run", Select).value = other
        await wait_for(pilot, lambda: transcript.plain.startswith(f"\n[{Path(other).name} learned"))
        app.query_one("#repl-prompt", Input).value = "2+2?"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not pane.generating and "2+2?" in transcript.plain)
        app.query_one("#repl-run", Select).value = first
        await wait_for(pilot, lambda: f"now talking to {Path(first).name}" in transcript.plain)
        assert "2+2?" in transcript.plain  # the conversation stays


@pytest.mark.anyio
async def test_the_sweep_builder_writes_a_relative_base_and_its_evaluation_size(dirs) -> None:
    from textual.widgets import TextArea

    from trm_core.experiments.sweep import load_sweep
    from trm_tui.screens.sweep_start import SweepBuildModal

    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4", "f9")
        await pilot.pause()
        await pilot.press("end", "enter")  # "+ build a sweep from tiny…"
        await wait_for(pilot, lambda: isinstance(app.screen, SweepBuildModal))
        grid = app.screen.query_one("#sweep-grid", TextArea)
        assert grid.selected_text == grid.text  # typing replaces the example
        await pilot.press(*"model.hidden_size = 16, 32")
        app.screen.query_one("#sweep-eval", Input).value = "40"
        await pilot.click("#ok")
        await pilot.pause()
    path = dirs[0] / "sweeps" / "tiny-sweep.toml"
    text = path.read_text()
    assert 'base = "../tiny.toml"' in text and "limit = 40" in text
    sweep = load_sweep(path, dirs[0])
    assert sweep.grid == {"model.hidden_size": [16, 32]} and sweep.eval["limit"] == 40


@pytest.mark.anyio
async def test_enter_on_an_evaluated_answer_shows_it_both_ways_and_toasts_leave_the_detail_free(dirs) -> None:
    from textual.widgets import DataTable, Static

    from trm_tui.screens.answer import AnswerModal
    from trm_tui.screens.evaluation import EvalScreen

    train_once(dirs, TrainerScript(total_steps=10))
    app = make_app(dirs)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.open_evaluation(dirs[1] / "tiny")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen))
        screen = app.screen
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.query_one("#eval-samples", DataTable).row_count == 2)
        await wait_for(pilot, lambda: bool(screen.query("Toast")))
        await pilot.pause(0.3)
        detail = screen.query_one("#eval-detail-box").region
        toasts = [t.region for t in screen.query("Toast")]
        assert toasts and not any(t.overlaps(detail) for t in toasts)
        table = screen.query_one("#eval-samples", DataTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AnswerModal))
        text = str(app.screen.query_one("#answer-text", Static).render())
        assert "Leo had 9 apples" in text and "With the calculator: ✗ wrong (answer 99)" in text
        assert "Without the calculator: ✗ wrong\n#### 98" in text
        await pilot.press("escape")
        assert isinstance(app.screen, EvalScreen)


def test_the_sweep_builder_sets_single_values_instead_of_naming_runs_after_them(tmp_path: Path) -> None:
    from trm_core.experiments.sweep import parse_sweep
    from trm_tui.screens.sweep_start import build_sweep_text

    from .test_experiments import GOOD

    grid = "train.max_steps = 150\nearly_stopping.stop_below = 0\nmodel.hidden_size = 16, 32\n"
    sweep = parse_sweep(build_sweep_text("arch", GOOD, grid, "0"), tmp_path / "arch.toml")
    assert sweep.fixed == {"train.max_steps": 150, "early_stopping.stop_below": 0}
    assert list(sweep.grid) == ["model.hidden_size"]
    assert [r.name for r in sweep.runs] == ["hidden_size-16_seed0", "hidden_size-32_seed0"]
    assert all(r.profile.train.max_steps == 150 for r in sweep.runs)
    only_set = parse_sweep(
        build_sweep_text("one", GOOD, "train.max_steps = 3\n", "0, 1"), tmp_path / "one.toml"
    )
    assert [r.name for r in only_set.runs] == ["seed0", "seed1"]
