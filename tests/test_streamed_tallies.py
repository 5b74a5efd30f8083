"""A worker's tallies streamed to the main process as it makes them (``build.streamed_tallies``).

The records on a real pipe: every agent in order, whatever its name or size; a source that ends
early or out of order is ``PartLost``; a tally asked for ahead of the merge holds the rest. The
core tells each agent's tables' sizes before making any (``AgentStates.upcoming``): the sizes the
made tallies have, on every canonical input. Builds of a zstd stream read in two parts, the
second part's tallies streamed, give the Python reader's report: with the merge's limits checked
on the sizes or on the tallies held ahead, with the tables bounded, and when the worker is lost
halfway through its tallies (the merge undone, the stream read again in one go).
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest
import zstandard

from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build import merge, streamed_tallies
from meta_supervisor.build import native_reader as native_part
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.build.packed_tallies import table_sizes
from meta_supervisor.build.part_result import send_exactly
from meta_supervisor.build.spill_plan import MIN_RESIDENT_SPANS
from meta_supervisor.build.streamed_tallies import PartLost, StreamedTallies, records_from, upcoming_sizes
from meta_supervisor.tally.aggregates import AgentTally
from meta_supervisor.tally.span_aggregator import SpanAggregator
from tests.native_cases import CANONICAL, write
from tests.test_native_zstd import (
    MARKET,
    NOW,
    OPTIONS,
    PRICES,
    Split,
    _build_both,
    native,  # noqa: F401 (the fixture: the core installed and on)
    small_lines,
    workload_lines,
    zfile,
)


def _tally(i: int) -> AgentTally:
    tally = AgentTally()
    tally.outcomes = {"ok": i, "error": i % 3}
    tally.latencies_ns.extend(range(i, i + 40 * (i % 5 + 1)))
    tally.alpha = {("AAPL", "long"): i, (f"S{i}", "short"): 1}
    return tally


NAMES = ["a", "", "agent with spaces", "\u00e9t\u00e9-\U0001f600", "lone \ud800 surrogate", "x" * 5000]


def _streamed(tallies: dict[str, AgentTally]) -> StreamedTallies:
    return StreamedTallies([(name, table_sizes(tally)) for name, tally in tallies.items()], iter(tallies.items()))


def _through_a_pipe(sent: StreamedTallies) -> StreamedTallies:
    """``sent``'s records written by a thread to a real pipe and read back as the main process does."""
    read_end, write_end = os.pipe()

    def write() -> None:
        try:
            sent.send_records(write_end, send_exactly)
        finally:
            os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    received = StreamedTallies(list(sent.sizes.items()), records_from(read_end, len(sent.sizes)))
    received._threads = (writer, read_end)  # joined and closed by the caller (_finish)
    return received


def _finish(received: StreamedTallies) -> None:
    writer, read_end = received._threads
    writer.join(timeout=60)
    assert not writer.is_alive()
    os.close(read_end)


def test_records_on_a_pipe_give_every_agent_in_order() -> None:
    """Odd names (empty, non-ASCII, a lone surrogate, 5,000 characters) and tallies larger than a
    read of the pipe: each agent comes out as it went in, in order, and the mapping is then empty."""
    tallies = {name: _tally(i) for i, name in enumerate(NAMES)}
    tallies["big"] = _tally(99)
    tallies["big"].latencies_ns.extend(range(200_000))  # ~1.6 MB: many reads of the pipe, past its size
    expected = [(name, pickle.dumps(tally)) for name, tally in tallies.items()]
    received = _through_a_pipe(_streamed(tallies))
    assert list(received) == list(tallies) and received.sizes == {name: table_sizes(t) for name, t in tallies.items()}
    drained = [(name, pickle.dumps(tally)) for name, tally in received.drain()]
    _finish(received)
    assert drained == expected
    assert len(received) == 0


def test_a_tally_asked_for_ahead_holds_the_rest() -> None:
    """``within_limits`` may need an agent's keys before the merge: the records still to come are
    read and held (as pickles); the drain then gives every agent, in order, from what was held."""
    tallies = {f"agent-{i}": _tally(i) for i in range(40)}
    received = _through_a_pipe(_streamed(tallies))
    assert received["agent-30"].alpha == tallies["agent-30"].alpha
    _finish(received)  # everything was read: the writer is done
    assert len(received._held) == 40
    drained = [(name, pickle.dumps(tally)) for name, tally in received.drain()]
    assert drained == [(name, pickle.dumps(tally)) for name, tally in tallies.items()]
    with pytest.raises(KeyError):
        received["not an agent"]


