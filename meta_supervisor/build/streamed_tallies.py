"""A worker's per-agent tallies sent one at a time as it makes them, and merged as they arrive.

When the two halves of a zstd stream are read in parallel (``parallel.read_zstd_in_parallel``),
the worker's last ~0.1 s (1,000 agents) was making its part's tallies (the native core's per-agent
states made into ``AgentTally``) and pickling them, while the main process, done with its own
half, waited; then the main process unpickled and merged them (0.08-0.14 s) while the worker sat
idle (docs/benchmarks.md "The worker's tallies streamed"). Streamed, the two overlap: the worker
sends each agent's tally as soon as it is made, and the main process merges it as it arrives
(``SpanAggregator.add_tallies`` draining a ``StreamedTallies``).

What the merge checks before it adds anything (``merge.merge_part``) must not wait for the tallies,
so the worker sends first, with the part's inputs, open runs and agent order, each agent's bounded
tables' sizes (the core's ``AgentStates.upcoming``): the limits are checked on those
(``merge._fits``). Only when a check needs an agent's keys (two sides together could pass a limit)
are the rest of the records read ahead and held (``__getitem__``), as a ``PackedTallies`` holds
them.

On the pipe, after the part's header and arrays (``part_result.PartResult.send``), one record an
agent, in the agent order: the name's and the pickle's lengths (``RECORD``), the name (UTF-8), the
tally's pickle. The pipe is made larger (``widen_pipe``) so that the worker can run ahead of a main
process still busy with its own half. A record that does not come (the worker died, or failed
while making a tally) is ``PartLost``: the caller then undoes whatever it merged and reads the
stream again in one go.

Reads no environment variables.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

RECORD = struct.Struct("<II")  # an agent's record: the name's length, the tally's pickle's length
SEND_BATCH = 1 << 14  # bytes of records gathered before a write (a few agents: still streamed)
PIPE_BYTES = 1 << 20  # the pipe's size asked for (Linux's default limit for any user)
READ_AHEAD = 1 << 16  # bytes asked of the pipe at a time


class PartLost(RuntimeError):
    """A worker's tallies ended before every agent came: undo the merge and read the part again."""


class StreamedTallies(Mapping):
    """name -> tally of a part, in its agent order, whose tallies come from ``source`` one at a time
    (``(name, tally or its pickle)`` in that order): a worker's making them (in the worker) or the
    pipe (in the main process). ``sizes``: name -> its bounded tables' sizes, known beforehand."""

    def __init__(self, sizes: Iterable[tuple[str, Iterable[int]]], source: Iterator[tuple[str, Any]]) -> None:
        self.sizes = {name: tuple(values) for name, values in sizes}
        self._source = source
        self._held: dict[str, Any] = {}  # read ahead of the merge (``__getitem__``)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, name: str) -> Any:
        if name not in self.sizes:
            raise KeyError(name)
        for got, payload in self._source:  # every record still to come, held (as pickles)
            self._held[got] = payload if _is_pickle(payload) else pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return _loaded(self._held[name])

    def drain(self) -> Iterator[tuple[str, Any]]:
        """(name, tally) of every agent in order, each let go of here once it is yielded; the
        mapping is empty afterwards. ``PartLost`` when the source ends early or out of order."""
        for name in list(self.sizes):
            del self.sizes[name]
            payload = self._held.pop(name, None)
            if payload is None:
                try:
                    got, payload = next(self._source)
                except StopIteration:
                    raise PartLost(f"the part's tallies ended before agent {name!r}") from None
                if got != name:
                    raise PartLost(f"the part's tallies came out of order: {got!r} where {name!r} was due")
            yield name, _loaded(payload)

    def records(self) -> Iterator[bytes]:
        """In the worker (whose source makes the tallies): every agent's record (``RECORD``, name,
        pickle), in order, as it is made."""
        for name, tally in self._source:
            blob = pickle.dumps(tally, protocol=pickle.HIGHEST_PROTOCOL)
            encoded = name.encode("utf-8", "surrogatepass")
            yield RECORD.pack(len(encoded), len(blob)) + encoded + blob

    def send_records(self, fd: int, send_exactly) -> None:
        """In the worker: ``records`` written to ``fd`` a batch (``SEND_BATCH``) at a time."""
        batch = bytearray()
        for record in self.records():
            batch += record
            if len(batch) >= SEND_BATCH:
                send_exactly(fd, batch)
                batch = bytearray()
        if batch:
            send_exactly(fd, batch)


def _is_pickle(payload: Any) -> bool:
    return isinstance(payload, bytes | bytearray | memoryview)


def _loaded(payload: Any) -> Any:
    return pickle.loads(payload) if _is_pickle(payload) else payload


def records_from(fd: int, count: int) -> Iterator[tuple[str, bytes]]:
    """The main process's side: ``count`` records read from the pipe ``fd``, as (name, pickle)."""
    buffer, at = b"", 0
    for _ in range(count):
        buffer, at = _have(fd, buffer, at, RECORD.size)
        name_length, blob_length = RECORD.unpack_from(buffer, at)
        at += RECORD.size
        buffer, at = _have(fd, buffer, at, name_length + blob_length)
        name = bytes(buffer[at : at + name_length]).decode("utf-8", "surrogatepass")
        at += name_length
        yield name, buffer[at : at + blob_length]
        at += blob_length


def _have(fd: int, buffer: bytes, at: int, need: int) -> tuple[bytes, int]:
    """``buffer`` from ``at`` with at least ``need`` bytes, read from ``fd`` as needed."""
    if len(buffer) - at >= need:
        return buffer, at
    pieces = [buffer[at:]]
    have = len(pieces[0])
    while have < need:
        more = os.read(fd, max(READ_AHEAD, need - have))
        if not more:
            raise PartLost(f"the part's worker closed its pipe with {need - have:,} bytes of a record still to come")
        pieces.append(more)
        have += len(more)
    return b"".join(pieces), 0


def widen_pipe(fd: int) -> None:
    """Ask for a larger pipe (``PIPE_BYTES``): the worker then runs that far ahead of the merge.
    Where it is refused (another system, a lower limit), the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def upcoming_sizes(states) -> list[tuple[str, tuple]] | None:
    """The core's agents still to come with their tables' sizes (``AgentStates.upcoming``), or None
    when the installed core is older and cannot tell them beforehand (the part is then sent whole)."""
    upcoming = getattr(states, "upcoming", None)
    return None if upcoming is None else [(name, tuple(sizes)) for name, sizes in upcoming()]
