"""What a report of many agents keeps and writes more cheaply gives exactly what it gave before (issue 13).

* a container that the entries of a wide dict share (the empty alpha-quality horizons of every
  agent without signals) is encoded once (``services.state_files.SharedValues``): the report's text
  is still ``json.dumps(indent=2)``'s and the compact state's ``json.dumps``'s, also when the
  shared value holds what the fast encoder cannot write, and errors are raised as before;
* a tool's latency histogram loaded from a state is packed (``tool_tallies.pack_histogram``):
  merged with packed or dict ones, counted into again, saved and reported, it gives what the
  dict gave;
* a worker's packed tallies carry their tables' sizes, so the merge checks the limits without
  unpickling an agent whose tables fit; a part that would pass a limit is still refused.

Nothing here measures a time.
"""

from __future__ import annotations

import json
import pickle
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.build.merge import within_limits
from meta_supervisor.build.packed_tallies import PackedTallies, table_sizes
from meta_supervisor.render.html import esc
from meta_supervisor.render.outputs import WIDE, indented_json_pieces
from meta_supervisor.tally.aggregates import AgentTally, InputTally
from meta_supervisor.tally.bounds import MAX_DISTINCT, MAX_OUTCOMES, T_HIST
from meta_supervisor.tally.span_aggregator import SpanAggregator
from meta_supervisor.tally.tool_tallies import (
    COUNT_BITS,
    add_tool_call,
    histogram_items,
    histogram_state,
    latency_bucket,
    merged_histogram,
    native_histogram_merge,
    pack_histogram,
    tool_report,
)
from services.state_files import json_pieces


def indented(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def compact(value, **options) -> str:
    return json.dumps(value, separators=(",", ":"), **options)


def shared_report(cells, agents: int = WIDE + 3) -> dict:
    """A report whose agents without signals share one horizons object, as ``alpha.quality`` makes it."""
    section = {}
    for i in range(agents):
        mine = cells if i % 4 else {"1": {"signals": i, "ic": i / 7}}
        section[f"agent_{i:04d}"] = {"signals": i % 3, "symbols": [], "horizons": mine, "cost": {"cost_usd": i * 1e-9}}
    return {"schema_version": 1, "alpha_quality": {"horizons": [1, 5], "agents": section}, "tail": [1e-05, 2**70]}


SHARED_CELLS = [
    {"1": {"signals": 0, "hit_rate": None, "calibration": [{"lo": 0.0, "hi": 0.1, "count": 0}] * 3}},
    {"1": {"tiny": 1e-07, "big": 2**65, "text": 'é\n"\x1f\u2028'}},  # what orjson writes otherwise
    ["a", 1e16, {"k": []}],
]


@pytest.mark.parametrize("cells", SHARED_CELLS)
def test_shared_values_are_written_as_json_dumps_writes_them(cells) -> None:
    report = shared_report(cells)
    assert "".join(indented_json_pieces(report)) == indented(report)
    cache = {"key": "k", "section": report["alpha_quality"]}
    assert "".join(json_pieces(cache, depth=3)) == compact(cache)
    assert "".join(json_pieces(cache, depth=3, ensure_ascii=False)) == compact(cache, ensure_ascii=False)


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=4))


@settings(max_examples=60, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=3), st.lists(st.integers(0, 2), min_size=WIDE, max_size=WIDE + 4))
def test_any_shared_values_give_json_dumps_text(shared, picks) -> None:
    """Entries holding one of a few shared objects (or their own) under any keys: the same text."""
    entries = {}
    for i, pick in enumerate(picks):
        value = shared[pick % len(shared)]
        entries[f"e{i}"] = {"own": [i], "shared": value, "again": value} if pick else {"own": i}
    for report in ({"agents": entries}, {"a": {"b": {"agents": entries}}}):
        assert "".join(indented_json_pieces(report)) == indented(report)
        for depth in (1, 2, 3, 4):
            assert "".join(json_pieces(report, depth=depth)) == compact(report)


