"""What the app needs from `trm_core`, gathered in one injectable object.

The real backend imports trm_core's heavy modules (torch) lazily, inside each call, so the app
opens instantly; tests pass a `Backend` made of fakes (tests/fakes.py) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trm_core.events import DoneEvent, Event
from trm_core.profile import Mismatch, Profile


class TrainerLike(Protocol):
    def run(self) -> DoneEvent: ...
    def request_stop(self) -> None: ...


class PieceLike(Protocol):
    text: str
    source: str


class GeneratorLike(Protocol):
    def stream(self, prompt: str, **kw: Any) -> Iterator[PieceLike]: ...


TrainerFactory = Callable[..., TrainerLike]  # (profile, run_dir, *, on_event, resume) -> trainer
GeneratorFactory = Callable[[Path, str], GeneratorLike]  # (run_dir, "best"|"latest") -> generator


def _real_trainer(
    profile: Profile,
    run_dir: Path,
    *,
    on_event: Callable[[Event], None],
    resume: bool,
    extend_patience: int | None = None,
) -> TrainerLike:
    from trm_core.training.trainer import Trainer

    return Trainer(profile, run_dir, on_event=on_event, resume=resume, extend_patience=extend_patience)


def _real_generator(run_dir: Path, which: str) -> GeneratorLike:
    from trm_core.generation.generator import Generator

    return Generator.from_checkpoint(run_dir, which)


def _real_check_run_dir(profile: Profile, run_dir: Path) -> list[Mismatch] | None:
    from trm_core.runs.read import check_run_dir

    return check_run_dir(profile, run_dir)


def _real_propose_fresh_run_dir(run_dir: Path) -> Path:
    from trm_core.runs.read import propose_fresh_run_dir

    return Path(propose_fresh_run_dir(run_dir))


def _real_count_parameters(profile: Profile) -> int:
    from trm_core.model.lm import count_parameters

    return count_parameters(profile)


def _real_format_prompt(question: str) -> str:
    from trm_core.data.sources import format_prompt

    return format_prompt(question)


EXAMPLES = 64  # validation problems the REPL draws its example questions from


def _real_examples(run_dir: Path) -> list[tuple[str, str]]:
    """(question, answer) pairs from the run's validation slice: problems it never trained on."""
    from trm_core.evaluation.run_eval import held_out_examples
    from trm_core.runs.read import saved_profile

    return [(e.question, e.answer) for e in held_out_examples(saved_profile(run_dir), "val", EXAMPLES)]


def _real_evaluate_run(
    run_dir: Path, *, which: str, split: str, limit: int | None, progress: Callable[[int, int], None]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from trm_core.evaluation.run_eval import evaluate_held_out

    return evaluate_held_out(run_dir, which=which, split=split, limit=limit, progress=progress)


def _real_depth_study(
    run_dir: Path,
    *,
    which: str,
    split: str,
    limit: int | None,
    H_cycles: Sequence[int],
    thresholds: Sequence[float],
    progress: Callable[[int, int, str], None],
) -> list[dict[str, Any]]:
    """Evaluate at every (H-cycles, threshold) combination, greedy with the profile's calculator;
    the rows go to RUN/depth.json, where `compare --depth depth.json` and the compare view look."""
    from trm_core.evaluation.depth_study import DEPTH_FILE, run_depth_study
    from trm_core.evaluation.settings import EvalSettings
    from trm_core.generation.generator import Generator

    gen = Generator.from_checkpoint(run_dir, which)
    settings = EvalSettings(which=which, split=split, limit=limit)
    return run_depth_study(
        gen, settings, H_cycles, thresholds, json_path=run_dir / DEPTH_FILE, progress=progress
    )


@dataclass
class Backend:
    trainer_factory: TrainerFactory = _real_trainer
    generator_factory: GeneratorFactory = _real_generator
    check_run_dir: Callable[[Profile, Path], list[Mismatch] | None] = _real_check_run_dir
    propose_fresh_run_dir: Callable[[Path], Path] = _real_propose_fresh_run_dir
    count_parameters: Callable[[Profile], int] = _real_count_parameters
    format_prompt: Callable[[str], str] = _real_format_prompt
    examples: Callable[[Path], list[tuple[str, str]]] = _real_examples
    evaluate_run: Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]] = _real_evaluate_run
    depth_study: Callable[..., list[dict[str, Any]]] = _real_depth_study
    clock: Callable[[], float] = field(default=time.time)  # injectable for deterministic snapshots

    def sweep_queue(self, sweep: Any, runs_dir: Path, **kw: Any) -> Any:
        """A sweep's queue (trm_core.experiments.queue.SweepQueue) whose runs are trained by this
        backend's trainer_factory: the app's sweeps go through the same Backend (and fakes) as its runs."""
        from trm_core.experiments.queue import SweepQueue

        return SweepQueue(sweep, runs_dir, trainer_factory=self.trainer_factory, **kw)


def wrap_prompt(text: str, format_prompt: Callable[[str], str]) -> str:
    """Plain problem text becomes "Question: …\\nAnswer:"; text already in that form is kept."""
    stripped = text.strip()
    if stripped.startswith("Question:") or "\nAnswer:" in text:
        return text
    return format_prompt(stripped)


def stop_strings() -> Sequence[str]:
    """Generation stops before the model starts inventing the next problem."""
    return ("\nQuestion:",)
