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

    Besides the message it keeps what a caller needs to say how to fix it in
    its own terms (``--set data.text_column=...`` for ``llmos train``,
    ``--text_column ...`` for ``llmos evaluate``): the file, which column was
    missing (``"text"`` or ``"label"``), the columns the file has and the one
    that most likely holds it (``None`` when no guess is good).
    """

    def __init__(self, message: str, *, path: str, what: str, columns: Sequence[str], suggestion: str | None) -> None:
        super().__init__(message)
        self.path = path
        self.what = what
        self.columns = list(columns)
        self.suggestion = suggestion


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
