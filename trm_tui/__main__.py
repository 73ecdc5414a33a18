"""`trm-tui` command line: the app by default, headless subcommands for everything else.

Each subcommand lives in `trm_tui/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Heavy imports (torch, Textual) happen inside `run`, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one sentence on stderr (exit 2), not the usage block."""

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

        print(f"trm-tui: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("trm-tui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
