"""A part of a JSON-lines file read apart (in a forked child, or by the native core): its tallies, its
span and closed-run fingerprints, and how it crosses a pipe (``send`` / ``receive``: the small
things pickled, the big arrays as raw bytes).

Reads no environment variables.
"""

from __future__ import annotations

import os
import pickle
from array import array
from dataclasses import dataclass

from meta_supervisor.build.packed_tallies import packed_state


@dataclass
class PartResult:
    consumed: int
    records: int
    partial_tail: int
    aggregator_state: bytes | tuple  # (inputs, agents, agent_order, pending), pickled or not
    span_fps: array | memoryview  # of 64-bit fingerprints ('Q')
    closed_keys: array | memoryview
    closed_states: bytes

    def send(self, connection) -> None:
        """Small things pickled; the packed tallies and the big arrays as raw bytes after them (no
        pickling, no extra copies): their sizes are in the header, so the receiver reads each
        straight into a buffer of its size."""
        state, agents = self.aggregator_state, b""
        if isinstance(state, tuple):  # the agents pickled one by one: the receiver unpickles them as it merges
            state = packed_state(state)
            agents, state[1].blob = state[1].blob, b""
        header = (self.consumed, self.records, self.partial_tail, state, len(agents), len(self.span_fps), len(self.closed_keys))
        connection.send_bytes(pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
        for blob in (agents, self.span_fps, self.closed_keys, self.closed_states):
            send_exactly(connection.fileno(), blob)

    @classmethod
    def receive(cls, connection) -> PartResult:
        header = pickle.loads(connection.recv_bytes())
        if isinstance(header, BaseException):
            raise header
        consumed, records, partial_tail, state, n_agents, n_spans, n_closed = header
        # allocated at their size and filled in place: no temporary bytes of the same size (peak RSS;
        # ``Connection.recv_bytes`` gathers a message in a BytesIO first: 4 MB cost 13 MB)
        agents = bytearray(n_agents)
        span_fps = array("Q", [0]) * n_spans
        closed_keys = array("Q", [0]) * n_closed
        closed_states = bytearray(n_closed)
        for target in (agents, span_fps, closed_keys, closed_states):
            receive_exactly(connection.fileno(), target)
        if isinstance(state, tuple):
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
