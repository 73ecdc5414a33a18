"""The early-stopping panel: best validation loss and where, evaluations since, patience left."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from trm_core.events import EarlyStopEvent
from trm_core.profile import EarlyStoppingConfig

STATE_STYLES = {
    "improving": "bold green",
    "waiting": "bold yellow",
    "stopped": "bold red",
    "target-reached": "bold green",
    "disabled": "dim",
}


class EarlyStopPanel(Static):
    DEFAULT_CSS = """
    EarlyStopPanel { height: auto; border: round $secondary; border-title-color: $text-muted; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.border_title = "Early stopping"
        self.show(None, None)

    def show(self, event: EarlyStopEvent | None, config: EarlyStoppingConfig | None) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(no_wrap=True)
        if config is not None and not config.enabled:
            grid.add_row("state", Text("disabled", style=STATE_STYLES["disabled"]))
        elif event is None:
            patience = config.patience if config else "?"
            grid.add_row("state", Text("no evaluation yet", style="dim"))
            grid.add_row("patience", f"{patience} evals")
        else:
            grid.add_row("state", Text(event.label, style=STATE_STYLES.get(event.state, "")))
            grid.add_row("best val", f"{event.best_val_loss:.4f} @ {event.best_step}")
            grid.add_row("since best", f"{event.evals_since_best} evals")
            grid.add_row("patience", f"{event.patience_left} of {event.patience} left")
        self.update(grid)
