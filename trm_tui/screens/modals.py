"""Small modal dialogs: the shared dialog behaviour, a yes/no confirmation, a choice, a name prompt."""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
T = TypeVar("T")


class Dialog(ModalScreen[T], Generic[T]):
    """Escape cancels (dismisses with None); ←/→ move between the buttons, Tab/shift+Tab as anywhere."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        Binding("left", "button(-1)", "Previous button", show=False, id="modal.previous_button"),
        Binding("right", "button(1)", "Next button", show=False, id="modal.next_button"),
    ]

    def action_button(self, delta: int) -> None:
        buttons = [b for b in self.query(Button) if b.display and not b.disabled]
        if self.focused in buttons:
            i = buttons.index(self.focused)  # type: ignore[arg-type]
            buttons[max(0, min(len(buttons) - 1, i + delta))].focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(Dialog[bool]):
    """Ask a yes/no question; dismisses with True (yes) or False."""

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel", danger: bool = False) -> None:
        super().__init__()
        self.question, self.yes, self.no, self.danger = question, yes, no, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="error" if self.danger else "primary")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ChoiceModal(Dialog[str | None]):
    """A question with several answers; dismisses with the chosen button's id or None (Cancel/esc).

    `refused` maps a choice to the sentence shown instead of choosing it (e.g. an invalid profile
    cannot be saved): the dialog stays open.
    """

    def __init__(
        self,
        question: str,
        choices: list[tuple[str, str, str]],  # (id, label, variant)
        *,
        focus: str | None = None,
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.question, self.choices = question, choices
        self.focus_id, self.refused = focus, refused or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            yield Static("", id="choice-error", classes="error")
            with Horizontal(classes="buttons"):
                for cid, label, variant in self.choices:
                    yield Button(label, id=cid, variant=variant)  # type: ignore[arg-type]
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#{self.focus_id or 'cancel'}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        cid = event.button.id
        if cid in self.refused:
            self.query_one("#choice-error", Static).update(self.refused[cid])
            return
        self.dismiss(None if cid == "cancel" else cid)


class NameModal(Dialog[str | None]):
    """Ask for a file-safe name (the proposal selected, so typing replaces it); dismisses with it or None.

    With `templates` (label, key) it also asks which one to start from: `self.template` holds the
    chosen key when it dismisses.
    """

    def __init__(
        self,
        title: str,
        value: str = "",
        taken: set[str] | None = None,
        templates: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.title_text, self.value, self.taken = title, value, taken or set()
        self.templates = templates or []
        self.template: str | None = self.templates[0][1] if self.templates else None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="question")
            yield Input(value=self.value, id="name", placeholder="letters, digits, . _ -")
            if self.templates:
                yield Label("start from", classes="question")
                yield Select(self.templates, id="template", value=self.template, allow_blank=False)
            yield Static("", id="name-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        name = self.query_one("#name", Input)
        name.focus()  # select_on_focus selects it again when the focus lands, before any key
        name.select_all()

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.template = event.value

    def _problem(self, name: str) -> str:
        if not NAME_RE.match(name):
            return "Use letters, digits, '.', '_' or '-' (no spaces)."
        if name in self.taken:
            return f"{name} already exists."
        return ""

    def _submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        problem = self._problem(name)
        if problem:
            self.query_one("#name-error", Static).update(problem)
            return
        self.dismiss(name)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)
