"""The root of perpstream's errors.

Every error perpstream raises on purpose derives from :class:`PerpstreamError`, so a caller
catches the project's errors in one place and lets programming errors through. The command
line turns a :class:`ConfigError` into one line that names the setting (docs/failures.md).
This module imports nothing of the project: every layer may depend on it.
"""

from __future__ import annotations


class PerpstreamError(Exception):
    """Root of every error perpstream raises on purpose."""


class ConfigError(PerpstreamError):
    """Bad configuration, detected at start-up. The message names the setting."""
