"""Generated text on its way out: pieces, stop strings, calculator spans and prompt cleaning.

`TextStream` collects the continuation with the source of every span (model or calculator) and
yields `Piece`s as soon as they are safe to show, holding back a tail that could still grow into
a stop string. Calculator-assisted decoding (GSM8K paper), as a verifier: inside an open
`<<expr=`, `calculation_fix` lets the model write the result and replaces only a wrong one (or,
with verify=False, writes every `result>>` itself, as `pending_calculation` gives it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from trm_core.generation.calculator import (
    complete_result,
    format_result,
    result_prefix,
    result_spelled,
    safe_eval,
)

__all__ = ["Piece", "calculation_fix", "in_calculation", "open_calculation", "clean_prompt"]

CONTEXT_TAIL = 512  # text kept for calculator detection (an expression is at most 200 characters)


@dataclass
class Piece:
    text: str
    source: str = "model"  # "model" | "calculator"
    depth: int | None = None  # supervision steps the model thought before these tokens (None: calculator)


# --------------------------------------------------------------------------- calculator

_OPEN_CALC = re.compile(r"<<([^<>]*)=$")


def open_calculation(text: str) -> str | None:
    """The expression of an open `<<expr=` that `text` ends with (no `>>` after the `<<`), else None."""
    if not text.endswith("="):
        return None
    start = text.rfind("<<")
    if start < 0 or ">>" in text[start:]:
        return None
    m = _OPEN_CALC.search(text, start)
    return m.group(1) if m else None


def pending_calculation(text: str) -> str | None:
    """`result>>` for the open calculation `text` ends with, or None when there is none or it is not computable."""
    expr = open_calculation(text)
    if expr is None or not expr.strip():
        return None
    value = safe_eval(expr)
    return None if value is None else format_result(value) + ">>"


def in_calculation(context: str) -> bool:
    """Whether `context` ends inside an unclosed `<<` (cheap: the decode loops ask every token)."""
    return context.rfind("<<") > context.rfind(">>")


def calculation_fix(context: str, proposed: str, *, verify: bool = True) -> str | None:
    """What the calculator writes instead of `proposed` (the model's next piece; "" = it wants to
    stop) after `context`, or None to keep the model's piece.

    verify=True (the default): inside an open `<<expr=…`, the model writes the result; its piece
    is kept while the text can still spell the right value ("9.00", ".5" stay as written) and
    closes with `>>`; a piece that would make it wrong is replaced by the rest of the right result
    and `>>` (a correction). verify=False: the calculator writes every result itself, right after
    the `=` (the model never writes one). An expression that is not computable is left alone.
    """
    start = context.rfind("<<")
    if start < 0 or ">>" in context[start:]:
        return None
    expr, eq, written = context[start + 2 :].partition("=")
    if not eq or "<" in expr or not expr.strip():
        return None
    if not verify:
        return pending_calculation(context) if not written else None
    value = safe_eval(expr)
    closing = written.endswith(">")  # the model has written the first ">" of ">>"
    number = written[:-1] if closing else written
    if value is None or not result_prefix(number, value) or (closing and not result_spelled(number, value)):
        return None  # not computable, or not ours to verify (a prompt that holds the open bracket)
    if closing:
        return None if proposed.startswith(">") else ">"
    text = number + proposed
    cut = text.find(">")
    if cut < 0:
        return None if proposed and result_prefix(text, value) else complete_result(number, value) + ">>"
    rest = text[cut:]
    if result_spelled(text[:cut], value) and (rest.startswith(">>") or rest == ">"):
        return None
    return complete_result(number, value) + ">>"


def clean_prompt(text: str) -> str:
    """`text` made encodable: lone surrogates (undecodable bytes read with surrogateescape) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:  # surrogates that are not escaped bytes
            return text.encode("utf-8", "replace").decode("utf-8")


# --------------------------------------------------------------------------- streaming text


class TextStream:
    """Generated text with the source (and depth) of every span; yields pieces, holding back
    possible stop strings. `token_depths` holds (offset in `text`, depth) of every model token.

    It also keeps the tail of prompt + text (`context`) that the calculator reads."""

    def __init__(self, stop: Sequence[str], prompt: str = ""):
        self.stop = tuple(s for s in stop if s)
        self.context = clean_prompt(prompt)[-CONTEXT_TAIL:]
        self.text = ""
        self._spans: list[tuple[int, str, int | None]] = []  # (start offset, source, depth)
        self.token_depths: list[tuple[int, int]] = []
        self._emitted = 0
        self.stopped = False

    @property
    def calculator_spans(self) -> int:
        """Spans the calculator wrote: with the verifier, the model's results it corrected."""
        return sum(1 for _, source, _ in self._spans if source == "calculator")

    def add(self, text: str, source: str, depth: int | None = None, *, token: bool = True) -> None:
        """Append `text`; `depth` is the depth of the model token it decodes (`token` False: the
        decoder's held-back tail of earlier tokens, shown with their depth but not counted again)."""
        if depth is not None and token:
            self.token_depths.append((len(self.text), depth))
        if text:
            if not self._spans or self._spans[-1][1:] != (source, depth):
                self._spans.append((len(self.text), source, depth))
            self.text += text
            self.context = (self.context + text)[-CONTEXT_TAIL:]

    def pending_calculation(self) -> str | None:
        """What the calculator writes next (`result>>`) when the text ends in an open `<<expr=`, else None."""
        return pending_calculation(self.context)

    def _pieces(self, end: int) -> list[Piece]:
        out: list[Piece] = []
        for i, (start, source, depth) in enumerate(self._spans):
            stop = self._spans[i + 1][0] if i + 1 < len(self._spans) else len(self.text)
            lo, hi = max(start, self._emitted), min(stop, end)
            if lo < hi:
                out.append(Piece(self.text[lo:hi], source, depth))
        self._emitted = max(self._emitted, end)
        return out

    def ready(self) -> list[Piece]:
        """Pieces safe to show now. Sets `stopped` (and trims) when a stop string has appeared."""
        if not self.stop:
            return self._pieces(len(self.text))
        longest = max(len(s) for s in self.stop)
        window_start = max(0, self._emitted - longest)
        hits = [i for s in self.stop if (i := self.text.find(s, window_start)) >= 0]
        if hits:
            cut = min(hits)
            self.text = self.text[:cut]
            self.stopped = True
            return self._pieces(cut)
        # Hold back a tail that could still grow into a stop string.
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return self._pieces(len(self.text) - hold)

    def finish(self) -> list[Piece]:
        return self._pieces(len(self.text))
