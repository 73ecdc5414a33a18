"""The Train tab's conversations with the user: the unsaved-changes dialog before training, and
what a finished training says (a mixin of `TrainPane`, which owns the state and the log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trm_core.events import DoneEvent
from trm_core.printable import printable

from ..screens.modals import ChoiceModal


class TrainDialogs:
    """Needs `tapp`, `app`, `log_line`, `_set_state`, `_prepare`, `run_dir` and `_redraw` (TrainPane)."""

    tapp: Any
    app: Any
    run_dir: Path | None

    def _ask_unsaved(self, path: Path, fresh: bool) -> None:
        result = self.tapp.profiles_pane.editor.validate_now()
        refused = {} if result.ok else {"save": f"Cannot save: {result.problem}"}

        def chosen(choice: str | None) -> None:
            if choice == "save":
                if not self.tapp.profiles_pane.action_save():
                    return
                self.log_line(f"saved {path.name}; training it", "cyan")
            elif choice == "saved":
                self.log_line(f"training the saved {path.name}; the editor's changes are not used", "yellow")
            else:
                self.log_line("cancelled: nothing trained", "dim")
                return
            self._set_state("checking")
            self._prepare(path, self.run_dir, fresh)

        choices = [("save", "Save and train", "primary"), ("saved", "Train the saved version", "default")]
        question = f"{path.name} has unsaved changes. Training uses the saved file."
        focus = "save" if result.ok else "cancel"
        self.app.push_screen(ChoiceModal(question, choices, focus=focus, refused=refused), chosen)

    def _on_done(self, ev: DoneEvent) -> None:
        if ev.reason == "nothing-to-train":
            text = f"{ev.message} — raise train.max_steps to continue, or F8 trains a fresh run"
            self.log_line(text, "yellow")
            self.app.notify(printable(text), severity="warning", timeout=8, markup=False)
            self._set_state("idle")
            return
        text = f"done: {ev.reason} at step {ev.step}"
        if ev.best_val_loss is not None:
            text += f", best val {ev.best_val_loss:.4f}"
        if ev.message:
            text += f" — {ev.message}"
        if ev.reason in ("finished", "early-stopped"):
            text += " · F9 evaluates it"
        self.log_line(text, "red" if ev.reason == "error" else "green")
        self._set_state(ev.reason, ev.message)
        self._redraw()
