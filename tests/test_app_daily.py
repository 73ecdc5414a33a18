"""Issue 15, the app as a daily tool: one pilot test per item, on the fakes of tests/fakes.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from tests.fakes import FakeEvaluator, FakeGeneratorFactory, FakeTrainerFactory, TrainerScript
from tests.test_app import SIZE, TINY, log_text, make_app, text_of, train_once, wait_for
from trm_tui.app import TrmApp
from trm_tui.panes.profiles import ProfilesPane
from trm_tui.panes.repl import ReplPane
from trm_tui.panes.runs import RunsPane
from trm_tui.panes.train import TrainPane
from trm_tui.screens.evaluation import EvalScreen
from trm_tui.screens.modals import ChoiceModal, ConfirmModal, NameModal
from trm_tui.widgets.loss_chart import LossChart
from trm_tui.widgets.profile_editor import ProfileEditor
from trm_tui.widgets.transcript import Transcript

pytestmark = pytest.mark.anyio


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    profiles, runs = tmp_path / "profiles", tmp_path / "runs"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY, encoding="utf-8")
    (profiles / "zeta.toml").write_text(TINY.replace('"tiny"', '"zeta"'), encoding="utf-8")
    return profiles, runs


def _runs_text(runs: Path) -> dict[str, str]:
    return {str(p.relative_to(runs)): p.read_text() for p in runs.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- 1. unsaved changes


@pytest.mark.parametrize("choice", ["save", "saved", "cancel"])
async def test_f5_with_unsaved_changes_asks_first(dirs, choice):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=10))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(ProfileEditor)
        editor.text_area.text = TINY.replace("hidden_size = 32", "hidden_size = 64")
        await pilot.pause(0.5)
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal))
        assert "unsaved changes" in str(app.screen.query_one(".question").content)
        assert app.focused.id == "save"
        if choice == "saved":  # by keyboard: → then enter
            await pilot.press("right", "enter")
        else:
            await pilot.click(f"#{choice}")
        pane = app.query_one(TrainPane)
        if choice == "cancel":
            await pilot.pause(0.2)
            assert not trainer.created and editor.dirty
            return
        await wait_for(pilot, lambda: pane.state == "finished")
        trained = trainer.created[0].profile.model.hidden_size
        saved = (dirs[0] / "tiny.toml").read_text()
        if choice == "save":
            assert trained == 64 and "hidden_size = 64" in saved and not editor.dirty
            assert "saved tiny.toml; training it" in log_text(app)
        else:
            assert trained == 32 and "hidden_size = 32" in saved and editor.dirty
            assert "the editor's changes are not used" in log_text(app)


async def test_save_and_train_is_refused_while_invalid(dirs):
    trainer = FakeTrainerFactory(TrainerScript(total_steps=10))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ProfileEditor).text_area.text = TINY.replace("lr = 1e-3", "lr = -1")
        await pilot.pause(0.5)
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal))
        await pilot.click("#save")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChoiceModal) and "train.lr" in str(
            app.screen.query_one("#choice-error").content
        )
        assert not trainer.created and "lr = 1e-3" in (dirs[0] / "tiny.toml").read_text()


# ---------------------------------------------------------------------------- 2. the run F5 writes


async def test_header_names_the_run_f5_writes_and_the_picker_resumes_any(dirs):
    train_once(dirs, TrainerScript(total_steps=10))
    trainer = FakeTrainerFactory(TrainerScript(total_steps=20, pause_at=15))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f8")  # a fresh run: tiny-2
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.history.step == 15)
        await pilot.press("f6")
        await wait_for(pilot, lambda: pane.state == "stopped")
        await pilot.pause(0.1)
        sel = app.query_one("#train-run", Select)
        assert sel.value == str(dirs[1] / "tiny-2") and pane.run_dir == dirs[1] / "tiny-2"
        labels = [str(label) for label, _ in sel._options if str(label)]  # not the blank entry
        assert labels[:2] == ["tiny-2 · stopped 15/20", "tiny · finished 10/10"]
        trainer.gate.set()
        await pilot.press("f5")  # resumes tiny-2, the run the header names
        await wait_for(pilot, lambda: len(trainer.created) == 2 and pane.state == "finished")
        assert trainer.created[1].run_dir == dirs[1] / "tiny-2" and trainer.created[1].resume
        assert "resumed at step 15" in log_text(app)
        sel.value = str(dirs[1] / "tiny")  # the picker chooses another run of the profile
        await pilot.pause(0.1)
        assert pane.run_dir == dirs[1] / "tiny" and pane.history.step == 10


# ---------------------------------------------------------------------------- 3 and 4. history


async def test_train_tab_shows_the_selected_runs_history_and_a_noop_resume_keeps_it(dirs):
    train_once(dirs, TrainerScript(total_steps=40))
    before = _runs_text(dirs[1])
    trainer = FakeTrainerFactory(TrainerScript(total_steps=40))
    app = make_app(dirs, trainer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause(0.4)
        pane = app.query_one(TrainPane)
        assert "step 40/40" in text_of(app, "#train-progress-text")  # item 4: not "0/?"
        assert len(app.query_one("#train-chart", LossChart).train) == 40
        assert "finished" in text_of(app, "#train-state")
        await pilot.press("f5")  # item 3: nothing to train
        await wait_for(pilot, lambda: "nothing to train" in log_text(app))
        await pilot.pause(0.4)
        assert pane.state == "idle" and len(app.query_one("#train-chart", LossChart).train) == 40
        assert "step 40/40" in text_of(app, "#train-progress-text")
    assert _runs_text(dirs[1]) == before


# ---------------------------------------------------------------------------- 5 and 6. REPL


async def test_repl_sampling_draws_and_shows_a_fresh_seed_and_a_typed_seed_is_used(dirs):
    train_once(dirs)
    gen = FakeGeneratorFactory()
    app = make_app(dirs, generator=gen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause(0.1)
        app.query_one("#repl-temperature", Input).value = "1.5"
        pane = app.query_one(ReplPane)
        for _ in range(2):
            await pilot.press(*"2+2", "enter")
            await pilot.pause(0.1)
            await wait_for(pilot, lambda: not pane.generating)
        kws = [kw for _, kw in gen.generators[0].calls]
        assert [kw["seed"] for kw in kws] == [-1, -1]  # no seed field: a fresh seed each time
        assert "seed 1001" in text_of(app, "#repl-status") and "tokens" in text_of(app, "#repl-status")
        assert "seed 1000" in app.query_one(Transcript).plain
        app.query_one("#repl-seed", Input).value = "1000"
        await pilot.press(*"2+2", "enter")
        await pilot.pause(0.1)
        await wait_for(pilot, lambda: not pane.generating)
        assert gen.generators[0].calls[-1][1]["seed"] == 1000


async def test_repl_defaults_to_the_best_of_the_newest_finished_run_and_keeps_settings(dirs):
    train_once(dirs, TrainerScript(total_steps=20), TINY.replace('"tiny"', '"done"'))
    stopped = dirs[1] / "zz-stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "metrics.jsonl").write_text(
        (dirs[1] / "done" / "metrics.jsonl").read_text().splitlines()[0] + "\n"
    )
    (stopped / "profile.toml").write_text(TINY.replace("[train]", "[generate]\ntemperature = 0.7\n\n[train]"))
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause(0.2)
        assert app.query_one("#repl-run", Select).value == str(dirs[1] / "done")
        assert app.query_one("#repl-which", Select).value == "best"
        app.query_one("#repl-max-tokens", Input).value = "77"
        app.query_one("#repl-run", Select).value = str(stopped)
        await pilot.pause(0.1)
        assert app.query_one("#repl-max-tokens", Input).value == "77"  # kept across runs
        assert app.query_one("#repl-temperature", Input).value == "0"
        assert app.query_one("#repl-which", Select).value == "latest"  # no best checkpoint there
        assert "no runs yet" not in [str(label) for label, _ in app.query_one("#repl-run", Select)._options]


# ---------------------------------------------------------------------------- 7 and 8. keys, new profile


async def test_tab_leaves_the_editor_and_arrows_move_between_dialog_buttons(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        editor = app.query_one(ProfileEditor)
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "profile-list")
        for _ in range(3):  # the app focuses the list now and once more after a refresh: outlast both
            editor.text_area.focus()
            await pilot.pause(0.3)
        assert app.focused is editor.text_area
        await pilot.press("tab")
        await pilot.pause(0.1)
        assert app.focused is not editor.text_area and editor.text == TINY  # no indentation
        editor.text_area.focus()
        await pilot.press("ctrl+t")
        assert editor.text.startswith("    ")
        await pilot.press("f8")  # delete: a dialog focused on Cancel
        assert isinstance(app.screen, ConfirmModal)
        assert app.focused.id == "no"
        await pilot.press("left")
        assert app.focused.id == "yes"
        await pilot.press("right")
        assert app.focused.id == "no"
        await pilot.press("escape", "f3")
        temp = app.query_one("#repl-temperature", Input)
        before = temp.styles.background
        temp.focus()
        await pilot.pause(0.1)
        assert temp.styles.background != before  # the focus ring: a clearly different background


async def test_new_profile_name_is_selected_and_a_template_is_chosen(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        assert isinstance(app.screen, NameModal)
        await pilot.pause(0.1)
        app.screen.query_one("#template", Select).value = str(dirs[0] / "zeta.toml")
        app.screen.query_one("#name", Input).focus()
        await pilot.pause(0.1)
        await pilot.press(*"mine", "enter")
        await pilot.pause(0.2)
        text = (dirs[0] / "mine.toml").read_text()
        assert 'name = "mine"' in text and "hidden_size = 32   # small" in text
        await pilot.press("f5")
        await pilot.pause(0.2)
        await pilot.press(*"plain", "enter")  # typing replaced "my-profile"
        await pilot.pause(0.2)
        assert "every section, commented" not in (dirs[0] / "plain.toml").read_text()
        assert "# A new profile" in (dirs[0] / "plain.toml").read_text()


# ---------------------------------------------------------------------------- 9. evaluation


async def test_evaluate_from_runs_shows_accuracy_samples_and_writes_a_record(dirs):
    train_once(dirs, TrainerScript(total_steps=10))
    evaluator = FakeEvaluator()
    from tests.fakes import fake_backend

    app = TrmApp(
        profiles_dir=dirs[0], runs_dir=dirs[1], profile="tiny", backend=fake_backend(evaluator=evaluator)
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        pane = app.query_one(RunsPane)
        await wait_for(pilot, lambda: len(pane.runs) == 1)
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen))
        app.screen.query_one("#eval-limit", Input).value = ""
        await pilot.press("f5")
        screen = app.screen
        await wait_for(pilot, lambda: screen.record is not None)
        summary = str(screen.query_one("#eval-summary").content)
        assert "50.0% with calculator" in summary and "0.0% without" in summary
        assert screen.query_one("#eval-samples", DataTable).row_count == 2
        await pilot.press("f6")  # wrong answers only
        assert screen.query_one("#eval-samples", DataTable).row_count == 1
        assert "#### 99" in str(screen.query_one("#eval-detail").content)
        assert evaluator.calls[0]["split"] == "val" and evaluator.calls[0]["limit"] is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: "tiny" in pane.evals)
        table = app.query_one("#runs-table", DataTable)
        assert "50.0%" in [str(c) for c in table.get_row_at(0)]
    record = json.loads((dirs[1] / "tiny" / "eval" / "val-step10.json").read_text())
    assert record["accuracy"] == 0.5 and record["samples"] == "eval/val-step10.jsonl"


async def test_f9_on_train_opens_the_evaluation_of_the_finished_run(dirs):
    app = make_app(dirs, FakeTrainerFactory(TrainerScript(total_steps=10)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2", "f5")
        await wait_for(pilot, lambda: app.query_one(TrainPane).state == "finished")
        assert "F9 evaluates it" in log_text(app)
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen))
        assert app.screen.run_dir == dirs[1] / "tiny"


# ---------------------------------------------------------------------------- 10. a first screen that teaches


async def test_repl_shows_the_data_format_and_inserts_an_example_question(dirs):
    train_once(dirs)
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(ReplPane)
        await wait_for(pilot, lambda: bool(pane.examples.get(dirs[1] / "tiny")))
        await pilot.pause(0.1)
        assert "Question: Mia has 3 boxes" in app.query_one(Transcript).plain
        assert "#### 12" in app.query_one(Transcript).plain
        await pilot.press("f9")  # the next problem: the first one is on screen already
        assert app.query_one("#repl-prompt", Input).value.startswith("Leo had 9 apples")
        await pilot.press("f9")
        assert app.query_one("#repl-prompt", Input).value.startswith("Mia has 3 boxes")


async def test_profile_title_counts_parameters_while_typing(dirs):
    app = make_app(dirs)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ProfilesPane)
        await wait_for(pilot, lambda: len(pane.params) == 2)
        app.query_one(ProfileEditor).text_area.text = TINY.replace("hidden_size = 32", "hidden_size = 64")
        await wait_for(pilot, lambda: pane.live_params is not None)
        await pilot.pause(0.1)
        assert "64,000 params (as edited)" in text_of(app, "#profile-title")


async def test_closing_the_evaluation_stops_it(dirs):
    import threading

    train_once(dirs, TrainerScript(total_steps=10))
    evaluator = FakeEvaluator(gate=threading.Event())
    app = make_app(dirs)
    app.backend.evaluate_run = evaluator
    async with app.run_test(size=SIZE) as pilot:
        app.open_evaluation(dirs[1] / "tiny")
        await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen))
        await pilot.press("f5")
        await wait_for(pilot, lambda: evaluator.calls)
        await pilot.press("escape")
        evaluator.gate.set()
        await pilot.pause(0.5)
        assert not isinstance(app.screen, EvalScreen)
    assert not (dirs[1] / "tiny" / "eval").exists()  # cancelled at its next progress report
