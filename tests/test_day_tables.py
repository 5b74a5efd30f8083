"""An agent's per-day tables packed (``tally.day_tables.DayTable``, issue 13: 1,000 agents over many
days) give exactly what the dicts of lists gave: the same rows in the same order, saved, merged
(packed with packed, with dicts, into an empty table), counted into again by the Python reader,
pickled for a worker's part; a table that does not fit 64 bits stays a dict. Nothing here
measures a time."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.build.merge import within_limits
from meta_supervisor.tally.agent_counts import count_llm_call
from meta_supervisor.tally.aggregates import AgentTally, InputTally
from meta_supervisor.tally.bounds import NS_PER_DAY
from meta_supervisor.tally.day_tables import DayTable, counting, merged, packed
from meta_supervisor.tally.span_aggregator import SpanAggregator

I64 = (-(1 << 63), (1 << 63) - 1)
counts64 = st.integers(*I64)
small_counts = st.integers(0, 1000)
days = st.one_of(st.integers(-3, 40), st.sampled_from(I64))
models = st.sampled_from(["gpt-4o-mini", "gpt-4.1", "", "modèle-ü"])
model_keys = st.tuples(days, models, st.booleans())


def rows_of(keys, counts, width):
    return st.dictionaries(keys, st.lists(counts, min_size=width, max_size=width), max_size=12)


def plain_merge(mine: dict, theirs: dict) -> dict:
    """What ``_merge_lists`` did: counts added, new keys after ``mine``'s in ``theirs``' order."""
    out = {key: list(row) for key, row in mine.items()}
    for key, row in theirs.items():
        if key in out:
            out[key] = [a + b for a, b in zip(out[key], row)]
        else:
            out[key] = list(row)
    return out


def as_lists(table) -> list:
    return [(key, list(row)) for key, row in table.items()]


@settings(max_examples=60, deadline=None)
@given(rows_of(days, counts64, 5), rows_of(model_keys, counts64, 5))
def test_packed_tables_hold_the_rows_in_order_and_survive_pickling(day_rows: dict, model_rows: dict) -> None:
    for rows, is_models in ((day_rows, False), (model_rows, True)):
        table = packed(list(rows.items()), 5, models=is_models)
        assert type(table) is DayTable
        assert as_lists(table) == [(key, row) for key, row in rows.items()]
        assert list(table) == list(rows) and len(table) == len(rows)
        for key, row in rows.items():
            assert key in table and table[key] == tuple(row) and table.get(key) == tuple(row)
        assert table == rows and counting(table) == rows
        again = pickle.loads(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))
        assert type(again) is DayTable and as_lists(again) == as_lists(table)


def test_lookups_of_other_keys_miss_and_rows_cannot_be_changed() -> None:
    runs = packed([(20415, [1, 2, 3, 4, 5]), (20416, [0, 0, 0, 0, 1])], 5)
    by_model = packed([((20415, "m", False), [1, 0, 10, 0, 5]), ((20415, "m", True), [2, 0, 0, 0, 0])], 5, models=True)
    missing_runs = [20417, "20415", 20415.0, True, (20415,), 1 << 70]
    missing_models = [(20415, "m", 0), (20415, "n", False), (20416, "m", False), 20415, ("m",)]
    for table, missing in ((runs, missing_runs), (by_model, missing_models)):
        for key in missing:
            assert key not in table and table.get(key) is None
            with pytest.raises(KeyError):
                table[key]
    assert by_model[(20415, "m", True)] == (2, 0, 0, 0, 0) and by_model.get((20415, "m", False)) == (1, 0, 10, 0, 5)
    with pytest.raises(TypeError):
        runs[20415][0] += 1  # a tuple: a count changed in place would be lost, so it fails


@pytest.mark.parametrize(
    ("rows", "is_models"),
    [
        ([(1, [1 << 63, 0, 0, 0, 0])], False),  # a count past 64 bits
        ([(1, [0, 0, 0, 0, -(1 << 63) - 1])], False),
        ([(1 << 64, [0, 0, 0, 0, 0])], False),  # a day past 64 bits
        ([(1, [0, 0, 0, 0])], False),  # a row of another width
        ([(True, [0, 0, 0, 0, 0])], False),  # a key of another type
        ([((1, "m", 1), [0, 0, 0, 0, 0])], True),  # simulated not a bool
        ([((1, 7, False), [0, 0, 0, 0, 0])], True),  # a model that is not a str
        ([((1, "m", False), [0, 0, 0, 0, 1.5])], True),  # a count that is not an int
    ],
)
def test_a_table_that_does_not_fit_stays_a_dict_of_lists(rows: list, is_models: bool) -> None:
    table = packed(rows, 5, models=is_models)
    assert type(table) is dict and table == {key: list(row) for key, row in rows}


TWO_OF_EACH_KIND = (  # two day tables, two model tables
    rows_of(days, small_counts, 5),
    rows_of(days, small_counts, 5),
    rows_of(model_keys, small_counts, 5),
    rows_of(model_keys, small_counts, 5),
)


@settings(max_examples=80, deadline=None)
@given(*TWO_OF_EACH_KIND)
def test_merges_of_packed_and_dict_tables_equal_the_dicts_merge(a: dict, b: dict, ma: dict, mb: dict) -> None:
    for mine, theirs, is_models in ((a, b, False), (ma, mb, True)):
        expected = [(key, row) for key, row in plain_merge(mine, theirs).items()]

        def pack(rows: dict, is_models: bool = is_models):
            return packed(list(rows.items()), 5, models=is_models)

        both = merged(pack(mine), pack(theirs))
        assert as_lists(both) == expected
        assert type(both) is DayTable
        assert as_lists(merged({}, pack(theirs))) == [(key, row) for key, row in theirs.items()]
        assert as_lists(merged(counting(pack(mine)), pack(theirs))) == expected
        assert as_lists(merged(pack(mine), {key: list(row) for key, row in theirs.items()})) == expected


@settings(max_examples=80, deadline=None)
@given(*TWO_OF_EACH_KIND)
def test_two_packed_tables_merge_into_the_table_their_merged_rows_pack_into(a: dict, b: dict, ma: dict, mb: dict) -> None:
    """Two packed tables are merged on their arrays (``_merged_rows``), not unpacked and packed
    again: the result is the very table ``packed`` makes of the merged rows (the same rows in the
    same order, the same model names in the same order), also after a round through pickle."""
    for mine, theirs, is_models in ((a, b, False), (ma, mb, True)):
        for left, right in ((mine, theirs), (theirs, mine)):
            loaded = pickle.loads(pickle.dumps(packed(list(left.items()), 5, models=is_models)))
            both = merged(loaded, packed(list(right.items()), 5, models=is_models))
            expected = packed(list(plain_merge(left, right).items()), 5, models=is_models)
            assert type(both) is DayTable and both.rows == expected.rows and both.models == expected.models


def test_a_merge_leaves_both_tables_as_they_were() -> None:
    mine = packed([((20415, "gpt-4.1", False), [1, 2, 3, 4, 5])], 5, models=True)
    theirs = packed([((20415, "gpt-4o-mini", True), [1, 1, 1, 1, 1]), ((20415, "gpt-4.1", False), [1, 0, 0, 0, 0])], 5, models=True)
    before = (mine.rows.tolist(), list(mine.models), theirs.rows.tolist(), list(theirs.models))
    out = merged(mine, theirs)
    assert as_lists(out) == [((20415, "gpt-4.1", False), [2, 2, 3, 4, 5]), ((20415, "gpt-4o-mini", True), [1, 1, 1, 1, 1])]
    assert (mine.rows.tolist(), list(mine.models), theirs.rows.tolist(), list(theirs.models)) == before


def test_a_merge_past_64_bits_is_exact_as_a_dict() -> None:
    top = (1 << 63) - 1
    out = merged(packed([(5, [top, 1, 0, 0, 0])], 5), packed([(5, [1, 1, 0, 0, 0]), (6, [0, 0, 0, 0, 2])], 5))
    assert type(out) is dict and out == {5: [top + 1, 2, 0, 0, 0], 6: [0, 0, 0, 0, 2]}
    assert list(out) == [5, 6]
    key = (5, "gpt-4.1", False)
    out = merged(packed([(key, [0, 0, 0, 0, -top - 1])], 5, models=True), packed([(key, [0, 0, 0, 0, -1])], 5, models=True))
    assert type(out) is dict and out == {key: [0, 0, 0, 0, -top - 2]}


def tally_state(day_runs: list, day_models: list, asof_runs: list) -> dict:
    state = AgentTally().to_state()
    state.update(day_runs=day_runs, day_models=day_models, asof_runs=asof_runs)
    return state


STATE = tally_state(
    [[20416, 3, 1, 0, 2, 0], [20415, 1, 0, 1, 0, 4]],
    [
        [20416, "gpt-4.1", False, 4, 1, 900, 100, 70],
        [20415, "gpt-4o-mini", True, 1, 0, 10, 0, 5],
        [20416, "gpt-4o-mini", False, 2, 0, 20, 0, 9],
    ],
    [[20410, 1, 1, 0]],
)


def test_a_loaded_tally_is_packed_saves_the_same_state_and_reports_the_same_days() -> None:
    tally = AgentTally.from_state(STATE, b"")
    assert all(type(getattr(tally, name)) is DayTable for name in ("day_runs", "day_models", "asof_runs"))
    assert tally.to_state() == STATE
    again = pickle.loads(pickle.dumps(tally, protocol=pickle.HIGHEST_PROTOCOL))
    assert again.to_state() == STATE
    merged_tally = AgentTally()
    merged_tally.merge(tally)
    merged_tally.merge(again)
    doubled = merged_tally.to_state()
    assert doubled["day_runs"] == [[row[0], *(2 * n for n in row[1:])] for row in STATE["day_runs"]]
    assert doubled["day_models"] == [[*row[:3], *(2 * n for n in row[3:])] for row in STATE["day_models"]]


def test_counting_into_a_loaded_tally_gives_what_counting_into_dicts_gives() -> None:
    loaded = AgentTally.from_state(STATE, b"")
    plain = AgentTally.from_state(STATE, b"")
    plain.day_runs, plain.day_models, plain.asof_runs = (counting(getattr(plain, name)) for name in ("day_runs", "day_models", "asof_runs"))
    for tally in (loaded, plain):
        count_llm_call(tally, 20416, "gpt-4.1", False, "chat", 5, 6, 1, True, False)
        count_llm_call(tally, 20417, "gpt-4.1", False, "chat", 1, 2, 0, False, False)
        SpanAggregator._day_row(tally, 20415 * NS_PER_DAY + 5)[0] += 1
        SpanAggregator._day_row(tally, 20420 * NS_PER_DAY)[1] += 1
    assert type(loaded.day_models) is dict and type(loaded.day_runs) is dict
    assert loaded.to_state() == plain.to_state()
    state = loaded.to_state()
    assert state["day_models"][0] == [20416, "gpt-4.1", False, 5, 2, 905, 101, 76]
    assert state["day_models"][-1] == [20417, "gpt-4.1", False, 1, 0, 1, 0, 2]
    assert state["day_runs"] == [[20416, 3, 1, 0, 2, 0], [20415, 2, 0, 1, 0, 4], [20420, 0, 1, 0, 0, 0]]


def test_the_merge_limits_see_the_keys_of_packed_tables() -> None:
    aggregator = SpanAggregator()
    mine = aggregator.agents["a"] = AgentTally.from_state(tally_state([], [[d, "m", False, 1, 0, 0, 0, 0] for d in range(600)], []), b"")
    theirs = AgentTally.from_state(tally_state([], [[d, "m", False, 1, 0, 0, 0, 0] for d in range(300, 900)], []), b"")
    assert type(mine.day_models) is DayTable
    assert within_limits(aggregator, InputTally(), {"a": theirs}, ["a"])  # 900 distinct keys: within 1,000
    other = AgentTally.from_state(tally_state([], [[d, "n", False, 1, 0, 0, 0, 0] for d in range(600)], []), b"")
    assert not within_limits(aggregator, InputTally(), {"a": other}, ["a"])  # 1,200: past the limit


def test_a_month_of_an_agent_is_8_bytes_a_column() -> None:
    """30 days of one agent: day_runs 30 x 6 columns, day_models 30 x 8 (the model an index),
    against ~200-300 bytes a row as dicts of lists of ints."""
    state = tally_state(
        [[20400 + d, 100 + d, 7, 0, 300 + d, 0] for d in range(30)],
        [[20400 + d, "gpt-4o-mini-2024-07-18", False, 90 + d, 1, 140_000 + d, 7_000, 17_000] for d in range(30)],
        [],
    )
    tally = AgentTally.from_state(state, b"")
    for table, columns in ((tally.day_runs, 6), (tally.day_models, 8)):
        assert type(table) is DayTable and len(table) == 30
        assert table.rows.itemsize * len(table.rows) == 30 * columns * 8
    assert tally.to_state()["day_models"] == state["day_models"]
