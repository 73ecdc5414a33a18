"""TensorBoard event files mirroring a run's metrics.jsonl (optional: the `tensorboard` extra).

`train.tensorboard = true` makes the Trainer's metrics log hand every event to a `TensorBoardLog`
too, which writes RUN/tensorboard/; `trm-tui export-tb RUN` writes the same from a finished (or
running) run's metrics.jsonl afterwards. Each metric of `series.METRIC_FIELDS` becomes a scalar
(`TAGS`) at its optimizer step, with the event's wall-clock time. A resumed session purges what
the run had logged past its checkpoint (the steps are trained again), as metrics.jsonl's fold does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trm_core.errors import UserError
from trm_core.events import Event, StartEvent, read_events
from trm_core.metrics.series import event_metrics

__all__ = ["TAGS", "TB_DIR", "TensorBoardLog", "export_run", "read_scalars", "tag"]

TB_DIR = "tensorboard"  # inside the run directory
TAGS = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "lr": "train/lr",
    "tokens_per_s": "train/tokens_per_s",
    "val_loss": "val/loss",
    "val_token_acc": "val/token_acc",
    "accuracy": "val/accuracy",
}
MISSING = (
    "TensorBoard logging needs the tensorboard package: pip install 'trm-tui[tensorboard]' "
    "(or set train.tensorboard = false)"
)


def tag(metric: str) -> str:
    return TAGS.get(metric, f"train/{metric}")


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer imports the tensorboard package
        raise UserError(MISSING) from None
    return SummaryWriter


class TensorBoardLog:
    """Writes events as TensorBoard scalars into `log_dir`; `open()` fails with one sentence when
    the package is missing. A StartEvent starts a writer (purging the steps a resume trains again)."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._cls: Any = None
        self._writer: Any = None

    def open(self) -> None:
        self._cls = _summary_writer()

    def write(self, event: Event) -> None:
        if self._cls is None:
            self.open()
        if isinstance(event, StartEvent):
            self.close()
            purge = event.step + 1 if event.resumed else 0
            self._writer = self._cls(str(self.log_dir), purge_step=purge, flush_secs=10)
        elif self._writer is None:
            self._writer = self._cls(str(self.log_dir), flush_secs=10)
        step = getattr(event, "step", None)
        if step is None:
            return
        for metric, value in event_metrics(event):
            self._writer.add_scalar(tag(metric), value, global_step=step, walltime=event.time)
        if event.kind in ("done", "checkpoint"):
            self._writer.flush()

    def write_all(self, events: Iterable[Event]) -> int:
        n = 0
        for ev in events:
            self.write(ev)
            n += 1
        return n

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def export_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/metrics.jsonl as TensorBoard event files into `out` (default RUN/tensorboard)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"{run_dir} has no metrics.jsonl: not a run directory")
    log_dir = Path(out) if out is not None else run_dir / TB_DIR
    if log_dir.exists() and any(log_dir.iterdir()):
        raise UserError(f"{log_dir} already holds event files; remove it or pass another --out")
    tb = TensorBoardLog(log_dir)
    tb.open()
    offset = 0
    try:
        while True:  # read_events reads a huge log in slices
            events, new = read_events(metrics, offset)
            if new == offset:
                break
            tb.write_all(events)
            offset = new
    finally:
        tb.close()
    return log_dir


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in the event files under `log_dir`: [(step, value), …] as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
