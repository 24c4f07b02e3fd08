"""Errors a user can act on.

Every problem caused by the user's input (a data file, a config, a checkpoint,
a request) is raised as an :class:`LlmosError` subclass whose message names the
file, the 1-based line or the field, and what was expected. The CLI prints the
message alone, without a stack trace, and exits with status 2.
"""


class LlmosError(Exception):
    """Base class for errors caused by user input."""


class DataError(LlmosError):
    """A data file is missing, unreadable or inconsistent."""


class ConfigError(LlmosError):
    """A run configuration or a ``--set`` override is invalid."""


class CheckpointError(LlmosError):
    """A pretrained checkpoint cannot be found or does not fit the model."""


class RunError(LlmosError):
    """A run folder is missing, incomplete or would be overwritten."""
