"""The cheaper assembly and writing of a report of many agents give what the plain ones gave (issue 13).

* the pages' numbers (``render/numbers.num``): small integers from a table and floats below 999
  without a thousands separator are the text ``f"{value:,}"`` / ``f"{value:,.{digits}f}"`` gave;
* a tool's p50 and p95 (``tool_tallies.tool_report``, both from one running sum) are the
  percentiles ``_percentile`` finds one at a time, packed histogram or dict;
* an HTML table filled from its cached row markup (``render/html._table``) is the markup made
  cell by cell, braces in a cell and rows of other widths included;
* a wide dict's entries encoded 16 at a time (``render/outputs._wide_pieces``) are
  ``json.dumps(indent=2)``'s text also when an entry holds what orjson writes otherwise or refuses,
  and what json refuses is refused.

Nothing here measures a time.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.render.html import _table, esc
from meta_supervisor.render.numbers import DASH, num
from meta_supervisor.render.outputs import CHUNK, WIDE, indented_json_pieces
from meta_supervisor.tally.tool_tallies import _percentile, add_tool_call, pack_histogram, tool_report


def reference_num(value, digits: int = 0) -> str:
    """``num`` as it was written before."""
    if value is None:
        return DASH
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**7), 10**7) | st.floats(-5_000, 5_000) | st.floats() | st.none() | st.booleans(), st.integers(0, 12))
def test_a_number_on_the_pages_reads_as_before(value, digits: int) -> None:
    assert num(value, digits) == reference_num(value, digits)


@pytest.mark.parametrize("value", [998.99999, 999.0, -998.96, 999.95, -0.0, 0.5, 2.5, math.nan, math.inf, 5e-324, 0, 999, 1000, -1])
def test_numbers_at_the_edges_of_the_short_cuts(value) -> None:
    for digits in (0, 1, 3):
        assert num(value, digits) == reference_num(value, digits)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 2**36), min_size=1, max_size=80))
def test_tool_percentiles_are_the_ones_found_one_at_a_time(latencies: list[int]) -> None:
    tools: dict[str, list] = {}
    for i, latency in enumerate(latencies):
        add_tool_call(tools, "t", i % 3 == 0, 1_000, 1_000 + latency)
    calls, errors, timed, total, low, high, histogram = tools["t"]
    packed = dict(tools, t=[calls, errors, timed, total, low, high, pack_histogram(histogram.items())])
    for table in (tools, packed):
        row = tool_report(table)["t"]
        for q, key in ((50, "p50_latency_ms"), (95, "p95_latency_ms")):
            assert row[key] == round(_percentile(histogram, timed, q, low, high) / 1e6, 3)
        assert row["avg_latency_ms"] == round(total / timed / 1e6, 3) and row["max_latency_ms"] == round(high / 1e6, 3)


def reference_table(headers, rows, numeric=frozenset()) -> str:
    """``_table`` as it was written before: cell by cell."""
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    cells = ("".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)) for row in rows)
    body = "".join(f"<tr>{row}</tr>" for row in cells)
    return f"<table><tr>{head}</tr>{body}</table>"


@pytest.mark.parametrize(
    ("headers", "rows", "numeric"),
    [
        (["a", "b<"], [["{}", "{0}"], ["}{", "x"]], {1}),
        (("a", "b", "c"), [["1", "2", "3"], ["only one"]], frozenset({0, 2})),  # a row of another width
        (["h"], [], set()),
        (["x", "y"], [["%s", "{y}"]], set()),
    ],
)
def test_a_table_from_cached_markup_is_the_table_made_cell_by_cell(headers, rows, numeric) -> None:
    assert _table(headers, rows, numeric) == reference_table(headers, rows, numeric)


def dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


ODD = [1e-05, 2**70, "\ud800", {1: "key not a string"}, [1.5e-07, {"é": "\u2028"}]]  # orjson writes otherwise or refuses


@pytest.mark.parametrize("at", [0, CHUNK - 1, CHUNK, WIDE + 2])
@pytest.mark.parametrize("odd", ODD)
def test_a_wide_dict_encoded_in_chunks_is_json_dumps_text(at: int, odd) -> None:
    entries = {f"agent_{i:04d}": {"runs": i, "rate": i / 7, "days": [{"date": "2026-01-01", "cost": 0.5}]} for i in range(WIDE + 5)}
    entries[f"agent_{at:04d}"]["odd"] = odd
    for report in ({"agents": entries}, {"a": {"b": {"agents": entries}}}, entries):
        assert "".join(indented_json_pieces(report)) == dumps(report)


def test_what_json_refuses_in_a_chunk_is_refused() -> None:
    entries = {f"agent_{i:04d}": {"runs": i} for i in range(WIDE + 1)}
    entries["agent_0003"]["bad"] = float("nan")
    with pytest.raises(ValueError):
        "".join(indented_json_pieces({"agents": entries}))
