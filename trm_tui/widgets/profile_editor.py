"""A TOML editor for profiles with live (debounced) validation that points at the bad line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static, TextArea

from trm_core.profile import Profile, ProfileError, parse_profile

VALIDATE_DELAY_S = 0.3
_SYNTAX_LINE = re.compile(r"at line (\d+)")
_KEY_PATH = re.compile(r"\b([A-Za-z_]+)\.([A-Za-z_]+)\b")
_SECTION = re.compile(r"^\s*\[\s*([A-Za-z_][\w.-]*)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*=")


@dataclass(frozen=True)
class Validation:
    profile: Profile | None
    problem: str = ""  # the first problem, without the source prefix
    line: int | None = None  # 0-based line the problem points at
    count: int = 0  # number of problems

    @property
    def ok(self) -> bool:
        return self.profile is not None


def find_key_line(text: str, section: str, key: str) -> int | None:
    """0-based line where `[section] key = …` is set (or the section header when the key is absent)."""
    current = ""
    header = None
    for i, line in enumerate(text.splitlines()):
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            if current == section:
                header = i
            continue
        k = _KEY.match(line)
        if k and current == section and k.group(1) == key:
            return i
    return header


def locate(text: str, problem: str) -> int | None:
    """The 0-based line a parse_profile problem sentence points at, if it can be found."""
    m = _SYNTAX_LINE.search(problem)
    if m:
        return max(0, int(m.group(1)) - 1)
    for section, key in _KEY_PATH.findall(problem):
        line = find_key_line(text, section, key)
        if line is not None:
            return line
    for top in ("name", "description"):
        if problem.startswith(top + " ") or f"key {top}" in problem:
            return find_key_line(text, "", top)
    return None


def validate(text: str, source: str = "<profile>") -> Validation:
    try:
        return Validation(parse_profile(text, source))
    except ProfileError as e:
        first = e.problems[0] if e.problems else str(e)
        prefix = f"{source}: "
        if first.startswith(prefix):
            first = first[len(prefix) :]
        return Validation(None, first, locate(text, first), len(e.problems))


class ProfileEditor(Vertical):
    """TextArea.code_editor (TOML) plus a status line; posts `Validated` after each debounced check."""

    DEFAULT_CSS = """
    ProfileEditor { height: 1fr; }
    ProfileEditor > TextArea { height: 1fr; }
    ProfileEditor > #validation { height: auto; max-height: 3; padding: 0 1; }
    """

    BINDINGS = [Binding("ctrl+t", "indent", "Indent", id="editor.indent", show=False)]

    class Validated(Message):
        def __init__(self, editor: ProfileEditor, result: Validation) -> None:
            super().__init__()
            self.editor = editor
            self.result = result

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = "<profile>"
        self.saved_text = ""
        self.result = Validation(None, "no profile open")
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        # Tab moves the focus as everywhere else; ctrl+t indents (TOML rarely needs it)
        yield TextArea.code_editor(
            "", language="toml", id="editor-text", soft_wrap=False, tab_behavior="focus"
        )
        yield Static(id="validation")

    @property
    def text_area(self) -> TextArea:
        return self.query_one("#editor-text", TextArea)

    @property
    def text(self) -> str:
        return self.text_area.text

    @property
    def dirty(self) -> bool:
        return self.text != self.saved_text

    def load(self, text: str, source: str) -> None:
        self.source, self.saved_text = source, text
        self.text_area.load_text(text)
        self.validate_now()

    def mark_saved(self) -> None:
        self.saved_text = self.text
        self._show()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(VALIDATE_DELAY_S, self.validate_now)
        self._show()

    def validate_now(self) -> Validation:
        self.result = validate(self.text, self.source)
        self._show()
        self.post_message(self.Validated(self, self.result))
        return self.result

    def action_indent(self) -> None:
        ta = self.text_area
        ta.insert(" " * ta.indent_width)

    def goto_problem(self) -> None:
        if self.result.line is not None:
            self.text_area.move_cursor((self.result.line, 0))
            self.text_area.focus()

    def _show(self) -> None:
        r = self.result
        t = Text()
        if r.ok:
            t.append("✓ valid", style="bold green")
        else:
            t.append("✗ ", style="bold red")
            if r.line is not None:
                t.append(f"line {r.line + 1}: ", style="bold red")
            t.append(r.problem, style="red")
            if r.count > 1:
                t.append(f" (+{r.count - 1} more)", style="dim red")
        if self.dirty:
            t.append("  · modified, ctrl+s saves", style="yellow")
        self.query_one("#validation", Static).update(t)
