"""Tool calls per agent and tool: counts, errors and a latency histogram that merges exactly.

An agent's ``AgentTally.tools`` maps a tool's name (``bounds.label``: at most 200 characters;
past ``MAX_DISTINCT`` tools per agent the rest fold into ``"(other)"``) to
``[calls, errors, timed calls, latency sum ns, min ns, max ns, {latency bucket: calls}]``
(``bounds.T_*``). Everything is an integer count, sum, minimum or maximum, so two tallies over
disjoint spans merge into exactly the tally of their union, in any order (parallel parts, the
native core, the incremental state).

Latencies (end - start, when ``0 < start <= end`` and the difference fits 63 bits, else the call
counts in ``calls_without_latency``) go into a log-linear histogram with 32 buckets per doubling,
computed with integers only (``latency_bucket``; ``native/src/kinds.rs`` has the same one): values
below 64 ns have a bucket each, larger ones share a bucket with values at most 1/32 (3.1%) apart,
so there are at most 1,888 buckets per tool, however many calls. ``tool_report`` reads p50 and p95
from it (nearest rank: the upper bound of the bucket holding that rank, never beyond the exact
minimum and maximum); the count, average and maximum are exact.

A histogram is a dict while spans are added to it (the Python reader) and a packed
``array('q')`` of (bucket, calls) pairs sorted by bucket once it is loaded from a tally's state
(the native core's tallies, a worker's, the incremental state: ``pack_histogram``), ~16 bytes a
bucket against ~90 in a dict of ints: 1,000 agents with three tools each held ~10 MB of
histograms as dicts. Both forms read the same (``histogram_items``); a packed one is never
changed in place (a merge makes a new one; a call added turns it back into a dict).

Reads no environment variables.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate, chain
from operator import add
from typing import Any

from meta_supervisor.tally.bounds import T_CALLS, T_ERRORS, T_HIST, T_MAX, T_MIN, T_SUM, T_TIMED, bounded_key, label

SUB_BITS = 5  # 2**SUB_BITS buckets per doubling
_SUB = 1 << SUB_BITS
MAX_LATENCY_NS = (1 << 63) - 1  # as a run's: a longer one is a broken time
UNKNOWN_TOOL = "(unknown tool)"


def latency_bucket(ns: int) -> int:
    """The histogram bucket of a latency of ``ns`` >= 0 nanoseconds (below 2**63: at most 1,887)."""
    if ns < 2 * _SUB:
        return ns
    exponent = ns.bit_length() - 1
    return ((exponent - SUB_BITS + 1) << SUB_BITS) | ((ns >> (exponent - SUB_BITS)) & (_SUB - 1))


def bucket_high(bucket: int) -> int:
    """The largest latency in ``bucket``."""
    if bucket < 2 * _SUB:
        return bucket
    shift = (bucket >> SUB_BITS) - 1
    return ((_SUB + (bucket & (_SUB - 1)) + 1) << shift) - 1


def pack_histogram(pairs) -> array:
    """(bucket, calls) pairs (any order; a bucket given twice keeps its last count, as a dict made of
    them would) as a packed histogram. ``ValueError`` or ``TypeError`` for a pair that is not two
    64-bit integers (a damaged state: rebuilt, as for any other damage)."""
    try:
        if type(pairs) is list:  # a state's pairs, or the core's: sorted already, each bucket once
            packed = array("q", chain.from_iterable(pairs))
            buckets = packed[0::2]
            if len(packed) == 2 * len(pairs) and _increasing(buckets):
                return packed
        packed = array("q")
        for bucket, calls in sorted(dict(pairs).items()):
            packed.append(bucket)
            packed.append(calls)
    except OverflowError as exc:
        raise ValueError(f"a tool latency histogram holds a number beyond 64 bits: {exc}") from None
    return packed


def _increasing(buckets: array) -> bool:
    """Whether ``buckets`` are sorted and distinct (made of C loops: a histogram each of thousands)."""
    as_list = buckets.tolist()
    return as_list == sorted(as_list) and len(set(as_list)) == len(as_list)


def histogram_items(histogram: dict | array) -> Iterator[tuple[int, int]]:
    """A histogram's (bucket, calls) pairs: a dict's in its order, a packed one's by bucket."""
    if type(histogram) is dict:
        return iter(histogram.items())
    return zip(histogram[0::2], histogram[1::2], strict=True)


