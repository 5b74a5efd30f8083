"""A part's packed tallies drained as they are merged (``PackedTallies.drain``): every agent, in
order, equal to what the mapping gives, the blob let go of as it goes. (Builds that merge a worker's
drained part are compared with one-process builds by the parallel and differential tests.)"""

from __future__ import annotations

import pickle

from meta_supervisor.build.packed_tallies import PackedTallies
from meta_supervisor.tally.aggregates import AgentTally


def _tally(i: int) -> AgentTally:
    tally = AgentTally()
    tally.outcomes = {"ok": i, "error": i % 3}
    tally.latencies_ns.extend(range(i, i + 50 * (i % 7 + 1)))
    tally.slowest = [(i * 10, f"{i:032x}", f"run-{i}", i)]
    tally.alpha = {("AAPL", "long"): i}
    return tally


def test_drain_gives_every_agent_in_order_and_lets_the_blob_go():
    tallies = {f"agent-{i:04d}": _tally(i) for i in range(300)}
    packed = PackedTallies(tallies)
    expected = {name: pickle.dumps(packed[name]) for name in packed}
    sizes = []
    drained = []
    for name, tally in packed.drain():
        drained.append((name, pickle.dumps(tally)))
        sizes.append(len(packed.blob))
    assert drained == list(expected.items())
    assert [name for name, _ in drained] == list(tallies)
    assert sizes[-1] < sizes[0] / 4
    assert len(packed) == 0 and len(packed.blob) == 0


def test_drain_of_nothing():
    packed = PackedTallies({})
    assert list(packed.drain()) == []
