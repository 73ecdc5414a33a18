"""`trm-tui` command line: the app by default, headless subcommands for everything else.

Each subcommand lives in `trm_tui/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Heavy imports (torch, Textual) happen inside `run`, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import MutableMapping
from typing import NoReturn

# Shorter OpenMP spin-waiting, so two torch processes on a small machine do not steal each other's
# cores (measured: docs/performance.md, "OpenMP spin"). libgomp reads it once, when torch loads, so
# it is set before anything imports torch. A user's own setting wins.
GOMP_SPINCOUNT = "20000"

COMMANDS = ["app", "check", "tokenize", "train", "generate", "eval", "bench", "sweep", "compare"]
COMMANDS += ["plot", "export-tb"]  # a dash in a command's name is an underscore in its module's


def tune_openmp(environ: MutableMapping[str, str]) -> None:
    """Shorter OpenMP spin-waiting (GOMP_SPINCOUNT), unless the user set how OpenMP waits."""
    if "OMP_WAIT_POLICY" not in environ:
        environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)


# argparse's own fields (`%(default)s`, `%(prog)s`) and `%%` stay; any other `%` is escaped.
_PERCENT = re.compile(r"%%|%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%")


class SafeHelpFormatter(argparse.HelpFormatter):
    """Help whose text cannot break `--help`: argparse %-formats every help string, so a bare `%`
    ("95% interval") raised TypeError; each `%` that is not `%%` or a `%(name)s` field is escaped."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None:
            return None
        return _PERCENT.sub(lambda m: "%%" if m.group() == "%" else m.group(), text)

    def _expand_help(self, action: argparse.Action) -> str:
        try:
            return super()._expand_help(action)
        except (KeyError, TypeError, ValueError):  # a field argparse does not know: show it as written
            return action.help or ""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one sentence on stderr (exit 2), not the usage block, and whose
    help strings are safe to format (SafeHelpFormatter, inherited by every subcommand's parser)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", SafeHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        from trm_core.printable import printable

        sys.stderr.write(f"trm-tui: {printable(message)}; see '{printable(self.prog)} --help'\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trm-tui",
        description="Train Tiny Recursive Models on GSM8K and talk to them. "
        "Without a subcommand, opens the app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"trm_tui.commands.{name.replace('-', '_')}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tune_openmp(os.environ)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["app", *argv]  # `trm-tui --runs-dir X` opens the app
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from trm_core.errors import UserError

    try:
        return int(args.run(args) or 0)
    except UserError as e:
        from trm_core.printable import printable

        problems = getattr(e, "problems", None)
        if isinstance(problems, list) and len(problems) > 1:  # one line each, never joined by a literal \x0a
            print(f"trm-tui: {len(problems)} problems:", file=sys.stderr)
            for problem in problems:
                print(f"  {printable(str(problem))}", file=sys.stderr)
        else:
            print(f"trm-tui: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("trm-tui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
