"""One evaluated answer in full (Enter on the Evaluation screen's table): the question, the gold
answer, and what the model generated with and, when it was scored both ways, without the calculator."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from trm_core.printable import printable

from .modals import Dialog


def verdict(correct: Any) -> tuple[str, str]:
    return ("✓ right", "green") if correct else ("✗ wrong", "bold red")


def answer_text(s: dict[str, Any]) -> Text:
    t = Text()
    t.append(f"Problem {s.get('index', '?')}\n", style="bold")
    t.append(printable(str(s.get("question", "")), keep_lines=True) + "\n\n")
    t.append("Gold: ", style="bold")
    t.append(printable(str(s.get("expected"))) + "\n\n")
    t.append("With the calculator: ", style="bold")
    t.append(*verdict(s.get("correct")))
    t.append(f" (answer {printable(str(s.get('predicted') or '–'))})\n")
    t.append(printable(str(s.get("generated", "")).strip(), keep_lines=True) + "\n")
    if "generated_no_calculator" in s:
        t.append("\nWithout the calculator: ", style="bold")
        t.append(*verdict(s.get("correct_no_calculator")))
        t.append("\n" + printable(str(s["generated_no_calculator"]).strip(), keep_lines=True) + "\n")
    else:
        t.append("\n(scored with the calculator only)", style="dim")
    return t


class AnswerModal(Dialog[None]):
    def __init__(self, sample: dict[str, Any]) -> None:
        super().__init__()
        self.sample = sample

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            with VerticalScroll(id="answer-body"):
                yield Static(answer_text(self.sample), id="answer-text")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#answer-body").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)
