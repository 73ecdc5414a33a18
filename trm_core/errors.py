"""Errors a user can cause. The CLI prints `str(error)` as one sentence and exits with `exit_code`.

Programming errors are not UserErrors: they still raise with a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (file, profile, checkpoint, flag, offline hub)."""

    exit_code: int = 1


class CheckpointError(UserError):
    """A checkpoint or run directory that is missing, corrupted, foreign or from a newer version."""


class DataError(UserError):
    """A data source that cannot be read (missing file, wrong schema, hub unreachable)."""


class TokenizerError(UserError):
    """A tokenizer that cannot be built."""
