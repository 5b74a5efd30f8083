"""How the pages write a number: the one rule of both the Markdown and the HTML report.

``num``: integers with thousands separators, other numbers with ``digits`` decimals, a missing value
as an en dash; ``pct``: a fraction as a percentage with one decimal. (The JSON keeps the numbers.)

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

from meta_supervisor.tally.bounds import NO_HOST, NO_SHARD

DASH = "\u2013"  # a missing value


def shown_hosts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's per-host rows the pages show: none for a fleet on one unnamed host (no
    ``host.name`` and no shard), where the table would repeat the fleet's totals."""
    hosts = report.get("hosts") or []
    if len(hosts) == 1 and (hosts[0]["host"], hosts[0]["shard"]) == (NO_HOST, NO_SHARD):
        return []
    return hosts


_SMALL = tuple(str(number) for number in range(1000))  # below 1,000 no thousands separator
_FIXED = tuple(f"%.{digits}f" for digits in range(10))  # "%.1f" % x is format(x, ".1f"), made faster


def num(value: Any, digits: int = 0) -> str:
    # the pages of 1,000 agents write ~35,000 numbers, most of them small: those taken from a table
    # or written without looking for a thousands separator (a float below 999 needs none, rounded too)
    if type(value) is int:
        return _SMALL[value] if 0 <= value < 1000 else f"{value:,}"
    if type(value) is float and -999.0 < value < 999.0 and 0 <= digits < 10:
        return _FIXED[digits] % value
    if value is None:
        return DASH
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"
