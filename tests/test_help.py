"""`--help` works for the program and every subcommand (issue 27.1: a bare % in compare's help text
made `trm-tui --help` a TypeError traceback). The subcommands are read from the parser itself, so a
new one is covered without editing this file."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests.cli_harness import REPO, cli_env
from trm_tui.__main__ import OneLineParser, build_parser


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("argv", [["--help"], ["-h"]] + [[c, "--help"] for c in _subcommands()])
def test_help_exits_zero_without_a_traceback(argv: list[str], tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "trm_tui", *argv],
        cwd=REPO,
        env=cli_env(tmp_path),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert b"Traceback" not in r.stderr and b"usage:" in r.stdout


def test_any_help_text_formats() -> None:
    """The class, not the instance: bare %, a trailing %, %% and %(default)s all format."""
    p = OneLineParser(prog="x")
    p.add_argument("--a", default=3, help="95% interval, 100%, 5%% literal, default %(default)s, end %")
    sub = p.add_subparsers()
    sub.add_parser("s", help="50% of the time")
    text = p.format_help()
    assert "95% interval, 100%, 5% literal, default 3, end %" in text
    assert "50% of the time" in text
    p.add_argument("--b", help="an unknown field %(nope)s")
    assert "an unknown field %(nope)s" in p.format_help()
