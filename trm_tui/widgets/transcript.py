"""The REPL's output: prompts and streamed answers, with calculator spans marked.

Pieces arrive from a worker thread into a `PieceBuffer` (a lock, no widgets); the REPL drains it
on a ~40 ms timer and appends the batch here, so a long answer costs one redraw per batch, not
one per token.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from trm_core.printable import printable

from ..backend import PieceLike

SOURCE_STYLES = {"model": "", "calculator": "bold #1e1e1e on #8bd17c", "prompt": "dim"}


class PieceBuffer:
    """Thread-safe hand-off of generated pieces from the worker to the app thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, str]] = []

    def push(self, text: str, source: str) -> None:
        with self._lock:
            self._items.append((text, source))

    def drain(self) -> list[tuple[str, str]]:
        with self._lock:
            items, self._items = self._items, []
        return items


class Transcript(VerticalScroll):
    DEFAULT_CSS = """
    Transcript { height: 1fr; }
    Transcript > Static { width: 1fr; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.content = Text()
        self._body = Static(self.content)

    def compose(self):  # type: ignore[override]
        yield self._body

    @property
    def plain(self) -> str:
        return self.content.plain

    def _update(self) -> None:
        self._body.update(self.content)
        self.scroll_end(animate=False)

    def add_prompt(self, prompt: str, header: str = "") -> None:
        if self.content.plain:
            self.content.append("\n\n")
        if header:
            self.content.append(printable(header) + "\n", style="dim italic")
        self.content.append(printable(prompt, keep_lines=True), style="bold cyan")
        self._update()

    def append_pieces(self, pieces: Iterable[tuple[str, str] | PieceLike]) -> None:
        for piece in pieces:
            text, source = piece if isinstance(piece, tuple) else (piece.text, piece.source)
            # a model (or a prompt) must never drive the terminal: controls shown as escapes
            self.content.append(printable(text, keep_lines=True), style=SOURCE_STYLES.get(source, ""))
        self._update()

    def add_note(self, note: str, style: str = "dim") -> None:
        self.content.append(f"\n[{printable(note)}]", style=style)
        self._update()

    def clear(self) -> None:
        self.content = Text()
        self._update()
