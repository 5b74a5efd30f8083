"""A part's per-agent tallies kept pickled, one agent at a time, until they are merged.

A part read by a worker process comes back to the main process as its tallies; with 1,000 agents
they are ~13 MB of Python objects (each agent's top-5 slowest, failing and mismatched runs with
their ids, its (symbol, direction) counts, ...), and unpickling them all at once put them on top
of the main process's own tallies at the build's peak. ``PackedTallies`` is a read-only mapping
name -> ``AgentTally`` that keeps each agent's pickle (a few kB) and unpickles it when asked: the
merge (``build.merge.merge_part``: first ``within_limits``, then ``add_tallies``) then holds one
agent's objects at a time (measured: 1,000 agents, 1 M spans, the main process's peak 96 -> 86 MB).
A forked worker whose tables come back through hand-over files (``part_result.Handoff``) writes
the blob to one of them too (``in_file``): the main process then reads each agent's pickle from
there when it is asked for, and never holds the blob (1,000 agents at 5 M spans: 5.7 MB of the
main process's peak, through the whole merge).

Reads no environment variables.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Mapping
from operator import attrgetter
from typing import Any

from meta_supervisor.tally.bounds import AGENT_TABLE_LIMITS

READ_AHEAD = 1 << 16  # bytes of a hand-over file read at a time by ``drain`` (~25 agents, not a read each)


class PackedTallies(Mapping):
    """name -> tally, each unpickled anew on every access (a fresh object each time: read it, merge
    it, let it go). The pickles are one blob (``blob``), which ``build.part_result.PartResult`` sends
    apart from its header, received straight into a buffer of its size."""

    __slots__ = ("_ends", "blob", "file", "sizes")

    def __init__(self, tallies: Mapping[str, Any]) -> None:
        self._ends: dict[str, tuple[int, int]] = {}
        self.sizes: dict[str, tuple[int, ...]] = {}  # name -> table_sizes (the merge's limits checked without unpickling)
        self.blob = bytearray()  # appended to: not a list of pieces and their join (twice the size)
        self.file = None  # with ``in_file``: the file the blob is in (from its first byte), not ``blob``
        for name, tally in tallies.items():
            start = len(self.blob)
            self.blob += pickle.dumps(tally, protocol=pickle.HIGHEST_PROTOCOL)
            self._ends[name] = (start, len(self.blob))
            self.sizes[name] = table_sizes(tally)

    def __getitem__(self, name: str) -> Any:
        start, end = self._ends[name]
        if self.file is not None:
            return pickle.loads(_read_at(self.file, start, end))
        return pickle.loads(memoryview(self.blob)[start:end])

    def in_file(self, file) -> None:
        """The blob is in ``file`` from its first byte (``write_to`` wrote it there): read from there."""
        self.file, self.blob = file, bytearray()

    def write_to(self, file) -> None:
        """Write the blob to ``file`` from its first byte (a forked worker's hand-over file)."""
        view, at = memoryview(self.blob), 0
        while at < len(view):
            at += os.pwrite(file.fileno(), view[at:], at)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    def drain(self) -> Iterator[tuple[str, Any]]:
        """(name, tally) of every agent in order; from a file, ``READ_AHEAD`` bytes read at a time
        (64 kB held, never the blob). Else the blob is cut from its front as it is read: once
        what was read passes half of what is left, the rest is copied into a buffer of its size (a
        bytearray cut from its front), so the part's packed tallies shrink as the merge grows the
        aggregator's. The mapping is empty afterwards."""
        cut = 0  # bytes cut from the blob's front so far
        window, window_start = b"", 0  # from a file: the bytes read ahead (``READ_AHEAD``), and where they start
        for name, (start, end) in list(self._ends.items()):
            del self._ends[name]
            self.sizes.pop(name, None)
            if self.file is not None:
                if start < window_start or end > window_start + len(window):
                    window, window_start = _read_at(self.file, start, max(end, start + READ_AHEAD), short=end), start
                yield name, pickle.loads(memoryview(window)[start - window_start : end - window_start])
                continue
            tally = pickle.loads(memoryview(self.blob)[start - cut : end - cut])
            if 2 * (end - cut) > len(self.blob):
                self.blob = self.blob[end - cut :]  # a new buffer of the rest; the old one freed
                cut = end
            yield name, tally
        self.blob = bytearray()

    def __getstate__(self):
        return self._ends, self.blob, self.sizes

    def __setstate__(self, state) -> None:
        self._ends, self.blob, self.sizes = state
        self.file = None


def _read_at(file, start: int, end: int, short: int | None = None) -> bytes:
    """Bytes ``[start, end)`` of ``file``, or with ``short`` at least ``[start, short)`` (the file
    may end before ``end``); EOFError if it is shorter."""
    need = end if short is None else short
    raw = os.pread(file.fileno(), end - start, start)
    while len(raw) < need - start:
        more = os.pread(file.fileno(), end - start - len(raw), start + len(raw))
        if not more:
            raise EOFError(f"a part's packed tallies end at byte {start + len(raw):,}, not {need:,}")
        raw += more
    return raw


def table_sizes(tally: Any) -> tuple[int, ...]:
    """The sizes of a tally's bounded tables (``bounds.AGENT_TABLE_LIMITS``, in order), then its
    signal store's symbols (0 without one)."""
    symbols = len(tally.signals.symbol_ids) if tally.signals is not None else 0
    return (*map(len, bounded_tables(tally)), symbols)


bounded_tables = attrgetter(*(table for table, _ in AGENT_TABLE_LIMITS))  # a tally's bounded tables, in that order


def packed_state(state: tuple) -> tuple:
    """A part's ``(inputs, agents, agent_order, pending, dead)`` with its agents packed."""
    inputs, agents, agent_order, *rest = state
    return inputs, agents if isinstance(agents, PackedTallies) else PackedTallies(agents), agent_order, *rest
