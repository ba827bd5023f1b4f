"""Errors that are the user's to fix: the CLI prints their message alone, with no traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """The user's to fix: a configuration value, or an input file it points at, is wrong or missing.

    The message names the key or the file and says how to fix it; the data errors derive from it.
    """
