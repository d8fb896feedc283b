"""Errors a user can act on. The CLI prints their message without a traceback."""

from __future__ import annotations


class GlassnetError(Exception):
    """Base class: the message says what was wrong and what to do."""


class ConfigError(GlassnetError):
    """A config value is out of range or inconsistent."""


class DataError(GlassnetError):
    """An input data file or column cannot be used."""


class MissingInputError(GlassnetError):
    """A stage's input does not exist yet: an earlier stage must run first."""


class TrainingError(GlassnetError):
    """Training diverged or could not run."""
