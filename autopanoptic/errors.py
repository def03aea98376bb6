"""Exceptions that carry a message meant for the user.

Every error the library raises on bad input derives from :class:`AutopanopticError` and also from
the built-in type a Python caller would expect (``ValueError``, ``FileNotFoundError``...). The CLI
prints ``str(error)`` as one line and exits non-zero, so messages say *what* is wrong, *which file*
(when there is one) and *what to do*.
"""

from __future__ import annotations


class AutopanopticError(Exception):
    """Base class of all user-facing errors."""


class ConfigError(AutopanopticError, ValueError):
    """A configuration value or file is invalid."""


class ArchitectureError(AutopanopticError, ValueError):
    """An architecture does not fit its search space."""


class JournalError(AutopanopticError, ValueError):
    """A search journal is corrupt, truncated or belongs to another run."""


class DataError(AutopanopticError, ValueError):
    """A dataset or a prediction file is malformed."""


class CheckpointError(AutopanopticError, ValueError):
    """A checkpoint is missing, truncated or does not match the model."""
