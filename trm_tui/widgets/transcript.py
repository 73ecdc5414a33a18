"""The REPL's output: prompts and streamed answers, with calculator spans marked and, when
shown, every model token shaded by its depth (the supervision steps the model thought before it).

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
SHALLOW, DEEP = (0x1D, 0x2B, 0x3A), (0xC0, 0x6A, 0x1A)  # depth ramp: 1 step … all steps


def depth_style(depth: int, steps: int) -> str:
    """A background on the ramp from shallow (1 step) to deep (`steps`), white text."""
    f = 1.0 if steps <= 1 else (min(depth, steps) - 1) / (steps - 1)
    r, g, b = (round(a + (z - a) * f) for a, z in zip(SHALLOW, DEEP, strict=True))
    return f"#ffffff on #{r:02x}{g:02x}{b:02x}"


def depth_legend(steps: int) -> Text:
    """'depth 1 2 3' with each number on its shade."""
    legend = Text("depth ")
    for d in range(1, steps + 1):
        legend.append(f" {d} ", style=depth_style(d, steps))
    return legend


class PieceBuffer:
    """Thread-safe hand-off of generated pieces from the worker to the app thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, str] | tuple[str, str, int | None]] = []

    def push(self, text: str, source: str, depth: int | None = None) -> None:
        with self._lock:
            self._items.append((text, source) if depth is None else (text, source, depth))

    def drain(self) -> list[tuple[str, str] | tuple[str, str, int | None]]:
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
        self.depth_spans: list[tuple[int, int, int]] = []  # (start, end, depth) in `content`
        self.show_depth = False
        self.steps = 1  # the most steps a token can think (the ramp's deep end)

    def compose(self):  # type: ignore[override]
        yield self._body

    @property
    def plain(self) -> str:
        return self.content.plain

    def _update(self) -> None:
        shown = self.content
        if self.show_depth and self.depth_spans:
            shown = self.content.copy()
            for start, end, depth in self.depth_spans:
                shown.stylize(depth_style(depth, self.steps), start, end)
        self._body.update(shown)
        self.scroll_end(animate=False)

    def set_show_depth(self, show: bool, steps: int | None = None) -> None:
        self.show_depth = show
        if steps is not None:
            self.steps = steps
        self._update()

    def add_prompt(self, prompt: str, header: str = "") -> None:
        if self.content.plain:
            self.content.append("\n\n")
        if header:
            self.content.append(printable(header) + "\n", style="dim italic")
        self.content.append(printable(prompt, keep_lines=True), style="bold cyan")
        self._update()

    def append_pieces(self, pieces: Iterable[tuple | PieceLike]) -> None:
        for piece in pieces:
            if isinstance(piece, tuple):
                text, source, depth = (*piece, None)[:3]
            else:
                text, source, depth = piece.text, piece.source, getattr(piece, "depth", None)
            start = len(self.content)
            # a model (or a prompt) must never drive the terminal: controls shown as escapes
            self.content.append(printable(text, keep_lines=True), style=SOURCE_STYLES.get(source, ""))
            if depth is not None and text:
                self.depth_spans.append((start, len(self.content), depth))
        self._update()

    def add_note(self, note: str, style: str = "dim") -> None:
        self.content.append(f"\n[{printable(note, keep_lines=True)}]", style=style)
        self._update()

    def clear(self) -> None:
        self.content = Text()
        self.depth_spans = []
        self._update()
