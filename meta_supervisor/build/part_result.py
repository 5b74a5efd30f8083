"""A part of a JSON-lines file read apart (in a forked child, or by the native core): its tallies, its
span and closed-run fingerprints, and how it crosses a pipe (``send`` / ``receive``: the small
things pickled, the big arrays as raw bytes).

Reads no environment variables.
"""

from __future__ import annotations

import pickle
from array import array
from dataclasses import dataclass


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
        """Small things pickled, the big arrays as raw bytes (no pickling, no extra copies)."""
        header = (self.consumed, self.records, self.partial_tail, self.aggregator_state, len(self.span_fps), len(self.closed_keys))
        connection.send_bytes(pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
        for blob in (self.span_fps, self.closed_keys, self.closed_states):
            connection.send_bytes(memoryview(blob).cast("B"))

    @classmethod
    def receive(cls, connection) -> PartResult:
        header = pickle.loads(connection.recv_bytes())
        if isinstance(header, BaseException):
            raise header
        consumed, records, partial_tail, state, n_spans, n_closed = header
        # allocated at their size and filled in place: no temporary bytes of the same size (peak RSS)
        span_fps = array("Q", [0]) * n_spans
        closed_keys = array("Q", [0]) * n_closed
        closed_states = bytearray(n_closed)
        for target in (span_fps, closed_keys, closed_states):
            if len(target):
                connection.recv_bytes_into(target)
            else:
                connection.recv_bytes()
        return cls(consumed, records, partial_tail, state, span_fps, closed_keys, bytes(closed_states))
