"""The command line's process setup (what `main` does before any subcommand imports torch)."""

from __future__ import annotations

import os
import subprocess
import sys

from trm_tui.__main__ import GOMP_SPINCOUNT, tune_openmp


def test_tune_openmp_shortens_spinning_by_default() -> None:
    env: dict[str, str] = {}
    tune_openmp(env)
    assert env == {"GOMP_SPINCOUNT": GOMP_SPINCOUNT}


def test_tune_openmp_keeps_the_users_choice() -> None:
    env = {"GOMP_SPINCOUNT": "300000"}
    tune_openmp(env)
    assert env == {"GOMP_SPINCOUNT": "300000"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}  # an explicit wait policy: no spin count of ours on top
    tune_openmp(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_main_sets_the_spin_count_before_torch_is_imported() -> None:
    code = (
        "import os, sys\n"
        "from trm_tui.__main__ import main\n"
        "seen = {}\n"
        "import trm_tui.commands.check as check\n"
        "def spy(args):\n"
        "    seen['spin'] = os.environ.get('GOMP_SPINCOUNT')\n"
        "    seen['torch'] = 'torch' in sys.modules\n"
        "    return 0\n"
        "check.run = spy\n"
        "main(['check', 'profiles/quickstart.toml'])\n"
        "print(seen['spin'], seen['torch'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [GOMP_SPINCOUNT, "False"]
