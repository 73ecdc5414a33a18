"""Pilot tests of the app on fake trainer/generator (tests/fakes.py): every tab, the modals, errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Button, DataTable, RichLog

from tests.fakes import (
    FakeGeneratorFactory,
    FakeTrainer,
    FakeTrainerFactory,
    TrainerScript,
    fake_backend,
)
from trm_core.profile import load_profile
from trm_core.runs.lock import acquire_lock
from trm_tui.app import TrmApp
from trm_tui.panes.profiles import ProfilesPane
from trm_tui.panes.repl import ReplPane
from trm_tui.panes.runs import RunsPane
from trm_tui.panes.train import TrainPane
from trm_tui.screens.mismatch import MismatchModal
from trm_tui.screens.modals import ConfirmModal, NameModal
from trm_tui.widgets.early_stop import EarlyStopPanel
from trm_tui.widgets.loss_chart import LossChart
from trm_tui.widgets.profile_editor import ProfileEditor
from trm_tui.widgets.transcript import Transcript

SIZE = (80, 24)
pytestmark = pytest.mark.anyio


TINY = """\
# tiny — a test profile; this comment must survive a save
name = "tiny"

[model]
hidden_size = 32   # small
num_heads = 2

[train]
max_steps = 40
lr = 1e-3

[early_stopping]
patience = 3
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY, encoding="utf-8")
    (profiles / "zeta.toml").write_text(TINY.replace('"tiny"', '"zeta"'), encoding="utf-8")
    return profiles, runs


def make_app(dirs, trainer=None, generator=None, profile: str | None = "tiny") -> TrmApp:
    profiles, runs = dirs
    return TrmApp(
        profiles_dir=profiles,
        runs_dir=runs,
        profile=profile,
        backend=fake_backend(trainer=trainer, generator=generator),
    )


async def wait_for(pilot, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(
                f"condition not met in time; train state {pilot.app.query_one(TrainPane).state}"
            )
        await pilot.pause(0.02)


def text_of(app: TrmApp, selector) -> str:
    """The plain text a Static shows (str, Text or a rich renderable such as a Table)."""
    content = app.query_one(selector).content
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


def log_text(app: TrmApp) -> str:
    return "\n".join(strip.text for strip in app.query_one("#train-log", RichLog).lines)


def train_once(dirs, script: TrainerScript | None = None, text: str = TINY) -> Path:
    """A finished fake run of `text` in runs/<name>, made without the app."""
    from trm_core.profile import parse_profile

    profile = parse_profile(text)
    run_dir = dirs[1] / profile.name
    FakeTrainer(profile, run_dir, script=script).run()
    return run_dir


# ---------------------------------------------------------------------------- Train


async def test_train_updates_step_chart_and_finishes(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=40))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state == "finished")
        await pilot.pause(0.3)
        assert "step 40/40" in text_of(app, "#train-progress-text")
        chart = app.query_one("#train-chart", LossChart)
        assert len(chart.train) == 40 and len(chart.val) == 8
        assert "improving" in text_of(app, EarlyStopPanel)
        assert "done: finished at step 40" in log_text(app)
        assert trainer.created[0].run_dir == dirs[1] / "tiny"
        assert (dirs[1] / "tiny" / "metrics.jsonl").is_file()


async def test_train_progress_mid_run_and_stop_saves_checkpoint(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=100, pause_at=12))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(
            pilot, lambda: pane.history.last_step is not None and pane.history.last_step.step == 12
        )
        await pilot.pause(0.3)
        assert pane.state == "training"
        assert "step 12/100" in text_of(app, "#train-progress-text")
        await pilot.press("f1")  # switching tabs does not stop training
        await pilot.pause(0.1)
        assert pane.state == "training"
        await pilot.press("f2", "f6")
        await wait_for(pilot, lambda: pane.state == "stopped")
        assert trainer.created[0].stopped_via_request
        assert "stop requested" in log_text(app)
        assert "(stop)" in log_text(app)  # the stop checkpoint
        assert (dirs[1] / "tiny" / "checkpoints" / "step-0000012").is_dir()


