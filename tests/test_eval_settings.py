"""Eval settings are one frozen value; its record form and its `trm-tui eval` argv form are derived
from it, and the argv parses back to the same value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trm_core.errors import UserError
from trm_core.evaluation.settings import EvalSettings
from trm_tui.__main__ import build_parser
from trm_tui.commands.eval import settings_from_args

EXAMPLES = [
    EvalSettings(),
    EvalSettings(which="latest", split="train", limit=7, calculator=False, both=True, max_tokens=64),
    EvalSettings(
        which="300", data="jsonl:data/gsm8k", batch_size=4, calculator_mode="write", calculator=True
    ),
    EvalSettings(synthetic_steps=(3, 4), limit=50),
]


@pytest.mark.parametrize("settings", EXAMPLES, ids=range(len(EXAMPLES)))
def test_the_argv_form_parses_back_to_the_same_settings(settings: EvalSettings) -> None:
    args = build_parser().parse_args(["eval", "runs/x", *settings.argv()])
    assert settings_from_args(args) == settings


def test_settings_are_frozen_and_checked() -> None:
    s = EvalSettings(limit=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.limit = 4  # type: ignore[misc]
    assert EvalSettings(which=300).which == "300"  # type: ignore[arg-type]
    assert EvalSettings(synthetic_steps=[3, 4]).synthetic_steps == (3, 4)  # type: ignore[arg-type]
    for kw, phrase in (
        ({"limit": 0}, "limit must be at least 1"),
        ({"calculator_mode": "guess"}, "'verify' or 'write'"),
        ({"synthetic_steps": (3, 4), "split": "train"}, "use split 'test'"),
        ({"synthetic_steps": (4, 3)}, "1 <= A <= B"),
    ):
        with pytest.raises(UserError, match=phrase):
            EvalSettings(**kw)  # type: ignore[arg-type]


def test_the_record_form_is_the_one_records_have_always_had() -> None:
    rec = EvalSettings(limit=5, calculator=None).record(calculator=True, max_tokens=256)
    assert rec == {
        "which": "best", "data": None, "split": "test", "limit": 5, "calculator": True, "both": False,
        "max_tokens": 256, "batch_size": None, "calculator_mode": "verify",
    }  # fmt: skip
    rec = EvalSettings(synthetic_steps=(3, 4)).record(calculator=False, max_tokens=8)
    assert rec["synthetic_steps"] == [3, 4]


def test_a_sweep_runs_its_eval_with_the_same_flags(tmp_path: Path) -> None:
    """The child-process eval command is `EvalSettings.argv()`, not a second hand-written copy."""
    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import load_sweep

    from .test_experiments import SWEEP

    file = tmp_path / "tiny.toml"
    file.write_text(SWEEP)
    queue = SweepQueue(load_sweep(file), tmp_path / "runs")
    settings = queue.settings
    assert settings is not None
    train, ev = queue.commands(queue.items[0])
    assert ev[:3] == ["trm-tui", "eval", str(queue.items[0].run_dir)]
    assert ev[3:] == settings.argv()
    assert settings_from_args(build_parser().parse_args(ev[1:])) == settings


def test_a_record_from_before_calculator_mode_still_answers_the_sweep(tmp_path: Path) -> None:
    from trm_core.evaluation.record import write_eval_record
    from trm_core.experiments.manifest import eval_is_current
    from trm_core.profile import parse_profile
    from trm_core.training.trainer import Trainer

    from .cli_harness import CORPUS

    run = tmp_path / "run"
    assert (
        Trainer(parse_profile((CORPUS / "profiles" / "good.toml").read_text()), run).run().reason
        == "finished"
    )
    settings = EvalSettings(limit=2, calculator=True)
    assert not eval_is_current(run, settings)
    old = settings.record(calculator=True, max_tokens=4)
    del old["calculator_mode"]  # records written before the key existed
    base = {"checkpoint": "best", "split": "test", "data": "synthetic", "limit": 2, "n": 2, "accuracy": 0.5}
    write_eval_record(run, {**base, "step": 2, "settings": old, "created": "2026-01-01T00:00:00+00:00"})
    assert eval_is_current(run, settings)
    assert not eval_is_current(run, EvalSettings(limit=2, calculator=True, calculator_mode="write"))
    assert not eval_is_current(run, EvalSettings(limit=2, calculator=True, synthetic_steps=(3, 4)))


def test_a_sweep_runs_its_depth_studies_after_each_eval(tmp_path: Path) -> None:
    """[[eval.depth]]: each run evaluated at every H-cycles on harder problems, RUN/<name> written
    as `eval --json` writes it (in process), and the same study as a child command (--jobs)."""
    import json

    from trm_core.experiments.queue import SweepQueue
    from trm_core.experiments.sweep import SweepError, load_sweep

    from .test_experiments import GOOD

    text = f"""name = "study"
base = "{GOOD}"
seeds = [0]
[set]
"train.max_steps" = 2
[eval]
limit = 2
max_tokens = 4
calculator = true
[[eval.depth]]
name = "depth-hard.json"
synthetic_steps = "3-4"
H_cycles = [1, 2]
limit = 3
"""
    file = tmp_path / "study.toml"
    file.write_text(text)
    queue = SweepQueue(load_sweep(file), tmp_path / "runs")
    (item,) = queue.items
    _, ev, study = queue.commands(item)
    assert study[3:] == [
        "--which", "best", "--split", "test", "--limit", "3", "--calculator", "--max-tokens", "4",
        "--synthetic-steps", "3-4", "--H-cycles", "1,2", "--json", str(item.run_dir / "depth-hard.json"),
    ]  # fmt: skip
    assert build_parser().parse_args(study[1:]).json == str(item.run_dir / "depth-hard.json")
    assert queue.run() == 0
    rows = json.loads((item.run_dir / "depth-hard.json").read_text())["results"]
    assert [r["H_cycles"] for r in rows] == [1, 2] and all(set(r["by_steps"]) <= {"3", "4"} for r in rows)
    bad = text.replace('synthetic_steps = "3-4"', 'synthetic_steps = "4-3"').replace("H_cycles", "H_cycle")
    file.write_text(bad)
    with pytest.raises(SweepError, match="unknown key 'H_cycle'"):
        load_sweep(file)
