"""The app tests' fakes held to the real thing: the same assertions on FakeTrainer and Trainer.

The real run is the session's `trained_run` (profiles/good.toml, 2 steps; every event is in its
metrics.jsonl), so this costs no extra training. Fresh run-directory names are not faked at all:
`fake_backend` uses the real `propose_fresh_run_dir`, checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeTrainer, TrainerScript, fake_backend
from trm_core.events import (
    CheckpointEvent,
    DoneEvent,
    EarlyStopEvent,
    EvalEvent,
    Event,
    StartEvent,
    StepEvent,
    read_events,
)
from trm_core.profile import parse_profile


def assert_run_contract(run_dir: Path, events: list[Event], total_steps: int) -> None:
    """What the app relies on in a finished run's event sequence and directory."""
    start, done = events[0], events[-1]
    assert isinstance(start, StartEvent) and start.step == 0 and not start.resumed
    assert start.total_steps == total_steps
    assert isinstance(done, DoneEvent) and done.reason == "finished" and done.step == total_steps
    assert sum(isinstance(e, DoneEvent) for e in events) == 1
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps and steps == sorted(set(steps)) and steps[0] >= 1 and steps[-1] == total_steps
    for i, e in enumerate(events):
        if isinstance(e, EvalEvent) and e.step > 0:  # a judged evaluation: its early-stop status next
            nxt = events[i + 1]
            assert isinstance(nxt, EarlyStopEvent) and nxt.step == e.step
    ckpts = [e for e in events if isinstance(e, CheckpointEvent)]
    assert ckpts and ckpts[-1].step == total_steps
    for c in ckpts:
        path = Path(c.path)
        assert path.parent == run_dir / "checkpoints" and path.name == f"step-{c.step:07d}"
    assert (run_dir / "checkpoints" / "latest").resolve() == Path(ckpts[-1].path).resolve()
    assert (Path(ckpts[-1].path) / "profile.toml").is_file()
    assert (run_dir / "profile.toml").is_file()
    assert not (run_dir / ".lock").exists()


def test_real_trainer_meets_the_contract(trained_run: Path) -> None:
    events = read_events(trained_run / "metrics.jsonl")[0]
    total = parse_profile((trained_run / "profile.toml").read_text(encoding="utf-8")).train.max_steps
    assert_run_contract(trained_run, events, total)


def test_fake_trainer_meets_the_same_contract(tmp_path: Path) -> None:
    profile = parse_profile('name = "tiny"\n')
    run_dir = tmp_path / "runs" / "tiny"
    seen: list[Event] = []
    FakeTrainer(
        profile, run_dir, on_event=seen.append, script=TrainerScript(total_steps=6, eval_every=2)
    ).run()
    assert_run_contract(run_dir, seen, 6)
    assert read_events(run_dir / "metrics.jsonl")[0] == seen


@pytest.mark.parametrize(
    ("existing", "asked", "proposed"),
    [([], "name", "name-2"), (["name-2"], "name", "name-3"), (["name-2"], "name-2", "name-3")],
)
def test_fresh_run_dir_names_are_the_real_ones(
    tmp_path: Path, existing: list[str], asked: str, proposed: str
) -> None:
    from trm_core.runs.read import propose_fresh_run_dir

    for name in existing:
        (tmp_path / name).mkdir()
    assert propose_fresh_run_dir(tmp_path / asked) == tmp_path / proposed
    assert fake_backend().propose_fresh_run_dir(tmp_path / asked) == tmp_path / proposed


@pytest.mark.parametrize("kind", ["fake", "real"])
def test_sweeps_go_through_the_backend_and_meet_the_same_contract(tmp_path: Path, kind: str) -> None:
    """Issue 26.2: a sweep's runs are built by Backend.trainer_factory, so the run contract above holds
    for a sweep on the fake backend and on the real one (two 2-step runs of the tiny profile)."""
    from collections import defaultdict

    from tests.fakes import FakeTrainerFactory
    from trm_core.experiments.sweep import parse_sweep
    from trm_tui.backend import Backend

    good = Path(__file__).parent / "bad_inputs" / "profiles" / "good.toml"
    sweep = parse_sweep(
        f'name = "c"\nbase = "{good}"\nseeds = [0, 1]\n[set]\n"train.max_steps" = 2\n"train.ema" = false\n',
        tmp_path / "c.toml",
    )
    factory = FakeTrainerFactory(script=TrainerScript(total_steps=2, eval_every=2))
    backend = fake_backend(trainer=factory) if kind == "fake" else Backend()
    seen: dict[str, list[Event]] = defaultdict(list)
    queue = backend.sweep_queue(
        sweep, tmp_path / "runs", on_event=lambda item, ev: seen[item.name].append(ev)
    )
    assert queue.run() == 0
    assert [i.state for i in queue.items] == ["done", "done"]
    for item in queue.items:
        assert_run_contract(item.run_dir, seen[item.name], 2)
    assert len(factory.created) == (2 if kind == "fake" else 0)
