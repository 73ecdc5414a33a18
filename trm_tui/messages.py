"""Textual messages the app's workers post: trm_core events and worker results, made UI-safe.

Workers run in threads and only ever call `post_message` with one of these; the widgets change
in the handlers, on the app's thread. Declared as dataclasses (Textual calls `__post_init__`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.message import Message

from trm_core.events import Event
from trm_core.profile import Mismatch, Profile
from trm_core.runs.listing import RunInfo

if TYPE_CHECKING:
    from .jobs import Evaluation


@dataclass
class TrainEvent(Message):
    """One event from the Trainer (step, eval, early stop, checkpoint, log, start, done)."""

    event: Event


@dataclass
class TrainPrepared(Message):
    """The safety check before training: the profile, its run dir and the graded differences."""

    profile: Profile | None
    run_dir: Path
    mismatches: list[Mismatch] | None
    fresh_dir: Path | None = None
    error: str = ""
    busy_pid: int | None = None
    stopped_early: int | None = None  # the step an early-stopped run ended at


@dataclass
class ParamsCounted(Message):
    path: Path
    params: int | None
    error: str = ""
    live: bool = False  # counted from the editor's unsaved text


@dataclass
class RunsListed(Message):
    runs: list[RunInfo]
    evals: dict[str, dict[str, Any]]  # run name -> its newest evaluation record


@dataclass
class GenerationStatus(Message):
    """A line for the REPL's status bar (model loading, loaded)."""

    text: str


@dataclass
class GenerationDone(Message):
    tokens: int
    seconds: float
    error: str = ""
    cancelled: bool = False
    seed: int | None = None  # the seed a sampled answer used (None: greedy)
    depth: dict[str, float] = field(default_factory=dict)  # mean_depth, net_calls_per_token, steps


@dataclass
class EvalNews(Message):
    """What an evaluation in the app reports: the app's Jobs re-publishes these on `eval_news`."""

    job: Evaluation | None = field(default=None, kw_only=True)  # the evaluation it is about


@dataclass
class EvalProgress(EvalNews):
    """How far an evaluation in the app has come."""

    done: int
    total: int


@dataclass
class EvalFinished(EvalNews):
    """An evaluation ended: its record (as written to the run's eval/ folder) and samples, or an
    error, or it was stopped (`cancelled`: nothing written)."""

    run_dir: Path
    record: dict[str, Any] | None
    samples: list[dict[str, Any]]
    error: str = ""
    cancelled: bool = False


@dataclass
class DepthProgress(EvalNews):
    """How far a depth study has come, and the depth it is at (e.g. "H2-t0.9")."""

    done: int
    total: int
    label: str


@dataclass
class DepthStudyDone(EvalNews):
    """A depth study ended: its rows (also in RUN/depth.json), or an error, or it was stopped."""

    rows: list[dict[str, Any]]
    error: str = ""
    cancelled: bool = False


@dataclass
class ExamplesLoaded(Message):
    """Problems from a run's validation slice, for the REPL's example questions."""

    run_dir: Path
    examples: list[tuple[str, str]]  # (question, answer)
    error: str = ""


# --------------------------------------------------------------------------- requests between tabs
# A pane never calls another pane: it posts one of these, and the app delivers it to the pane
# named by `TO` (showing that tab first when `SHOW`).


@dataclass
class PaneRequest(Message):
    TO: ClassVar[str] = ""
    SHOW: ClassVar[bool] = False
    delivered: bool = field(default=False, kw_only=True)


@dataclass
class TrainWanted(PaneRequest):
    """The Train tab wants to train this profile: the Profiles tab settles unsaved edits first."""

    TO: ClassVar[str] = "profiles"
    path: Path
    fresh: bool


@dataclass
class TrainSettled(PaneRequest):
    """The Profiles tab's answer to `TrainWanted`: train the saved file (`go`), with a log note."""

    TO: ClassVar[str] = "train"
    path: Path
    fresh: bool
    go: bool
    note: str = ""
    style: str = ""


@dataclass
class QuitWanted(PaneRequest):
    """Nothing runs and the user quits: the Profiles tab asks about unsaved edits, then exits."""

    TO: ClassVar[str] = "profiles"


@dataclass
class OpenInRepl(PaneRequest):
    TO: ClassVar[str] = "repl"
    SHOW: ClassVar[bool] = True
    run_dir: Path


@dataclass
class RunsChanged(PaneRequest):
    """A run's files changed (an evaluation, a hidden run): the Runs tab re-reads the directory."""

    TO: ClassVar[str] = "runs"
