"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem in what the user asked for (bad value, missing data, absent GPU).

    The message must name the problem and the fix in one line; no traceback is shown.
    """


class ConfigError(UserError):
    """A run configuration value is unknown or out of range."""


class DataError(UserError):
    """A dataset is missing, corrupt or malformed."""
