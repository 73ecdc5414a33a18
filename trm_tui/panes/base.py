"""What every tab pane shares: typed access to the app (its backend, runs and profiles dirs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.containers import Vertical

if TYPE_CHECKING:
    from ..app import TrmApp


class Pane(Vertical):
    """A tab's content; stays mounted while hidden, so its workers keep running."""

    @property
    def tapp(self) -> TrmApp:
        return self.app  # type: ignore[return-value]
