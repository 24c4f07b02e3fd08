"""Errors a user can act on.

Every problem caused by the user's input (a data file, a config, a checkpoint,
a request) is raised as an :class:`LlmosError` subclass whose message names the
file, the 1-based line or the field, and what was expected. The CLI prints the
message alone, without a stack trace, and exits with status 2.
"""
from __future__ import annotations

from typing import Sequence


class LlmosError(Exception):
    """Base class for errors caused by user input."""


class DataError(LlmosError):
    """A data file is missing, unreadable or inconsistent."""


class MissingColumnError(DataError):
    """A table has no column for the texts or the labels.

    The message is ``base`` (the file, what was looked for, the columns it has)
    plus ``hint``, the fix in the terms of the command that read the file:
    ``--set data.text_column=review`` for ``llmos train``, ``--text_column
    review`` for ``llmos evaluate`` (:meth:`with_hint`). ``suggestion`` is the
    column that most likely holds what is missing (None when no guess is good).
    """

    def __init__(self, base: str, hint: str, *, path: str, what: str, columns: Sequence[str], suggestion: str | None) -> None:
        super().__init__(f"{base}; {hint}")
        self.base = base
        self.hint = hint
        self.path = path
        self.what = what
        self.columns = list(columns)
        self.suggestion = suggestion

    def with_hint(self, hint: str) -> "MissingColumnError":
        """The same error with another fix in its message."""
        return MissingColumnError(self.base, hint, path=self.path, what=self.what, columns=self.columns, suggestion=self.suggestion)


class ConfigError(LlmosError):
    """A run configuration or a ``--set`` override is invalid.

    ``key`` is the dotted config key the error is about, when known (it lets
    :func:`~llmos_tf.config.load_config` point at the YAML line or blame the
    ``--set`` that set it); ``override`` is the ``--set`` text when the error
    comes from one, so it is not blamed on the file.
    """

    def __init__(self, message: str, *, key: str | None = None, override: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.override = override


class CheckpointError(LlmosError):
    """A pretrained checkpoint cannot be found or does not fit the model."""


class RunError(LlmosError):
    """A run folder is missing, incomplete or would be overwritten."""
