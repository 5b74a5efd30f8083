"""How the pages write a number: the one rule of both the Markdown and the HTML report.

``num``: integers with thousands separators, other numbers with ``digits`` decimals, a missing value
as an en dash; ``pct``: a fraction as a percentage with one decimal. (The JSON keeps the numbers.)

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

DASH = "\u2013"  # a missing value


def num(value: Any, digits: int = 0) -> str:
    if value is None:
        return DASH
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"