async def test_compiling_is_its_own_phase_with_a_clock_and_the_app_responds(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=10, compiling_s=65.0))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state == "compiling")
        await pilot.pause(0.3)
        assert "compiling… 1:0" in text_of(app, "#train-progress-text")  # elapsed, not a step count
        assert "● compiling" in text_of(app, "#train-state")
        await pilot.press("f1")  # the app still answers keys while the trainer compiles
        await pilot.press("f2")
        assert pane.state == "compiling"
        trainer.created[0].gate.set()
        await wait_for(pilot, lambda: pane.state == "finished")
        await pilot.pause(0.3)
        assert "step 10/10" in text_of(app, "#train-progress-text")
        assert "compiled (fake)" in log_text(app)


async def test_early_stop_panel_waiting_then_stopped(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=100, plateau_at=10, patience=3, pause_at=20))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(
            pilot, lambda: pane.history.last_step is not None and pane.history.last_step.step == 20
        )
        await pilot.pause(0.3)
        panel = text_of(app, EarlyStopPanel)
        assert "waiting 2 of 3" in panel and "@ 10" in panel and "1 of 3 left" in panel
        trainer.gate.set()
        await wait_for(pilot, lambda: pane.state == "early-stopped")
        await pilot.pause(0.1)
        panel = text_of(app, EarlyStopPanel)
        assert "stopped" in panel and "0 of 3 left" in panel


async def test_trainer_crash_shows_error_and_app_stays_responsive(dirs):
    app = make_app(dirs, FakeTrainerFactory(TrainerScript(fail_at=3)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state == "error")
        assert "fake trainer bug" in text_of(app, "#train-state")
        assert "training crashed" in log_text(app)
        await pilot.press("f1")
        assert app.query_one("#tabs").active == "tab-profiles"


async def test_user_error_done_event_shows_message(dirs):
    app = make_app(dirs, FakeTrainerFactory(TrainerScript(error_at=3)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state == "error")
        assert "unreadable" in text_of(app, "#train-state")


async def test_quit_while_training_asks_then_stops_and_exits(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=100, pause_at=5))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state == "training")
        await pilot.press("ctrl+q")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.click("#yes")
        await wait_for(pilot, lambda: not app.is_running, timeout=10)
    assert trainer.created[0].stopped_via_request


# ---------------------------------------------------------------------------- mismatch modal


def _edit_profile(dirs, old: str, new: str) -> None:
    path = dirs[0] / "tiny.toml"
    path.write_text(path.read_text().replace(old, new), encoding="utf-8")


async def _start_into_existing(pilot, app) -> None:
    await pilot.press("f2", "f5")
    pane = app.query_one(TrainPane)
    await wait_for(
        pilot, lambda: isinstance(app.screen, MismatchModal) or pane.state not in ("idle", "checking")
    )


async def test_identical_profile_resumes_silently(dirs):
    train_once(dirs, TrainerScript(total_steps=20))
    trainer = FakeTrainerFactory(TrainerScript(total_steps=40))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await _start_into_existing(pilot, app)
        assert not isinstance(app.screen, MismatchModal)
        await wait_for(pilot, lambda: app.query_one(TrainPane).state == "finished")
        assert trainer.created[0].resume and trainer.created[0].run_dir == dirs[1] / "tiny"
        assert "profile identical" in log_text(app)
        assert "resumed at step 20" in log_text(app)


@pytest.mark.parametrize("choice", ["resume", "fresh", "cancel"])
async def test_mismatch_modal_buttons(dirs, choice):
    train_once(dirs, TrainerScript(total_steps=20))
    _edit_profile(dirs, "lr = 1e-3", "lr = 5e-4")
    trainer = FakeTrainerFactory(TrainerScript(total_steps=40))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await _start_into_existing(pilot, app)
        assert isinstance(app.screen, MismatchModal)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        assert [str(c) for c in table.get_row_at(0)] == ["train.lr", "0.001", "0.0005", "changes-training"]
        assert app.screen.query("#resume")  # offered: nothing incompatible
        await pilot.click(f"#{choice}")
        await pilot.pause(0.1)
        pane = app.query_one(TrainPane)
        if choice == "cancel":
            assert not trainer.created and pane.state == "idle"
            return
        await wait_for(pilot, lambda: pane.state == "finished")
        created = trainer.created[0]
        if choice == "resume":
            assert created.resume and created.run_dir == dirs[1] / "tiny"
        else:
            assert not created.resume and created.run_dir == dirs[1] / "tiny-2"