def test_a_shared_value_json_refuses_is_refused() -> None:
    for bad, error in ((float("nan"), ValueError), (object(), TypeError)):
        report = shared_report({"1": {"x": bad}})
        with pytest.raises(error):
            "".join(indented_json_pieces(report))
        with pytest.raises(error):
            "".join(json_pieces({"section": report["alpha_quality"]}, depth=3, allow_nan=False))


def test_esc_escapes_what_html_escape_escapes() -> None:
    from html import escape

    for text in ("plain", "a&b", "<b>", "\"q\" 'a'", "", "é\u202e", 12, None):
        assert esc(text) == escape("" if text is None else str(text), quote=True)


# --- packed tool histograms ---------------------------------------------------------------------


def tally_with_calls(latencies: list[int], name: str = "t") -> AgentTally:
    tally = AgentTally()
    for i, latency in enumerate(latencies):
        add_tool_call(tally.tools, name, i % 5 == 0, 1_000, 1_000 + latency)
    return tally


def loaded(tally: AgentTally) -> AgentTally:
    """The tally as a state (or the native core) hands it back: its histograms packed."""
    return AgentTally.from_state(json.loads(json.dumps(tally.to_state())), b"")


latency_lists = st.lists(st.integers(0, 2**40), max_size=60)


@settings(max_examples=80, deadline=None)
@given(latency_lists, latency_lists, latency_lists)
def test_packed_histograms_merge_count_save_and_report_as_dicts(first, second, third) -> None:
    plain = tally_with_calls(first)
    plain.merge(tally_with_calls(second))
    for latency in third:
        add_tool_call(plain.tools, "t", False, 1_000, 1_000 + latency)
    # the same through packed histograms: packed + packed, packed + dict, dict + packed, then counted into
    packed = loaded(tally_with_calls(first))
    packed.merge(loaded(tally_with_calls(second)))
    mixed = tally_with_calls(first)
    mixed.merge(loaded(tally_with_calls(second)))
    other = loaded(tally_with_calls(first))
    other.merge(tally_with_calls(second))
    for tally in (packed, mixed, other):
        if first:  # the tally merged into keeps its form: a dict counted into, a packed one replaced
            assert type(tally.tools["t"][T_HIST]) is (dict if tally is mixed else array)
        for latency in third:
            add_tool_call(tally.tools, "t", False, 1_000, 1_000 + latency)
        assert tally.to_state() == plain.to_state()
        assert tool_report(tally.tools) == tool_report(plain.tools)
        assert loaded(tally).to_state() == plain.to_state()
        assert pickle.loads(pickle.dumps(tally)).to_state() == plain.to_state()


def test_a_packed_histogram_is_never_changed_in_place() -> None:
    mine = pack_histogram([(3, 1), (1, 2)])
    theirs = pack_histogram([(1, 5)])
    merged = merged_histogram(mine, theirs)
    assert list(histogram_items(merged)) == [(1, 7), (3, 1)]
    assert list(histogram_items(mine)) == [(1, 2), (3, 1)] and list(histogram_items(theirs)) == [(1, 5)]
    shared = loaded(tally_with_calls([5, 7]))
    copy = AgentTally()
    copy.merge(shared)  # shares the packed histogram
    add_tool_call(copy.tools, "t", False, 1, 1 + 2**20)
    assert dict(histogram_items(shared.tools["t"][T_HIST])) == {latency_bucket(5): 1, latency_bucket(7): 1}


@pytest.mark.parametrize("pairs", [[(1, 2**64)], [(1.5, 2)], [("a", 1), (2, 1)], [(1, 2, 3)]])
def test_a_damaged_histogram_in_a_state_is_a_value_or_type_error(pairs) -> None:
    with pytest.raises((ValueError, TypeError)):
        pack_histogram(pairs)


def test_a_bucket_given_twice_keeps_its_last_count_as_a_dict_did() -> None:
    assert list(histogram_items(pack_histogram([[2, 1], [1, 4], [2, 9]]))) == [(1, 4), (2, 9)]


# --- the merge's limits from the packed sizes --------------------------------------------------------


