"""A part's per-agent tallies kept pickled, one agent at a time, until they are merged.

A part read by a worker process comes back to the main process as its tallies; with 1,000 agents
they are ~13 MB of Python objects (each agent's top-5 slowest, failing and mismatched runs with
their ids, its (symbol, direction) counts, ...), and unpickling them all at once put them on top
of the main process's own tallies at the build's peak. ``PackedTallies`` is a read-only mapping
name -> ``AgentTally`` that keeps each agent's pickle (a few kB) and unpickles it when asked: the
merge (``parallel_build.merge_part``: first ``within_limits``, then ``_add_tallies``) then holds one
agent's objects at a time (measured: 1,000 agents, 1 M spans, the main process's peak 96 -> 86 MB).

Reads no environment variables.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from typing import Any


class PackedTallies(Mapping):
    """name -> tally, each unpickled anew on every access (a fresh object each time: read it, merge
    it, let it go)."""

    __slots__ = ("_packed",)

    def __init__(self, tallies: Mapping[str, Any]) -> None:
        self._packed = {name: pickle.dumps(tally, protocol=pickle.HIGHEST_PROTOCOL) for name, tally in tallies.items()}

    def __getitem__(self, name: str) -> Any:
        return pickle.loads(self._packed[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __getstate__(self):
        return self._packed

    def __setstate__(self, packed) -> None:
        self._packed = packed


def packed_state(state: tuple) -> tuple:
    """A part's ``(inputs, agents, agent_order, pending)`` with its agents packed."""
    inputs, agents, agent_order, pending = state
    return inputs, agents if isinstance(agents, PackedTallies) else PackedTallies(agents), agent_order, pending
