"""Text that is safe to echo on a terminal: one helper for the CLI and the app.

Paths, profile names, prompts, model output and error messages may hold characters that drive
the terminal instead of printing: C0/C1 controls (ESC starts colour, cursor and title sequences;
CSI U+009B is ESC's one-byte form), DEL, Unicode bidi overrides and isolates (which reorder what
follows them, "Trojan Source"), and lone surrogates (undecodable argv bytes, which cannot even be
encoded). `printable` shows each as a visible escape (`\\x1b`, `\\u202e`), so nothing is hidden
and nothing is executed.
"""

from __future__ import annotations

import re

__all__ = ["printable", "shell_join", "shell_quote"]

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_UNSAFE_BUT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_lines: bool = False) -> str:
    """`text` with every terminal-driving character shown as an escape; `keep_lines` keeps \\n and \\t."""
    return (_UNSAFE_BUT_LINES if keep_lines else _UNSAFE).sub(_escape, str(text))


def shell_quote(arg: str) -> str:
    """`arg` quoted for a POSIX shell and safe to print: shlex.quote when it holds no terminal-driving
    character, else bash's $'…' form with each one escaped (\\x1b, \\x0a, \\u202e), so a printed
    command stays one line, drives nothing, and pastes back as exactly `arg` (bash, zsh, ksh)."""
    import shlex

    arg = str(arg)
    if not _UNSAFE.search(arg):
        return shlex.quote(arg)
    body = arg.replace("\\", "\\\\").replace("'", "\\'")
    return "$'" + _UNSAFE.sub(_escape, body) + "'"


def shell_join(argv: list[str]) -> str:
    """A command line to print: every argument through shell_quote."""
    return " ".join(shell_quote(a) for a in argv)
