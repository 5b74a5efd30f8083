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

A histogram is a dict while spans are added to it (the Python reader) and packed, sorted by
bucket, once it is loaded from a tally's state (the native core's tallies, a worker's, the
incremental state: ``pack_histogram``; the native core hands it over in that form already, as
bytes): an ``array('I')`` of its buckets then their calls, 8 bytes a
bucket, against ~90 bytes in a dict of ints (1,000 agents with three tools each held ~10 MB of
histograms as dicts) and 16 in the (bucket, calls) pairs of an ``array('q')`` (5 MB at 5 M spans
of the worst row). Its buckets and calls are read as two slices of it (``_split``: copies made in
C, no bit arithmetic per bucket in Python). A histogram with a count that does not fit 32 bits
unsigned (4.3e9 calls of one tool in one bucket, or a damaged state's negative count) keeps the
wide form of pairs instead (``COUNT_BITS``): counts stay exact. Every form reads the same
(``histogram_items``); a packed one is never changed in place (a merge makes a new one; a call
added turns it back into a dict). Two narrow ones are merged by the native core when it is there
(``native_histogram_merge``: one walk, ~1 us, against ~15 us of dicts for a tool's ~25 buckets).

Reads no environment variables (``native_core`` reads ``ALPHATRACE_NATIVE``).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate, chain
from operator import add
from typing import Any

from meta_supervisor import native_core
from meta_supervisor.tally.bounds import T_CALLS, T_ERRORS, T_HIST, T_MAX, T_MIN, T_SUM, T_TIMED, bounded_key, label

SUB_BITS = 5  # 2**SUB_BITS buckets per doubling
_SUB = 1 << SUB_BITS
MAX_LATENCY_NS = (1 << 63) - 1  # as a run's: a longer one is a broken time
UNKNOWN_TOOL = "(unknown tool)"
COUNT_BITS = 32  # the narrow form's buckets and calls: 32-bit unsigned (array('I'))
_NARROW_MAX = (1 << COUNT_BITS) - 1 if array("I").itemsize == 4 else -1  # -1: no narrow form on this platform


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
    if type(pairs) is bytes:  # the native core's narrow form (``narrow_histogram``): one copy
        return _narrow_of_bytes(pairs)
    try:
        if type(pairs) is list:  # a state's pairs, or the core's: sorted already, each bucket once
            packed = array("q", chain.from_iterable(pairs))
            buckets = packed[0::2].tolist()
            if len(packed) == 2 * len(pairs) and buckets == sorted(buckets) and len(set(buckets)) == len(buckets):
                calls = packed[1::2]
                if buckets and buckets[0] >= 0 and buckets[-1] <= _NARROW_MAX and min(calls) >= 0 and max(calls) <= _NARROW_MAX:
                    narrow = array("I", buckets)
                    narrow.fromlist(calls.tolist())
                    return narrow
                return packed
        packed = array("q")
        for bucket, calls in sorted(dict(pairs).items()):
            packed.append(bucket)
            packed.append(calls)
    except OverflowError as exc:
        raise ValueError(f"a tool latency histogram holds a number beyond 64 bits: {exc}") from None
    return _packed(packed[0::2].tolist(), packed[1::2].tolist())


def _narrow_of_bytes(raw: bytes) -> array:
    """The native core's histogram: its buckets (sorted, each once) then their calls, 32-bit
    unsigned in the machine's order (``native/src/lib.rs`` ``narrow_histogram``; never empty)."""
    if _NARROW_MAX >= 0:
        narrow = array("I")
        narrow.frombytes(raw)
        return narrow
    numbers = list(struct.unpack(f"={len(raw) // 4}I", raw))  # a platform whose 'I' is not 32 bits
    half = len(numbers) // 2
    return _packed(numbers[:half], numbers[half:])


def _packed(buckets: list[int], calls: list[int]) -> array:
    """A packed histogram of sorted, distinct ``buckets`` and their ``calls``: the narrow form (an
    ``array('I')``, the buckets then the calls: 8 bytes a bucket) when every number fits 32 bits
    unsigned, else the wide form (an ``array('q')`` of (bucket, calls) pairs: 16 bytes a bucket).
    ``OverflowError`` beyond 64 bits."""
    if buckets and min(buckets) >= 0 and min(calls) >= 0 and max(buckets) <= _NARROW_MAX and max(calls) <= _NARROW_MAX:
        return array("I", buckets + calls)
    return array("q", chain.from_iterable(zip(buckets, calls)))


def _split(histogram: array) -> tuple[array, array]:
    """A packed histogram's buckets and calls, in bucket order (slices: made in C)."""
    if histogram.typecode == "I":
        half = len(histogram) // 2
        return histogram[:half], histogram[half:]
    return histogram[0::2], histogram[1::2]


def histogram_items(histogram: dict | array) -> Iterator[tuple[int, int]]:
    """A histogram's (bucket, calls) pairs: a dict's in its order, a packed one's by bucket."""
    if type(histogram) is dict:
        return iter(histogram.items())
    buckets, calls = _split(histogram)
    return zip(buckets, calls, strict=True)


def histogram_state(histogram: dict | array) -> list[list[int]]:
    """A histogram as a state saves it: [bucket, calls] pairs sorted by bucket."""
    if type(histogram) is dict:
        return sorted([bucket, calls] for bucket, calls in histogram.items())
    return list(map(list, zip(*_split(histogram))))  # a packed one is in bucket order, each bucket once


def merged_histogram(mine: dict | array, theirs: dict | array, native_merge=None) -> dict | array:
    """``mine`` plus ``theirs``: a dict is added to in place (and returned), a packed histogram is
    replaced by a new packed one. ``native_merge``: the native core's ``merged_narrow_histogram``
    (``native_histogram_merge``), which merges two narrow ones in one walk, or None."""
    if type(mine) is dict:
        for bucket, calls in histogram_items(theirs):
            mine[bucket] = mine.get(bucket, 0) + calls
        return mine
    if type(theirs) is not dict:
        if native_merge is not None and mine.typecode == theirs.typecode == "I" and mine and theirs:
            raw = native_merge(mine, theirs)  # None: a sum beyond 32 bits (the wide form, below)
            if raw is not None:
                narrow = array("I")
                narrow.frombytes(raw)
                return narrow
        buckets, calls = _split(mine)
        their_buckets, their_calls = _split(theirs)
        buckets = buckets.tolist()
        if buckets == their_buckets.tolist():  # the same buckets (the common case): counts added
            return _packed(buckets, list(map(add, calls, their_calls)))
        # other buckets (a tool's two halves of a file, mostly): the union's counts made by maps in
        # C, no Python loop per bucket (1,000 agents: ~3,000 such merges a build)
        mine_counts, their_counts = dict(zip(buckets, calls)), dict(zip(their_buckets, their_calls))
        both = mine_counts.keys() & their_counts.keys()  # iterated in one order each time below
        sums = list(map(add, map(mine_counts.__getitem__, both), map(their_counts.__getitem__, both)))
        counts = mine_counts | their_counts
        counts.update(zip(both, sums))
        ordered = sorted(counts)
        try:
            return _packed(ordered, list(map(counts.__getitem__, ordered)))
        except OverflowError as exc:
            raise ValueError(f"a tool latency histogram holds a number beyond 64 bits: {exc}") from None
    counts = dict(histogram_items(mine))
    for bucket, calls in histogram_items(theirs):
        counts[bucket] = counts.get(bucket, 0) + calls
    return pack_histogram(counts.items())


def native_histogram_merge():
    """The native core's merge of two narrow histograms (``merged_histogram``'s ``native_merge``),
    or None. Asked once per tally merged, not once per tool (the setting is read at each ask)."""
    return native_core.optional("merged_narrow_histogram")


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
    """The ``q``-th percentile (nearest rank) of ``count`` latencies (``_percentiles``)."""
    return _percentiles(histogram, count, (q,), low, high)[0]


def tool_report(tools: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Per tool (sorted by name): calls, errors, error rate, latencies in ms (rounded to 3
    decimals; 1,000 agents: ~3,000 tools a report)."""
    out = {}
    for name in sorted(tools) if len(tools) > 1 else tools:
        calls, errors, timed, total, low, high, histogram = tools[name]
        if timed:
            p50, p95 = _percentiles(histogram, timed, (50, 95), low, high)
            avg, p50, p95, most = round(total / timed / 1e6, 3), round(p50 / 1e6, 3), round(p95 / 1e6, 3), round(high / 1e6, 3)
        else:
            avg = p50 = p95 = most = None
        out[name] = {
            "calls": calls,
            "errors": errors,
            "error_rate": round(errors / calls, 6) if calls else None,
            "avg_latency_ms": avg,
            "p50_latency_ms": p50,
            "p95_latency_ms": p95,
            "max_latency_ms": most,
            "calls_without_latency": calls - timed,
        }
    return out


def _percentiles(histogram: dict | array, count: int, qs: tuple[int, ...], low: int, high: int) -> list[int]:
    """The ``qs``-th percentiles (nearest rank) of ``count`` latencies: for each, the upper bound of
    the bucket holding rank ceil(q * count / 100), kept within [``low``, ``high``]. The running sums
    are made once for all of them (1,000 agents: ~3,000 tools a report, two percentiles each)."""
    ranks = [max(1, (q * count + 99) // 100) for q in qs]

    def bound(bucket: int) -> int:
        return min(max(bucket_high(bucket), low), high)

    if type(histogram) is not dict:
        buckets, calls = _split(histogram)
        if histogram.typecode == "I" or min(calls, default=0) >= 0:  # running sums that never fall: searched in C
            running = list(accumulate(calls))
            return [bound(buckets[at]) if at < len(running) else high for at in (bisect_left(running, rank) for rank in ranks)]
    found = [high] * len(ranks)
    waiting = sorted(range(len(ranks)), key=ranks.__getitem__)  # the ranks still to reach, lowest first
    seen = 0
    for bucket, calls in histogram_items(histogram) if type(histogram) is not dict else sorted(histogram.items()):
        seen += calls
        while waiting and seen >= ranks[waiting[0]]:
            found[waiting.pop(0)] = bound(bucket)
        if not waiting:
            break
    return found
