"""The exception tree. Library code raises these; only ``cli.py`` turns them into exit codes."""

from __future__ import annotations


class AutoCompressError(Exception):
    """Base class for every error autocompress raises on purpose."""

    exit_code = 2


class BadInputError(AutoCompressError):
    """The user gave something we cannot use (a flag value, a file, a path)."""


class SpaceError(BadInputError):
    """A search-space file is missing, malformed or describes an impossible network."""


class DatasetError(BadInputError):
    """A data set is missing or unreadable."""


class TargetError(BadInputError):
    """An unknown hardware target, or a latency table that does not load."""


class RunDirError(BadInputError):
    """A run directory is missing, unwritable or belongs to another search."""


class WriteError(BadInputError):
    """A file or folder cannot be written: read-only file system, no permission, disk full."""


class RuntimeUnavailableError(AutoCompressError):
    """An inference runtime the command needs is not installed or cannot run here."""


class CompressionUnavailableError(AutoCompressError):
    """A candidate asks for a compression the evaluator cannot apply."""


class InfeasibleBudgetError(AutoCompressError):
    """The search finished but no candidate met the budget."""

    exit_code = 3


class ModelError(BadInputError):
    """A user's model (``--model``/``--weights``) cannot be loaded, run, traced or matched to the data."""


class UnpricedLayersError(TargetError):
    """A network holds layers the target's latency tables cannot price."""
