"""The one exception type for bad configuration, raised at startup with a message a user can act on.

Reads no environment variables.
"""


class ConfigError(Exception):
    """A configuration file, argument or environment variable is malformed or inconsistent."""