def test_a_source_that_ends_early_or_out_of_order_is_a_lost_part() -> None:
    tallies = {f"agent-{i}": _tally(i) for i in range(5)}
    sizes = [(name, table_sizes(tally)) for name, tally in tallies.items()]
    early = StreamedTallies(sizes, iter(list(tallies.items())[:3]))
    with pytest.raises(PartLost, match="ended before agent 'agent-3'"):
        list(early.drain())
    swapped = list(tallies.items())
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(PartLost, match="out of order"):
        list(StreamedTallies(sizes, iter(swapped)).drain())
    read_end, write_end = os.pipe()  # a record cut short: the writer went away mid-record
    record = next(_streamed(tallies).records())
    os.write(write_end, record[: len(record) // 2])
    os.close(write_end)
    with pytest.raises(PartLost, match="closed its pipe"):
        list(StreamedTallies(sizes, records_from(read_end, 5)).drain())
    os.close(read_end)


@pytest.mark.usefixtures("native")
@pytest.mark.parametrize("case", sorted(CANONICAL))
def test_the_core_tells_the_sizes_the_made_tallies_have(tmp_path: Path, case: str) -> None:
    """``AgentStates.upcoming``, before any tally is made, against ``table_sizes`` of the made ones."""
    path = write(tmp_path, CANONICAL[case]())
    raw = native_part._read(native_core.core(), path, 0, None, OPTIONS, None, None, None)
    assert raw is not None, case
    told = upcoming_sizes(raw["agents"])
    _, agents, order, *_ = native_part._tallies(raw)
    assert told == [(name, table_sizes(agents[name])) for name in order] and told, case


def _zstd_stream(tmp_path: Path) -> Path:
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    return zfile(tmp_path, zstandard.ZstdCompressor(level=3).compress(data))


class CountStreams:
    """Counts the parts merged with streamed tallies (the patch is inherited by the forked worker,
    which is what makes them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streamed = 0
        original = merge.merge_part

        def merging(aggregator, part, *args, **kwargs):
            self.streamed += isinstance(part.aggregator_state[1], StreamedTallies)
            return original(aggregator, part, *args, **kwargs)

        monkeypatch.setattr(merge, "merge_part", merging)


@pytest.mark.usefixtures("native")
@pytest.mark.parametrize("limits", ["sizes", "keys", "older core"])
def test_two_parts_with_streamed_tallies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: str) -> None:
    """The worker's tallies streamed and merged as they come: the Python reader's report, with the
    limits checked on the told sizes, or on the tallies themselves (held ahead of the merge). A
    core that cannot tell the sizes beforehand (an older one) has its part sent whole, as before."""
    path = _zstd_stream(tmp_path)
    split = Split(monkeypatch, 0.5)
    streams = CountStreams(monkeypatch)
    if limits == "keys":  # every agent's limits checked on its keys: the rest of the records read ahead and held
        monkeypatch.setattr(merge, "_fits", lambda mine, sizes: False)
    if limits == "older core":
        monkeypatch.setattr(native_part, "upcoming_sizes", lambda states: None)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["spans"] > 4000
    assert split.merges == [True] and streams.streamed == (limits != "older core")
    assert len(with_core["agents"]) >= 4


@pytest.mark.usefixtures("native")
def test_two_parts_with_bounded_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables bounded at their smallest: the worker's spans, closed runs and latencies go through
    its hand-over files, its tallies through the pipe; the same report as one process's."""
    path = _zstd_stream(tmp_path)
    reports = []
    for workers in (2, 1):
        split = Split(monkeypatch, 0.5)
        streams = CountStreams(monkeypatch)
        options = BuildOptions(inputs=[str(path)], prices=PRICES, workers=workers, resident_spans=MIN_RESIDENT_SPANS)
        data, _ = build_inputs(options)
        reports.append(build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET))
        assert split.merges == ([True] if workers == 2 else []) and streams.streamed == (workers == 2)
    assert reports[0] == reports[1] and reports[0]["inputs"]["spans"] > 4000


@pytest.mark.usefixtures("native")
@pytest.mark.parametrize("how", ["dies", "out of order"])
def test_a_worker_lost_halfway_through_its_tallies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The worker ends (or its records come out of order) after some of its agents were merged: the
    merge is undone whole (the aggregator emptied), the stream read again in one go; the Python
    reader's report, nothing counted twice."""
    path = _zstd_stream(tmp_path)
    original = StreamedTallies.records

    def records(self):
        made = list(original(self)) if how == "out of order" else original(self)
        if how == "out of order":
            made[1], made[2] = made[2], made[1]
        for count, record in enumerate(made):
            if how == "dies" and count == 2:
                os._exit(0)  # the worker gone after two agents, as if killed
            yield record

    monkeypatch.setattr(StreamedTallies, "records", records)
    monkeypatch.setattr(streamed_tallies, "SEND_BATCH", 1)  # each record written as it is made
    drained = []  # the worker's agents merged before it was lost
    original_drain = StreamedTallies.drain

    def drain(self):
        for item in original_drain(self):
            drained.append(item[0])
            yield item

    monkeypatch.setattr(StreamedTallies, "drain", drain)
    resets = []
    original_reset = SpanAggregator.reset

    def reset(self):
        resets.append(len(self.agents))
        original_reset(self)

    monkeypatch.setattr(SpanAggregator, "reset", reset)
    split = Split(monkeypatch, 0.5)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["spans"] > 4000
    assert with_core["inputs"]["duplicate_spans"] == without["inputs"]["duplicate_spans"] == 0
    assert split.merges == []  # the merge did not end: it was undone
    assert len(drained) == (2 if how == "dies" else 1)  # some of the worker's agents were merged first
    assert len(resets) == 1 and resets[0] >= len(drained)


@pytest.mark.usefixtures("native")
def test_a_merge_refused_while_the_worker_still_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """The merge refused (a limit would be passed) while the worker is blocked on a full pipe: the
    worker is stopped without a word on stderr (no broken pipe's traceback), the rest read again in
    order, the Python reader's report."""
    path = _zstd_stream(tmp_path)
    monkeypatch.setattr(streamed_tallies, "PIPE_BYTES", 4096)  # the smallest pipe: the worker blocks at once
    monkeypatch.setattr(streamed_tallies, "SEND_BATCH", 1)
    monkeypatch.setattr(merge, "within_limits", lambda *args: False)
    split = Split(monkeypatch, 0.5)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["spans"] > 4000
    assert split.merges[0] is False and not any(split.merges)  # (the rest read apart is refused too)
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "BrokenPipe" not in captured.err, captured.err[-2000:]
