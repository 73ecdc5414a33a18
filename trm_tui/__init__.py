"""trm-tui: a terminal workbench for Tiny Recursive Models. The Textual app lives here; the core in trm_core."""

from trm_core import __version__

__all__ = ["__version__"]
