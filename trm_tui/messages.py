"""Textual messages the app's workers post: trm_core events and worker results, made UI-safe.

Workers run in threads and only ever call `post_message` with one of these; the widgets change
in the handlers, on the app's thread.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from trm_core.events import Event
from trm_core.profile import Mismatch, Profile
from trm_core.runs.listing import RunInfo


class TrainEvent(Message):
    """One event from the Trainer (step, eval, early stop, checkpoint, log, start, done)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class TrainPrepared(Message):
    """The safety check before training: the profile, its run dir and the graded differences."""

    def __init__(
        self,
        profile: Profile | None,
        run_dir: Path,
        mismatches: list[Mismatch] | None,
        fresh_dir: Path | None = None,
        error: str = "",
        busy_pid: int | None = None,
    ) -> None:
        super().__init__()
        self.profile = profile
        self.run_dir = run_dir
        self.mismatches = mismatches
        self.fresh_dir = fresh_dir
        self.error = error
        self.busy_pid = busy_pid


class ParamsCounted(Message):
    def __init__(self, path: Path, params: int | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.params = params
        self.error = error


class RunsListed(Message):
    def __init__(self, runs: list[RunInfo]) -> None:
        super().__init__()
        self.runs = runs


class GenerationStatus(Message):
    """A line for the REPL's status bar (model loading, loaded)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class GenerationDone(Message):
    def __init__(
        self,
        pieces: int,
        seconds: float,
        error: str = "",
        cancelled: bool = False,
        depth: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.pieces = pieces
        self.seconds = seconds
        self.error = error
        self.cancelled = cancelled
        self.depth = depth or {}  # mean_depth, net_calls_per_token, steps (from the generator)