def histogram_state(histogram: dict | array) -> list[list[int]]:
    """A histogram as a state saves it: [bucket, calls] pairs sorted by bucket."""
    return sorted([bucket, calls] for bucket, calls in histogram_items(histogram))


def merged_histogram(mine: dict | array, theirs: dict | array) -> dict | array:
    """``mine`` plus ``theirs``: a dict is added to in place (and returned), a packed histogram is
    replaced by a new packed one."""
    if type(mine) is dict:
        for bucket, calls in histogram_items(theirs):
            mine[bucket] = mine.get(bucket, 0) + calls
        return mine
    if type(theirs) is not dict and len(mine) == len(theirs) and mine[0::2] == theirs[0::2]:
        merged = array("q", map(add, mine, theirs))  # the same buckets (the common case): counts added
        merged[0::2] = mine[0::2]
        return merged
    counts = dict(histogram_items(mine))
    for bucket, calls in histogram_items(theirs):
        counts[bucket] = counts.get(bucket, 0) + calls
    return pack_histogram(counts.items())


def histogram_copy(histogram: dict | array) -> dict | array:
    """A histogram another tally can own: a dict copied, a packed one shared (never changed in place)."""
    return dict(histogram) if type(histogram) is dict else histogram


def add_tool_call(tools: dict[str, list], name: str, error: bool, start: int, end: int) -> None:
    """One tool call of an agent, named ``name``, failed or not, from ``start`` to ``end`` (ns)."""
    entry = tools.get(name)
    if entry is None:
        name = bounded_key(tools, label(name, UNKNOWN_TOOL))
        entry = tools.get(name)
        if entry is None:
            entry = tools[name] = [0, 0, 0, 0, 0, 0, {}]
    entry[T_CALLS] += 1
    if error:
        entry[T_ERRORS] += 1
    if 0 < start <= end <= start + MAX_LATENCY_NS:
        latency = end - start
        if not entry[T_TIMED] or latency < entry[T_MIN]:
            entry[T_MIN] = latency
        if latency > entry[T_MAX]:
            entry[T_MAX] = latency
        entry[T_TIMED] += 1
        entry[T_SUM] += latency
        histogram = entry[T_HIST]
        if type(histogram) is not dict:  # packed (loaded from a state): a dict again to count in
            histogram = entry[T_HIST] = dict(histogram_items(histogram))
        bucket = latency_bucket(latency)
        histogram[bucket] = histogram.get(bucket, 0) + 1


def _percentile(histogram: dict | array, count: int, q: int, low: int, high: int) -> int:
    """The ``q``-th percentile (nearest rank) of ``count`` latencies: the upper bound of the bucket
    holding rank ceil(q * count / 100), kept within [``low``, ``high``]."""
    rank = max(1, (q * count + 99) // 100)
    if type(histogram) is not dict:
        calls = histogram[1::2]
        if not calls or min(calls) >= 0:  # running sums that never fall: the first to reach the rank, found in C
            at = bisect_left(list(accumulate(calls)), rank)
            return min(max(bucket_high(histogram[2 * at]), low), high) if at < len(calls) else high
    seen = 0
    for bucket, calls in histogram_items(histogram) if type(histogram) is not dict else sorted(histogram.items()):
        seen += calls
        if seen >= rank:
            return min(max(bucket_high(bucket), low), high)
    return high


def _ms(nanoseconds: float | None) -> float | None:
    return None if nanoseconds is None else round(nanoseconds / 1e6, 3)


def tool_report(tools: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Per tool (sorted by name): calls, errors, error rate, latencies in ms."""
    out = {}
    for name in sorted(tools):
        calls, errors, timed, total, low, high, histogram = tools[name]
        out[name] = {
            "calls": calls,
            "errors": errors,
            "error_rate": round(errors / calls, 6) if calls else None,
            "avg_latency_ms": _ms(total / timed) if timed else None,
            "p50_latency_ms": _ms(_percentile(histogram, timed, 50, low, high)) if timed else None,
            "p95_latency_ms": _ms(_percentile(histogram, timed, 95, low, high)) if timed else None,
            "max_latency_ms": _ms(high) if timed else None,
            "calls_without_latency": calls - timed,
        }
    return out
