"""A part of a JSON-lines file read apart (in a forked child, or by the native core): its tallies, its
span and closed-run fingerprints, and how it crosses a pipe (``send`` / ``receive``: the small
things pickled, the big arrays as raw bytes).

Reads no environment variables.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from array import array
from dataclasses import dataclass

from meta_supervisor.build.packed_tallies import packed_state
from meta_supervisor.build.streamed_tallies import StreamedTallies, records_from
from meta_supervisor.tally.fingerprints import SpillPlan, slots_for
from meta_supervisor.tally.latency_runs import LatencySpill, RunFile

CHUNK_ITEMS = 1 << 17  # fingerprints read back at a time from a hand-over file (1 MB)
# the header's count of the agents' packed bytes, when they are not sent after it: in the
# hand-over file (``Handoff.tallies``), or streamed after the arrays (``streamed_tallies``)
IN_FILE, STREAMED = -1, -2


class SpilledArray:
    """``count`` values of ``typecode`` ('Q' or 'B') in a hand-over file, read a chunk at a time
    (``chunks``: arrays, or bytes for 'B') so a worker's part is never whole in the main process."""

    def __init__(self, handle, count: int, typecode: str) -> None:
        self.handle, self.count, self.typecode = handle, count, typecode

    def __len__(self) -> int:
        return self.count

    def chunks(self):
        size = array(self.typecode).itemsize
        for start in range(0, self.count, CHUNK_ITEMS):
            raw = os.pread(self.handle.fileno(), min(CHUNK_ITEMS, self.count - start) * size, start * size)
            if self.typecode == "B":
                yield raw
            else:
                values = array(self.typecode)
                values.frombytes(raw)
                yield values

    def raw_chunks(self):
        """The values as bytes, a chunk at a time (``chunks`` without making arrays of them)."""
        size = array(self.typecode).itemsize
        for start in range(0, self.count, CHUNK_ITEMS):
            yield os.pread(self.handle.fileno(), min(CHUNK_ITEMS, self.count - start) * size, start * size)


def chunks_of(values):
    """``values`` (an array, bytes or a ``SpilledArray``) as a sequence of chunks."""
    return values.chunks() if isinstance(values, SpilledArray) else (values,)


