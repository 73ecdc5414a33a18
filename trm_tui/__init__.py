"""trm-tui: a terminal workbench for Tiny Recursive Models. The Textual app lives here; the core in trm_core."""

__version__ = "0.1.0"
