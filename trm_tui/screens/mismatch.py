"""The safety check made visible: the run's saved profile differs from the one about to train."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Static

from trm_core.profile import Mismatch, worst

from .modals import Dialog

SEVERITY_STYLES = {"incompatible": "bold red", "changes-training": "yellow", "harmless": "green"}


def _short(value: object, width: int = 22) -> str:
    s = repr(value) if isinstance(value, str) else str(value)
    return s if len(s) <= width else s[: width - 1] + "…"


class MismatchModal(Dialog[str | None]):
    """Dismisses with "resume", "fresh" or None (cancel)."""

    def __init__(self, mismatches: list[Mismatch], run_dir: Path, fresh_dir: Path) -> None:
        super().__init__()
        self.mismatches, self.run_dir, self.fresh_dir = mismatches, run_dir, fresh_dir
        self.incompatible = worst(mismatches) == "incompatible"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            if self.incompatible:
                text = (
                    f"The checkpoint in {self.run_dir.name}/ cannot be resumed with this profile: "
                    "the weights do not fit. Start fresh in a new run directory, or cancel."
                )
            else:
                text = (
                    f"The checkpoint in {self.run_dir.name}/ was trained with a different profile. "
                    "Resume with the changes below, start fresh, or cancel."
                )
            yield Static(text, classes="question")
            yield DataTable(id="mismatches", cursor_type="row", zebra_stripes=True)
            with Horizontal(classes="buttons"):
                if not self.incompatible:
                    yield Button("Resume anyway", id="resume", variant="warning")
                yield Button(f"Fresh: {self.fresh_dir.name}", id="fresh", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "saved", "current", "severity")
        for m in self.mismatches:
            table.add_row(
                m.key, _short(m.saved), _short(m.current), Text(m.severity, style=SEVERITY_STYLES[m.severity])
            )
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)
