"""Run latencies: percentiles (numpy's default linear interpolation, the one formula of the report
and the supervisor's policy), the summary the report shows, and the sort the incremental state keeps.

Reads no environment variables (``native_core`` reads ``ALPHATRACE_NATIVE``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from meta_supervisor import native_core


def percentile(sorted_values: list[int] | list[float], q: float) -> float | None:
    """numpy.percentile(values, q) with the default 'linear' method, on already sorted values."""
    return percentile_at(len(sorted_values), q, sorted_values.__getitem__)


def percentile_at(n: int, q: float, value_at: Callable[[int], Any]) -> float | None:
    """``percentile`` of ``n`` sorted values of which ``value_at(index)`` gives the ones it needs
    (two: ``latency_runs`` reads spilled latencies once and keeps only those)."""
    if n == 0:
        return None
    rank = (n - 1) * q / 100.0
    lower = math.floor(rank)
    upper = min(lower + 1, n - 1)
    fraction = rank - lower
    low_value = value_at(lower)
    return low_value + (value_at(upper) - low_value) * fraction


def latency_summary(latencies: Iterable[int], already_sorted: bool = False) -> dict[str, Any]:
    """Count, sum, percentiles and max of run latencies in ns: all the report needs of them.

    The incremental state keeps this next to the (sorted) latencies, so a build with nothing new
    does not sort a year of latencies again.
    """
    ordered = latencies if already_sorted else sorted(latencies)
    count = len(ordered)
    return {
        "count": count,
        "sum_ns": sum(ordered),
        "p50_ns": percentile(ordered, 50),
        "p95_ns": percentile(ordered, 95),
        "p99_ns": percentile(ordered, 99),
        "max_ns": ordered[-1] if count else None,
    }


def sorted_latencies(values: array) -> array:
    """``array("q", sorted(values))``, sorted in place by the core when it is there (no list of ints)."""
    native = native_core.core()
    if native is None or len(values) < 2:  # an empty array's buffer has no aligned address to hand over
        return array("q", sorted(values))
    native.sort_in_place(values)
    return values
