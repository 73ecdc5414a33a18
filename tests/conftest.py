"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) on CPU with tiny models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_harness import CORPUS, REPO, CliServer, cli_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = REPO.parent / "shared"


def _torch_threads() -> None:
    try:
        import torch

        torch.set_num_threads(1)  # 2 cores shared by xdist workers
    except ImportError:
        pass


_torch_threads()


@pytest.fixture
def anyio_backend() -> str:
    """The app tests (pytest.mark.anyio) run on asyncio, Textual's loop."""
    return "asyncio"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (real GSM8K and GPT-2 files); skip cleanly when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared GSM8K/GPT-2 files are not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def gsm8k_dir(shared_dir: Path) -> Path:
    d = shared_dir / "gsm8k"
    if not (d / "train.jsonl").is_file():
        pytest.skip(f"{d}/train.jsonl is absent")
    return d


@pytest.fixture(scope="session")
def gpt2_dir(shared_dir: Path) -> Path:
    d = shared_dir / "gpt2"
    if not (d / "vocab.json").is_file():
        pytest.skip(f"{d}/vocab.json is absent")
    return d


# --------------------------------------------------------------------------- the CLI harness (tests/cli_harness.py)
# Session-scoped: one server and one trained run per process (per xdist worker), shared by
# test_bad_inputs, test_crash_safety and test_no_code_exec; each is built only if a test asks for it.


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    base = tmp_path_factory.mktemp("cli-server")
    server = CliServer(cli_env(base), base)
    yield server
    server.close()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """profiles/good.toml trained for 2 steps (checkpoints at 1 and 2, EMA on); copy it, never touch it."""
    from trm_core.profile import load_profile
    from trm_core.runs.read import resolve_checkpoint
    from trm_core.training.trainer import Trainer

    run = tmp_path_factory.mktemp("trained") / "run"
    done = Trainer(load_profile(CORPUS / "profiles" / "good.toml"), run).run()
    assert done.reason == "finished", done.message
    assert resolve_checkpoint(run, "best") == resolve_checkpoint(run, "latest")
    return run