def aggregator_with(name: str, tally: AgentTally) -> SpanAggregator:
    aggregator = SpanAggregator()
    aggregator.agents[name] = tally
    aggregator.agent_index[name] = 0
    aggregator.agent_order.append(name)
    return aggregator


def outcomes_tally(outcomes: list[str]) -> AgentTally:
    tally = AgentTally()
    tally.outcomes = dict.fromkeys(outcomes, 1)
    return tally


def test_packed_sizes_decide_the_limits_as_the_tallies_do() -> None:
    half = [f"o{i}" for i in range(MAX_OUTCOMES // 2 + 2)]  # two of these pass the limit unless they share keys
    mine = aggregator_with("a", outcomes_tally(half))
    for theirs, fits in ((outcomes_tally(half), True), (outcomes_tally([f"x{i}" for i in range(len(half))]), False)):
        packed = PackedTallies({"a": theirs})
        assert packed.sizes["a"] == table_sizes(theirs)
        assert within_limits(mine, InputTally(), packed, ["a"]) is fits
        assert within_limits(mine, InputTally(), {"a": theirs}, ["a"]) is fits
    small = PackedTallies({"a": outcomes_tally(["ok"])})
    small_tally = small["a"]
    small_tally.alpha = {(f"s{i}", "up"): 1 for i in range(MAX_DISTINCT)}  # not what was packed: sizes are of the packed
    assert within_limits(mine, InputTally(), small, ["a"])
    assert pickle.loads(pickle.dumps(small)).sizes == small.sizes
    assert dict(small.drain()).keys() == {"a"} and small.sizes == {}


# --- packed histograms at 8 bytes a bucket, exact whatever the counts ---------------------------------


def tools_with(histogram, timed: int) -> dict:
    return {"t": [timed, 0, timed, timed * 1000, 1, 10**9, histogram]}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.integers(0, 1887), st.integers(0, 2**63 - 1), max_size=40), st.booleans())
def test_a_packed_histogram_reads_as_its_pairs_whatever_the_counts(counts: dict, small: bool) -> None:
    if small:
        counts = {bucket: calls % (1 << COUNT_BITS) for bucket, calls in counts.items()}
    packed = pack_histogram(list(counts.items()))
    assert list(histogram_items(packed)) == sorted(counts.items())
    assert histogram_state(packed) == sorted([bucket, calls] for bucket, calls in counts.items())
    fits = all(calls < 1 << COUNT_BITS for calls in counts.values())
    assert packed.itemsize * len(packed) == (8 if fits else 16) * len(counts)  # 8 bytes a bucket when the counts fit 32 bits
    timed = sum(counts.values())
    if 0 < timed < 2**63:
        assert tool_report(tools_with(packed, timed)) == tool_report(tools_with(dict(counts), timed))
    assert pickle.loads(pickle.dumps(packed)) == packed


def test_counts_past_32_bits_stay_exact_through_a_merge() -> None:
    near = (1 << COUNT_BITS) - 1
    mine, theirs = pack_histogram([(5, near), (9, 1)]), pack_histogram([(5, 1), (9, 2)])
    assert mine.itemsize * len(mine) == theirs.itemsize * len(theirs) == 16  # both narrow: 8 bytes a bucket
    merged = merged_histogram(mine, theirs)  # the same buckets: counts added, one past 32 bits
    assert list(histogram_items(merged)) == [(5, 1 << COUNT_BITS), (9, 3)]
    assert merged.itemsize * len(merged) == 32  # the wide form: (bucket, calls) pairs
    again = merged_histogram(merged, pack_histogram([(7, 4)]))  # wide + narrow, other buckets
    assert list(histogram_items(again)) == [(5, 1 << COUNT_BITS), (7, 4), (9, 3)]
    back = merged_histogram(pack_histogram([(1, 1)]), pack_histogram([(2, 1)]))
    assert list(histogram_items(back)) == [(1, 1), (2, 1)] and back.itemsize * len(back) == 16  # narrow again
    assert list(histogram_items(pack_histogram([(3, -1)]))) == [(3, -1)]  # a damaged state's negative count: wide, as read
    assert list(histogram_items(pack_histogram([(3, 2**63 - 1)]))) == [(3, 2**63 - 1)]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(0, 1887), st.integers(0, 2**40), max_size=30),
    st.dictionaries(st.integers(0, 1887), st.integers(0, 2**40), max_size=30),
)
def test_two_packed_histograms_merge_into_the_sum_of_their_counts(mine: dict, theirs: dict) -> None:
    """Packed histograms of other buckets merge bucket by bucket (made in C: ``merged_histogram``),
    into the form a histogram of the summed counts has."""
    expected = {bucket: mine.get(bucket, 0) + theirs.get(bucket, 0) for bucket in mine.keys() | theirs.keys()}
    merged = merged_histogram(pack_histogram(list(mine.items())), pack_histogram(list(theirs.items())))
    assert list(histogram_items(merged)) == sorted(expected.items())
    assert merged == pack_histogram(sorted(expected.items()))  # narrow or wide as the sums need


