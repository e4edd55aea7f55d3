"""Errors that name what to change; a leaf module so any layer can raise them."""


class ConfigError(ValueError):
    """A configuration value that makes no sense; the message names the key."""
