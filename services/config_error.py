"""The one exception type for bad configuration, raised at startup with a message a user can act on,
and the one rule for names nobody declared (a typo is an error with "did you mean ...?", never ignored).

Reads no environment variables.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(Exception):
    """A configuration file, argument or environment variable is malformed or inconsistent."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the closest known name, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_known(given: Iterable[str], known: Iterable[str], where: str, what: str = "key") -> None:
    """``ConfigError`` for the first name in ``given`` that is not in ``known``: ``where`` says which
    table (``"agents/agents.toml: [fleet]"``), ``what`` what the names are (key, agent, symbol)."""
    known = sorted(known)
    for name in given:
        if name not in known:
            hint = did_you_mean(name, known)
            raise ConfigError(f"{where}: unknown {what} {name!r}; {hint}{'Known' if hint else 'known'}: {', '.join(known) or 'none'}")