def native_merge():
    merge = native_histogram_merge()
    if merge is None:
        pytest.fail("the native core is not installed, or is older than merged_narrow_histogram: run make native")
    return merge


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.integers(0, 1887), st.one_of(st.integers(0, 300), st.integers(2**31, 2**32 - 1)), min_size=1, max_size=40),
    st.dictionaries(st.integers(0, 1887), st.one_of(st.integers(0, 300), st.integers(2**31, 2**32 - 1)), min_size=1, max_size=40),
)
def test_the_native_core_merges_two_narrow_histograms_as_python_does(mine: dict, theirs: dict) -> None:
    """Two narrow histograms merged in one walk by the native core (``merged_narrow_histogram``):
    the histogram Python's merge makes, narrow or (a sum past 32 bits) wide, from either side."""
    merge = native_merge()
    left, right = pack_histogram(list(mine.items())), pack_histogram(list(theirs.items()))
    assert left.typecode == right.typecode == "I"
    for a, b in ((left, right), (right, left)):
        expected = merged_histogram(a, b)
        got = merged_histogram(a, b, merge)
        assert got == expected and got.typecode == expected.typecode
    assert list(left) == list(pack_histogram(list(mine.items())))  # neither side changed


def test_the_native_merge_declines_what_is_not_a_narrow_histogram(monkeypatch) -> None:
    """Not two narrow histograms (empty, an odd length, buckets out of order or repeated), or a sum
    past 32 bits: None, and Python merges them (``merged_histogram``)."""
    monkeypatch.delenv("ALPHATRACE_NATIVE", raising=False)
    merge = native_merge()
    good = array("I", [1, 5, 7, 7])
    for bad in (array("I", [1, 2, 3]), array("I", [5, 1, 1, 1]), array("I", [5, 5, 1, 1])):
        assert merge(good, bad) is None and merge(bad, good) is None
    for other in (array("I"), array("I", [5, 1, 1, 1])):  # an empty one is not even handed to the core
        assert merged_histogram(good, other, merge) == merged_histogram(good, other)
    assert merge(good, array("I", [5, 2**32 - 7])) is None
    assert array("I", merge(good, array("I", [3, 5, 2, 2]))) == array("I", [1, 3, 5, 7, 2, 9])
    monkeypatch.setenv("ALPHATRACE_NATIVE", "off")
    assert native_histogram_merge() is None


def test_the_native_cores_histogram_bytes_pack_as_its_pairs_do() -> None:
    """The native core hands a histogram whose counts fit 32 bits over as bytes (its buckets then
    their calls, ``narrow_histogram``): the same packed histogram as its (bucket, calls) pairs."""
    pairs = [(0, 3), (64, 1), (700, 2**32 - 1), (1887, 9)]
    raw = array("I", [bucket for bucket, _ in pairs] + [calls for _, calls in pairs]).tobytes()
    assert pack_histogram(raw) == pack_histogram(pairs)
    assert pack_histogram(raw).typecode == "I"
