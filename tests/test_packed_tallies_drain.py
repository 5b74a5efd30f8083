"""A part's packed tallies drained as they are merged (``PackedTallies.drain``): every agent, in
order, equal to what the mapping gives, the blob let go of as it goes. (Builds that merge a worker's
drained part are compared with one-process builds by the parallel and differential tests.)"""

from __future__ import annotations

import pickle

import pytest

from meta_supervisor.build.packed_tallies import READ_AHEAD, PackedTallies
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


def test_tallies_written_to_a_file_are_read_from_it_an_agent_at_a_time(tmp_path):
    """A forked worker's packed tallies go to its hand-over file (``write_to``); the main process
    reads them from there (``in_file``): the same agents, in order, and no blob held in memory."""
    tallies = {f"agent-{i:04d}": _tally(i) for i in range(300)}
    sent = PackedTallies(tallies)
    expected = {name: pickle.dumps(sent[name]) for name in sent}
    with open(tmp_path / "tallies", "w+b") as file:
        sent.write_to(file)
        sent.blob = b""
        received = pickle.loads(pickle.dumps(sent))  # the header's copy: sizes and places, no blob
        received.in_file(file)
        assert received.sizes == sent.sizes and len(received.blob) == 0
        assert pickle.dumps(received["agent-0007"]) == expected["agent-0007"]
        drained = [(name, pickle.dumps(tally)) for name, tally in received.drain()]
    assert drained == list(expected.items())
    assert len(received) == 0 and len(received.blob) == 0


def test_a_hand_over_file_that_ends_early_is_an_error_not_fewer_agents(tmp_path):
    """The file is read ahead a window at a time (``READ_AHEAD``); one cut short within an agent's
    pickle raises EOFError (the part is then read again in order), also past the first window."""
    tallies = {f"agent-{i:04d}": _tally(i) for i in range(300)}
    sent = PackedTallies(tallies)
    assert len(sent.blob) > 2 * READ_AHEAD  # more than one window
    with open(tmp_path / "tallies", "w+b") as file:
        sent.write_to(file)
        file.truncate(len(sent.blob) - 10)
        sent.blob = b""
        received = pickle.loads(pickle.dumps(sent))
        received.in_file(file)
        names = []
        with pytest.raises(EOFError, match="end at byte"):
            for name, _ in received.drain():
                names.append(name)
    assert names == list(tallies)[:-1]