async def test_incompatible_mismatch_offers_no_resume(dirs):
    train_once(dirs, TrainerScript(total_steps=20))
    _edit_profile(dirs, "hidden_size = 32", "hidden_size = 64")
    app = make_app(dirs, FakeTrainerFactory())
    async with app.run_test(size=SIZE) as pilot:
        await _start_into_existing(pilot, app)
        assert isinstance(app.screen, MismatchModal)
        assert not app.screen.query("#resume")
        assert "tiny-2" in str(app.screen.query_one("#fresh", Button).label)
        await pilot.press("escape")
        assert not isinstance(app.screen, MismatchModal)


# ---------------------------------------------------------------------------- REPL


async def test_repl_streams_answer_with_calculator_spans_and_history(dirs):
    train_once(dirs)
    gen = FakeGeneratorFactory()
    app = make_app(dirs, generator=gen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause(0.1)
        assert app.focused is not None and app.focused.id == "repl-prompt"
        await pilot.press(*"Natalia sold 48 clips", "enter")
        pane = app.query_one(ReplPane)
        await wait_for(pilot, lambda: not pane.generating and gen.generators)
        text = app.query_one(Transcript).plain
        assert "Question: Natalia sold 48 clips\nAnswer:" in text
        assert "#### 72" in text
        prompt, kw = gen.generators[0].calls[0]
        assert prompt == "Question: Natalia sold 48 clips\nAnswer:"
        assert kw["max_tokens"] == 256 and kw["calculator"] is True
        assert gen.opened == [(dirs[1] / "tiny", "best")]
        spans = [(text[s.start : s.end], str(s.style)) for s in app.query_one(Transcript).content.spans]
        assert any(t == "24" and "on" in style for t, style in spans)  # calculator span marked
        await pilot.press("up")
        assert app.query_one("#repl-prompt").value == "Natalia sold 48 clips"
        await pilot.press("f7")
        assert app.query_one(Transcript).plain == ""


async def test_repl_stop_and_load_error(dirs):
    train_once(dirs)
    gen = FakeGeneratorFactory(delay=0.05, pieces=FakeGeneratorFactory().pieces * 20)
    app = make_app(dirs, generator=gen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3", *"2+2", "enter")
        pane = app.query_one(ReplPane)
        await pilot.pause(0.3)
        assert pane.generating
        await pilot.press("f6")
        await wait_for(pilot, lambda: not pane.generating)
        assert "[stopped]" in app.query_one(Transcript).plain
        gen.fail = "checkpoint is damaged"
        await pilot.press("f8", *"again", "enter")
        await wait_for(pilot, lambda: not pane.generating and len(gen.opened) == 2)
        await pilot.pause(0.1)
        assert "checkpoint is damaged" in app.query_one(Transcript).plain


# ---------------------------------------------------------------------------- Profiles


async def test_editor_refuses_invalid_and_saves_comments_byte_for_byte(dirs):
    path = dirs[0] / "tiny.toml"
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(ProfileEditor)
        assert editor.text == TINY
        editor.text_area.text = TINY.replace("lr = 1e-3", "lr = -1")
        await wait_for(pilot, lambda: not editor.result.ok)  # debounced validation
        assert editor.result.line == 9
        assert "line 10" in text_of(app, "#validation")
        await pilot.press("ctrl+s")
        assert path.read_text() == TINY  # refused
        editor.text_area.text = TINY.replace("lr = ", "lr = = ")
        await wait_for(pilot, lambda: "syntax" in (editor.result.problem or ""))
        assert editor.result.line == 9
        new = TINY.replace("lr = 1e-3", "lr = 2e-3   # doubled, comment kept")
        editor.text_area.text = new
        await pilot.press("ctrl+s")
        assert path.read_text() == new
        assert not editor.dirty


async def test_profile_list_shows_params_and_facts(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ProfilesPane)
        await wait_for(pilot, lambda: len(pane.params) == 2)
        prompt = str(pane._prompt(dirs[0] / "tiny.toml"))
        assert "0.03M" in prompt and "byte · synthetic · deep×1" in prompt
        assert app.profile_path == dirs[0] / "tiny.toml"


async def test_new_duplicate_rename_delete(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ProfilesPane)
        await pilot.press("f5")
        assert isinstance(app.screen, NameModal)
        await pilot.press(*"fresh", "enter")
        await pilot.pause(0.1)
        assert load_profile(dirs[0] / "fresh.toml").name == "fresh"
        assert pane.current == dirs[0] / "fresh.toml"
        await pilot.press("f6", *"fresh2", "enter")
        await pilot.pause(0.1)
        assert load_profile(dirs[0] / "fresh2.toml").name == "fresh2"
        await pilot.press("f7", *"renamed", "enter")
        await pilot.pause(0.1)
        assert not (dirs[0] / "fresh2.toml").exists()
        assert load_profile(dirs[0] / "renamed.toml").name == "renamed"
        await pilot.press("f7", *"tiny", "enter")  # taken: refused
        await pilot.pause(0.1)
        assert isinstance(app.screen, NameModal) and "already exists" in str(
            app.screen.query_one("#name-error").content
        )
        await pilot.press("escape", "f8")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.click("#yes")
        await pilot.pause(0.1)
        assert not (dirs[0] / "renamed.toml").exists()


# ---------------------------------------------------------------------------- Runs


async def test_runs_list_statuses_and_chart(dirs):
    train_once(dirs, TrainerScript(total_steps=20), TINY.replace('"tiny"', '"done"'))
    train_once(dirs, TrainerScript(total_steps=100, plateau_at=10), TINY.replace('"tiny"', '"plateau"'))
    train_once(dirs, TrainerScript(error_at=4), TINY.replace('"tiny"', '"broken"'))
    live = dirs[1] / "live"
    live.mkdir(parents=True)
    (live / "metrics.jsonl").write_text(
        (dirs[1] / "done" / "metrics.jsonl").read_text().splitlines()[0] + "\n"
    )
    release_lock = acquire_lock(live)  # a held flock: what a live trainer holds
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        pane = app.query_one(RunsPane)
        await wait_for(pilot, lambda: len(pane.runs) == 4)
        table = app.query_one("#runs-table", DataTable)
        statuses = {str(table.get_row(k)[0]): str(table.get_row(k)[1]) for k in table.rows}
        assert statuses == {
            "done": "finished",
            "plateau": "early-stopped",
            "broken": "failed",
            "live": "running",
        }
        pane.open_run(dirs[1] / "done")
        await pilot.pause(0.1)
        assert len(app.query_one("#runs-chart", LossChart).train) == 20
        # live tail: more lines appended by "another process"
        pane.open_run(live)
        lines = (dirs[1] / "done" / "metrics.jsonl").read_text().splitlines()
        with open(live / "metrics.jsonl", "a") as f:
            f.write("\n".join(lines[1:6]) + "\n")
        await wait_for(pilot, lambda: len(app.query_one("#runs-chart", LossChart).train) >= 3, timeout=5)
    release_lock()


async def test_command_palette_lists_every_action(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE):
        titles = {c.title for c in app.get_system_commands(app.screen)}
    for expected in (
        "Show Train",
        "Train: Start",
        "Train: Stop",
        "Train: Log",
        "Profiles: Save",
        "Profiles: Delete",
        "REPL: Stop",
        "Runs: Refresh",
    ):
        assert expected in titles
    for binding in (*TrmApp.BINDINGS, *TrainPane.BINDINGS, *ProfilesPane.BINDINGS, *ReplPane.BINDINGS):
        assert binding.id, binding
