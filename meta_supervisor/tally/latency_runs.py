"""Run latencies with a bounded resident part: sorted runs spilled to unnamed files, and the exact
summary (count, sum, p50/p95/p99, max) and sorted order of every agent's latencies read back from
them a bounded chunk at a time.

An ``AgentTally`` keeps its latencies in two places: ``latencies_ns`` (an ``array('q')`` in memory,
in no order) and ``latency_runs`` (``SortedRun``s: sorted slices of files). A ``LatencySpill`` (one a
process, made from the build's ``fingerprints.SpillPlan``) moves every agent's resident latencies
into a new sorted run once the process holds more than its budget of them (a quarter of the resident
span cap: 125,000 values, 1 MB, at the default), appending to one unnamed file in the spill folder
(``tempfile.TemporaryFile``: nothing is left on disk whatever happens to the process). The saved
state's ``latencies.bin`` (one sorted slice an agent) is itself read back as one run an agent, never
whole; a forked worker writes its part's latencies into a hand-over file (``part_result.Handoff``)
and sends only the runs' places (a run pickles as its file's descriptor, the same number in both
processes, and the two numbers of its slice).

``sorted_chunks`` yields an agent's latencies in ascending order, at most ``CHUNK`` values at a time,
by a buffered k-way merge: each source is read ``CHUNK / sources`` values ahead, every value not
above the smallest of the full buffers' last values is taken (a bounded chunk, all of them below
whatever is left), sorted (the core's ``sort_in_place``) and handed on. ``summary_of`` picks the
percentiles' ranks from that stream, with the one formula (``latency.percentile_at``).

Reads no environment variables.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

from meta_supervisor.tally.latency import latency_summary, percentile_at, sorted_latencies

CHUNK = 1 << 16  # values in memory at a time when runs are read back (512 kB, and as much of buffers)
_ITEM = 8

# files runs point into, by descriptor: a run unpickled in the main process (sent by a forked worker,
# whose descriptors are the main's) finds its file here
_FILES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class RunFile:
    """An open file descriptor that runs point into, closed when the last of them is let go (an
    unnamed file is then gone from the disk too); findable by its number (``_run_at``)."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        _FILES[fd] = self

    @classmethod
    def unnamed(cls, folder: str | None) -> RunFile:
        """A new file in ``folder`` with no name (nothing left on disk whatever happens)."""
        with tempfile.TemporaryFile(dir=folder, buffering=0) as handle:
            return cls(os.dup(handle.fileno()))

    @classmethod
    def anywhere(cls, folder: str | None) -> RunFile | None:
        """``unnamed`` in ``folder``, else in the system's temp folder (a state folder on a read-only
        file system), else None: the latencies then stay in memory, as without a spill plan."""
        for place in dict.fromkeys([folder, None]):
            try:
                return cls.unnamed(place)
            except OSError:
                continue
        return None

    def fileno(self) -> int:
        return self.fd

    def __del__(self) -> None:
        os.close(self.fd)


class SortedRun:
    """``count`` signed 64-bit values in ascending order at byte ``offset`` of a ``RunFile``."""

    __slots__ = ("count", "handle", "offset")

    def __init__(self, handle, offset: int, count: int) -> None:
        self.handle, self.offset, self.count = handle, offset, count

    def read(self, start: int, stop: int) -> array:
        values = array("q")
        if stop > start:
            size = (stop - start) * _ITEM
            raw = os.pread(self.handle.fileno(), size, self.offset + start * _ITEM)
            if len(raw) != size:
                raise OSError(f"a latency run ends early ({len(raw)} of {size} bytes)")
            values.frombytes(raw)
        return values

    def __reduce__(self):
        return _run_at, (self.handle.fileno(), self.offset, self.count)


def _run_at(fd: int, offset: int, count: int) -> SortedRun:
    handle = _FILES.get(fd)
    if handle is None:
        raise RuntimeError(f"a latency run points into file descriptor {fd}, which this process does not have")
    return SortedRun(handle, offset, count)


