"""The error every configuration check raises (its own module so that ``config`` and ``checks``
both use it without importing each other)."""


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""
