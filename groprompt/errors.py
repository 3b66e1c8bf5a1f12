"""Errors a user can fix: each names the file or setting and the problem, and no retry can heal it.

Entry points print them as one line and exit with code 2; Ray Train and Ray Data never retry them.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or configuration: reported as one line, never retried."""


class ConfigError(UserError):
    """A configuration file, key or value is invalid."""


class DataError(UserError):
    """A dataset or stage output is missing or malformed; the message names the file and the problem."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""