class LatencySpill:
    """Where a process's latencies spill (an unnamed file in ``folder``, made at the first spill, or
    ``handle`` given: a worker's hand-over file) and how many it keeps in memory before it does."""

    def __init__(self, folder: str | None, budget: int, handle=None) -> None:
        self.folder, self.budget, self.handle = folder, max(budget, 1), handle
        self.size = 0 if handle is None else os.fstat(handle.fileno()).st_size
        self.resident = 0  # values added to the tallies being counted since the last spill
        self.nowhere = False

    def core_arg(self) -> tuple[int, int, int] | None:
        """The native core's ``latencies`` argument: (descriptor, where to write, budget); None
        when no file can be made (the core then keeps them)."""
        if not self._ready():
            return None
        return self.handle.fileno(), self.size, self.budget

    def _ready(self) -> bool:
        """Whether the file is there (made now if not); past a failure to make one, never again."""
        if self.handle is None and not self.nowhere:
            self.handle = RunFile.anywhere(self.folder)
            self.nowhere = self.handle is None  # nowhere to write: unbounded, in memory
        return self.handle is not None

    def runs_at(self, places) -> tuple:
        """The runs the core wrote into this file, from their ``(byte offset, count)``."""
        return tuple(SortedRun(self.handle, offset, count) for offset, count in places)

    def added(self, count: int, tallies: Iterable) -> None:
        """``count`` latencies were added to ``tallies``' (the ones counted): spill them all past the budget."""
        self.resident += count
        if self.resident > self.budget:
            self.spill(tallies)

    def bound(self, tallies: Iterable) -> None:
        """Spill ``tallies``' resident latencies if together they are past the budget."""
        tallies = list(tallies)
        self.resident = sum(len(tally.latencies_ns) for tally in tallies)
        if self.resident > self.budget:
            self.spill(tallies)

    def spill(self, tallies: Iterable) -> None:
        """Every tally's resident latencies, sorted, as a new run of it in the file."""
        if not self._ready():
            self.resident = 0
            return
        for tally in tallies:
            values = tally.latencies_ns
            if not values:
                continue
            values = sorted_latencies(values)
            tally.latency_runs = (*tally.latency_runs, self._write(values))
            tally.latencies_ns = array("q")
        self.resident = 0

    def _write(self, values: array) -> SortedRun:
        view, at, written = memoryview(values).cast("B"), self.size, 0
        while written < len(view):
            written += os.pwrite(self.handle.fileno(), view[written:], at + written)
        self.size = at + written
        return SortedRun(self.handle, at, len(values))


def count_of(tally) -> int:
    return len(tally.latencies_ns) + sum(run.count for run in tally.latency_runs)


def sorted_chunks(tally, chunk: int = CHUNK) -> Iterator[array]:
    """The tally's latencies in ascending order, in arrays of at most ``chunk`` values (or one a
    source, when it has more sources than that; its resident array sorted in place first)."""
    if tally.latencies_ns:
        tally.latencies_ns = sorted_latencies(tally.latencies_ns)
    if not tally.latency_runs:
        if tally.latencies_ns:
            yield tally.latencies_ns
        return
    resident = tally.latencies_ns
    sources: list[Any] = [run for run in tally.latency_runs if run.count]
    counts = [run.count for run in sources]
    if resident:
        sources.append(resident)
        counts.append(len(resident))
    positions = [0] * len(sources)  # of each source's buffer's first value
    buffers = [array("q") for _ in sources]
    while True:
        live = [k for k in range(len(sources)) if positions[k] < counts[k]]
        if not live:
            return
        step = max(chunk // len(live), 1)
        bound = None  # the smallest last value of a buffer that does not hold the rest of its source
        for k in live:
            buffer = buffers[k]
            want = min(step, counts[k] - positions[k])
            if len(buffer) < want:
                start, stop = positions[k] + len(buffer), positions[k] + want
                more = sources[k][start:stop] if isinstance(sources[k], array) else sources[k].read(start, stop)
                buffer.extend(more)
            if positions[k] + len(buffer) < counts[k] and (bound is None or buffer[-1] < bound):
                bound = buffer[-1]
        out = array("q")
        for k in live:
            buffer = buffers[k]
            take = len(buffer) if bound is None else bisect_right(buffer, bound)
            if take:
                out.extend(buffer[:take] if take < len(buffer) else buffer)
                buffers[k] = buffer[take:] if take < len(buffer) else array("q")
                positions[k] += take
        yield sorted_latencies(out)


def summary_of(tally, chunk: int = CHUNK) -> dict[str, Any]:
    """``latency.latency_summary`` of all the tally's latencies, resident and spilled, exact."""
    if not tally.latency_runs:
        tally.latencies_ns = sorted_latencies(tally.latencies_ns)
        return latency_summary(tally.latencies_ns, already_sorted=True)
    count = count_of(tally)
    wanted: dict[int, int] = {}
    for q in (50, 95, 99):
        percentile_at(count, q, lambda index: wanted.setdefault(index, 0))
    total, seen, last = 0, 0, None
    for values in sorted_chunks(tally, chunk):
        for index in wanted:
            if seen <= index < seen + len(values):
                wanted[index] = values[index - seen]
        total += sum(values)
        seen += len(values)
        last = values[-1]
    return {
        "count": count,
        "sum_ns": total,
        "p50_ns": percentile_at(count, 50, wanted.__getitem__),
        "p95_ns": percentile_at(count, 95, wanted.__getitem__),
        "p99_ns": percentile_at(count, 99, wanted.__getitem__),
        "max_ns": last,
    }


def latency_spill_for(plan) -> LatencySpill | None:
    """A build's ``LatencySpill`` from its ``fingerprints.SpillPlan`` (None: unbounded, in memory)."""
    if plan is None:
        return None
    return LatencySpill(plan.folder, plan.resident_spans // 4)


def bound(aggregator) -> None:
    """Spill the aggregator's resident latencies if they are past its budget (after a part is added)."""
    spill = aggregator.latency_spill
    if spill is not None:
        spill.bound(aggregator.agents.values())
