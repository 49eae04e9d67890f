"""The user-facing error types: problems with a command's inputs, printed as one ``error:`` line."""

from __future__ import annotations


class UsageError(RuntimeError):
    """A problem with a command's inputs (missing file, unusable checkpoint, bad option value, ...): the entry
    points print its message as one ``error:`` line, without a traceback."""


class PrepareError(UsageError):
    """A problem with the inputs of a dataset preparation (``python -m diffir.data.prepare``), with what to do
    about it."""


class StorageError(UsageError):
    """A file or folder the run must write cannot be written (a full disk, a read-only folder): the path, the
    reason and what to do, in one line."""


class RunSetupError(RuntimeError):
    """A problem with a training run's inputs (config, data, checkpoints of earlier stages), found before
    training starts, with what to do about it."""
