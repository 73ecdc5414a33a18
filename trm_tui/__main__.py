"""`trm-tui` command line: the app by default, headless subcommands for everything else.

Each subcommand lives in `trm_tui/commands/<name>.py` with `add_parser(subparsers)` and
`run(args) -> int`. Heavy imports (torch, Textual) happen inside `run`, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["app", "check", "tokenize", "train", "generate", "eval", "bench", "runs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trm-tui",
        description="Train Tiny Recursive Models on GSM8K and talk to them. "
        "Without a subcommand, opens the app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"trm_tui.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"trm_tui.commands.{name}":
                continue  # not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
        print(f"trm-tui: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("trm-tui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
