"""The one exception type for bad configuration, raised at startup with a message a user can act on,
the one rule for names nobody declared (a typo is an error with "did you mean ...?", never ignored)
and the one rule for a number read from an environment variable (``env_number``).

Reads no environment variables itself (``env_number`` reads the one it is given).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping


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


def env_number(
    env: Mapping[str, str],
    name: str,
    default: float | None,
    *,
    whole: bool = True,
    unit: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float | None:
    """``env[name]`` as a whole (or any finite) number, ``default`` when unset or blank; a
    ``ConfigError`` naming the variable, its value and the allowed range otherwise
    (``ALPHATRACE_X='soon': must be a number of seconds > 0``)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value: float | None = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if (
        value is None
        or not math.isfinite(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
    ):
        limits = [f"{op} {_plain(bound)}" for op, bound in ((">", above), (">=", minimum), ("<=", maximum)) if bound is not None]
        kind = ("a whole number" if whole else "a number") + (f" of {unit}" if unit else "")
        raise ConfigError(f"{name}={raw!r}: must be {kind}{' ' + ' and '.join(limits) if limits else ''}")
    return value


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
