"""`trm-tui --help` and every subcommand's `--help` print and exit 0 (a bare % in a help string
made argparse raise TypeError for the top-level --help)."""

from __future__ import annotations

import pytest

from trm_tui.__main__ import COMMANDS, main


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help_prints_and_exits_0(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert "usage: trm-tui" in capsys.readouterr().out
