"""`trm-tui app` (also plain `trm-tui`): the terminal workbench."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="open the terminal workbench (the default)")
    p.add_argument(
        "--profiles-dir", default="profiles", type=Path, help="profiles directory (default ./profiles)"
    )
    p.add_argument("--runs-dir", default="runs", type=Path, help="runs directory (default ./runs)")
    p.add_argument("--profile", metavar="NAME", help="select this profile at start")
    p.add_argument(
        "--no-mouse", action="store_true", help="leave the mouse to the terminal (native selection)"
    )
    p.add_argument("--theme", metavar="NAME", help="Textual theme, e.g. textual-dark, nord, gruvbox")
    p.add_argument(
        "--keymap",
        type=Path,
        metavar="FILE",
        help='TOML file of binding id = "keys", e.g. train.start = "ctrl+t" (ids: app.*, profiles.*, train.*, repl.*, runs.*)',
    )
    p.set_defaults(run=run)


def _keymap(path: Path | None) -> dict[str, str] | None:
    from trm_core.errors import UserError

    if path is None:
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read keymap {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"keymap {path} is not valid TOML: {e}") from None

    def flatten(d: dict, prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = str(v)
        return out

    return flatten(raw)


def run(args: argparse.Namespace) -> int:
    from textual.theme import BUILTIN_THEMES

    from trm_core.errors import UserError

    if args.theme and args.theme not in BUILTIN_THEMES:
        raise UserError(f"unknown theme {args.theme!r}; try one of: {', '.join(sorted(BUILTIN_THEMES))}")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # without a terminal Textual reads EOF in a loop (a core at ~50 %) and draws to nowhere
        raise UserError(
            "the app needs a terminal (stdin and stdout are not a tty); the headless commands are listed by trm-tui --help"
        )
    keymap = _keymap(args.keymap)
    from trm_tui.app import TrmApp

    app = TrmApp(
        profiles_dir=args.profiles_dir,
        runs_dir=args.runs_dir,
        profile=args.profile,
        theme=args.theme,
        keymap=keymap,
    )
    app.run(mouse=not args.no_mouse)
    return app.return_code or 0