class Handoff:
    """Three unnamed files in the build's spill folder, made before a worker is forked and inherited
    by it: its part's span entries, closed-run keys and closed-run states, written there in key order
    by the native core (whose tables for the part are bounded as the build's are,
    ``fingerprints.SpillPlan``) instead of being sent through the pipe as arrays. Unnamed: nothing
    is left on disk whatever happens to either process."""

    def __init__(self, plan: SpillPlan) -> None:
        self.plan = plan
        # the part's span entries, closed-run keys and states, and its packed tallies
        self.files = [tempfile.TemporaryFile(dir=plan.folder) for _ in range(4)]
        # the part's latencies, as sorted runs (``latency_runs``): kept open by the runs that point
        # into it once they are merged, not by ``close``
        self.latencies = RunFile.unnamed(plan.folder)

    def latency_spill(self) -> LatencySpill:
        """In the worker: where its part's latencies go (``native_reader``), the build's budget."""
        return LatencySpill(self.plan.folder, self.plan.resident_spans // 4, self.latencies)

    def spill_arg(self) -> tuple:
        """The core's ``spill`` argument for a part's own tables."""
        return self.plan.folder, slots_for(self.plan.resident_spans), tuple(f.fileno() for f in self.files[:3])

    @property
    def tallies(self):
        """The file a worker's packed tallies are written to (``PackedTallies.write_to``)."""
        return self.files[3]

    def arrays(self, spans: int, closed: int) -> tuple:
        return SpilledArray(self.files[0], spans, "Q"), SpilledArray(self.files[1], closed, "Q"), SpilledArray(self.files[2], closed, "B")

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        self.latencies = None


@dataclass
class PartResult:
    consumed: int
    records: int
    partial_tail: int
    aggregator_state: bytes | tuple  # (inputs, agents, agent_order, pending), pickled or not
    span_fps: array | memoryview | SpilledArray  # of 64-bit fingerprints ('Q')
    closed_keys: array | memoryview | SpilledArray
    closed_states: bytes | SpilledArray

    def send(self, connection, handoff: Handoff | None = None) -> None:
        """Small things pickled; the packed tallies and the big arrays as raw bytes after them (no
        pickling, no extra copies): their sizes are in the header, so the receiver reads each
        straight into a buffer of its size. With ``handoff`` (whose files hold the tables already)
        the packed tallies are written to its ``tallies`` file instead (``agents`` -1 in the header).
        Streamed tallies (``StreamedTallies``) have their sizes in the header (``agents`` -2) and
        each tally after the arrays, sent as it is made."""
        state, agents = self.aggregator_state, b""
        handed = isinstance(self.span_fps, SpilledArray)  # the tables are in the Handoff's files already
        streamed = isinstance(state, tuple) and isinstance(state[1], StreamedTallies)
        if streamed:  # the tallies after everything else, each sent as it is made (streamed_tallies)
            tallies = state[1]
            state, agents = (state[0], list(tallies.sizes.items()), *state[2:]), None
        elif isinstance(state, tuple):  # the agents pickled one by one: the receiver unpickles them as it merges
            state = packed_state(state)
            if handed and handoff is not None:
                state[1].write_to(handoff.tallies)
                agents = None
            else:
                agents = state[1].blob
            state[1].blob = b""
        sent = STREAMED if streamed else IN_FILE if agents is None else len(agents)
        agents = agents or b""
        header = (self.consumed, self.records, self.partial_tail, state, sent, len(self.span_fps), len(self.closed_keys), handed)
        connection.send_bytes(pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
        for blob in (agents,) if handed else (agents, self.span_fps, self.closed_keys, self.closed_states):
            send_exactly(connection.fileno(), blob)
        if streamed:
            tallies.send_records(connection.fileno(), send_exactly)

    @classmethod
    def receive(cls, connection, handoff: Handoff | None = None) -> PartResult:
        header = pickle.loads(connection.recv_bytes())
        if isinstance(header, BaseException):
            raise header
        consumed, records, partial_tail, state, n_agents, n_spans, n_closed, handed = header
        streamed = n_agents == STREAMED
        if streamed:  # each agent's tally read from the pipe as it is merged, after the arrays
            sizes = state[1]
            state = (state[0], StreamedTallies(sizes, records_from(connection.fileno(), len(sizes))), *state[2:])
            n_agents = 0
        if handed:
            if n_agents == IN_FILE:  # in the hand-over file: read an agent at a time as it is merged
                state[1].in_file(handoff.tallies)
                return cls(consumed, records, partial_tail, state, *handoff.arrays(n_spans, n_closed))
            agents = bytearray(n_agents)
            receive_exactly(connection.fileno(), agents)
            if isinstance(state, tuple) and not streamed:
                state[1].blob = agents
            return cls(consumed, records, partial_tail, state, *handoff.arrays(n_spans, n_closed))
        # allocated at their size and filled in place: no temporary bytes of the same size (peak RSS;
        # ``Connection.recv_bytes`` gathers a message in a BytesIO first: 4 MB cost 13 MB)
        agents = bytearray(n_agents)
        span_fps = array("Q", [0]) * n_spans
        closed_keys = array("Q", [0]) * n_closed
        closed_states = bytearray(n_closed)
        for target in (agents, span_fps, closed_keys, closed_states):
            receive_exactly(connection.fileno(), target)
        if isinstance(state, tuple) and not streamed:
            state[1].blob = agents
        return cls(consumed, records, partial_tail, state, span_fps, closed_keys, bytes(closed_states))


def send_exactly(fd: int, data) -> None:
    """Write all of ``data`` (any buffer) to the pipe."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def receive_exactly(fd: int, target) -> None:
    """Fill ``target`` (a writable buffer) from the pipe; EOFError if the writer went away first."""
    view = memoryview(target).cast("B")
    while view:
        count = os.readv(fd, [view])
        if count == 0:
            raise EOFError(f"the part's sender closed the pipe with {len(view):,} bytes still to come")
        view = view[count:]
