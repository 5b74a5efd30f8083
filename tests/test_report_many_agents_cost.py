"""The faster paths of a report of many agents give exactly what the plain ones gave (issue 13).

* ``meta_report.json``'s text is ``json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)``
  byte for byte, whichever encoder writes each piece (``render/outputs.indented_json_pieces``:
  orjson where its compact text is the standard library's, the standard library's encoder
  elsewhere: floats orjson writes otherwise, big integers, keys that are not strings);
* a run's time in the report (``assemble/agents.iso_time``) is what ``datetime.fromtimestamp``
  gave, to the microsecond, with None past the year 9999;
* a part's tally taken over whole by an aggregator (``AgentTally.taken_over``) is the tally the
  merge into a new one made: the same state, latencies and signals.

Nothing here measures a time.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generate_workload import Shape, generate, runs_for
from meta_supervisor.assemble.agents import iso_time
from meta_supervisor.build.python_part import read_part_python
from meta_supervisor.render.outputs import WIDE, indented_json_pieces, report_json
from meta_supervisor.tally.aggregates import AgentTally
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS
from meta_supervisor.tally.signal_store import SignalStore
from services.pricing import PriceTable


def dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


VALUES = [
    {},
    [],
    "x",
    None,
    True,
    -0.0,
    1e-05,  # orjson: 0.00001
    1.5e-07,  # orjson: 1.5e-7
    1e16,
    2**64,  # orjson refuses integers past 64 bits
    {"a": {"b": [1e-7, -(2**70), {1: 2}, {}, [], 'é\n"\x1f\x7f\u2028\u202e', (1, 2)]}},
    {"k": {True: 1, None: 2, 1.5: 3}},  # keys that are not strings
    {"agents": {f"agent_{i:04d}": {"runs": i, "rate": i / 7, "tiny": i * 1e-9, "ids": {str(i): [i]}} for i in range(WIDE + 5)}},
    {"alpha_quality": {"agents": {f"a{i}": {"h": {"1": {"ic": None, "x": 1e-05 * i}}} for i in range(WIDE)}}},
]


@pytest.mark.parametrize("value", VALUES)
def test_the_report_text_is_json_dumps_text(value) -> None:
    assert "".join(indented_json_pieces(value)) == dumps(value)
    assert report_json(value) == dumps(value) + "\n"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=WIDE + 2),
    max_leaves=200,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_value_gets_json_dumps_text(value) -> None:
    assert "".join(indented_json_pieces(value)) == dumps(value)
    assert "".join(indented_json_pieces({"report": {"section": value}})) == dumps({"report": {"section": value}})


@pytest.mark.parametrize(
    "bad, error",
    [(float("nan"), ValueError), ({"a": {"b": [float("inf")]}}, ValueError), ({"a": {"b": object()}}, TypeError)],
)
def test_what_json_dumps_refuses_is_refused(bad, error) -> None:
    with pytest.raises(error):
        dumps(bad)
    with pytest.raises(error):
        "".join(indented_json_pieces(bad))


def reference_iso_time(nanoseconds: int) -> str | None:
    """``iso_time`` as it was written before (``fromtimestamp``)."""
    if not nanoseconds or nanoseconds <= 0:
        return None
    try:
        moment = dt.datetime.fromtimestamp(nanoseconds // 1_000_000_000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    micros = (nanoseconds // 1000) % 1_000_000
    return moment.replace(microsecond=micros).isoformat().replace("+00:00", "Z")


LAST = 253402300799 * 10**9 + 999_999_999  # 9999-12-31T23:59:59.999999999Z


EDGES = [0, -1, 1, 999, 1000, 10**9, 1_763_973_000_000_000_000, 1_763_973_000_500_000_000, LAST, LAST + 1, 2**80]


@pytest.mark.parametrize("nanoseconds", EDGES)
def test_a_run_time_reads_as_before(nanoseconds: int) -> None:
    assert iso_time(nanoseconds) == reference_iso_time(nanoseconds)


def test_a_run_time_is_utc_to_the_microsecond() -> None:
    assert iso_time(1_763_973_000_500_000_000) == "2025-11-24T08:30:00.500000Z"
    assert iso_time(1_763_973_000_000_000_000) == "2025-11-24T08:30:00Z"
    assert iso_time(LAST) == "9999-12-31T23:59:59.999999Z" and iso_time(LAST + 1) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**64), max_value=2**66))
def test_any_run_time_reads_as_before(nanoseconds: int) -> None:
    assert iso_time(nanoseconds) == reference_iso_time(nanoseconds)


def test_a_tally_taken_over_is_the_tally_a_merge_made(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    shape = Shape(agents=7, scorable=True, tool_spans=2)
    generate(path, runs_for(4000, shape), seed=3, shape=shape)
    for collect in (True, False):
        part = read_part_python(path, 0, None, (PriceTable.load(), None, None, collect, MAX_OPEN_RUNS))
        agents = pickle.loads(part.aggregator_state)[1]
        assert len(agents) == 7
        for tally in agents.values():
            assert tally.slowest and tally.failing and (tally.signals is not None) == collect
            tally.slowest.reverse()  # any heap order: taking over orders it as the merge does
            merged = AgentTally(SignalStore() if collect else None)
            merged.merge(pickle.loads(pickle.dumps(tally)))
            taken = pickle.loads(pickle.dumps(tally)).taken_over(collect)
            assert taken.to_state() == merged.to_state()
            assert taken.latencies_ns == merged.latencies_ns
            if collect:
                assert taken.signals.to_state() == merged.signals.to_state() and taken.signals is not tally.signals
            else:
                assert taken.signals is None and merged.signals is None
