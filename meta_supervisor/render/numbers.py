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


def num(value: Any, digits: int = 0) -> str:
    if type(value) is int:  # the most cells (a page of 1,000 agents: ~35,000): one test, not three
        return f"{value:,}"
    if value is None:
        return DASH
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"
