"""Errors every layer may raise and the entry points turn into one-line messages."""


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""
