"""``services.config_error``: the name ``ConfigError`` and its rules had before ``settings/`` (a
re-export, so existing imports keep working; new code imports ``settings.config_error``)."""

from settings.config_error import ConfigError, check_known, did_you_mean, env_number

__all__ = ["ConfigError", "check_known", "did_you_mean", "env_number"]
