"""Errors that are the user's to fix: the CLI prints their message alone, with no traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong or points at something missing; the message names key or path."""
