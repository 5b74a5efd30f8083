"""Fuzzing the report reader with mutated collector lines (bounded: PROPERTY_EXAMPLES, default 150).

The lines are what the real collector wrote (tests/fixtures/collector/traces.json.jsonl) and what
the embedded exporter writes; hypothesis flips, cuts, splices and retypes them. Whatever it does:
the build never raises, a line that is not JSON is counted and located, intact lines' spans are all
counted, and repeating every line never counts anything twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from services.pricing import PriceTable

FIXTURE = Path(__file__).parent / "fixtures" / "collector" / "traces.json.jsonl"
BASE_LINES = FIXTURE.read_bytes().splitlines()
PRICES = PriceTable.load()
NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
RETYPES = [
    (b'"intValue":"', b'"intValue":'),
    (b'"stringValue":"', b'"intValue":"'),
    (b'"doubleValue":', b'"doubleValue":"NaN","x":'),
    (b'"spans":[', b'"spans":{"a":['),
    (b'"startTimeUnixNano":"', b'"startTimeUnixNano":"-'),
    (b'"traceId":"', b'"traceId":"zz'),
    (b'"attributes":[', b'"attributes":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['),
    (b'"name":"', b'"name":"\\ud800<script>'),
    (b'"endTimeUnixNano":"', b'"endTimeUnixNano":"99999999999999999999999999'),
]


@st.composite
def mutated(draw, line: bytes) -> tuple[bytes, bool]:
    """A line and whether it is still the original."""
    op = draw(st.sampled_from(["keep", "keep", "flip", "cut", "insert", "retype", "splice"]))
    if op == "keep":
        return line, True
    if op == "flip":
        at = draw(st.integers(0, len(line) - 1))
        byte = draw(st.integers(0, 255).filter(lambda b: b != 10))
        return line[:at] + bytes([byte]) + line[at + 1 :], False
    if op == "cut":
        return line[: draw(st.integers(0, len(line) - 1))], False
    if op == "insert":
        at = draw(st.integers(0, len(line)))
        junk = draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
        return line[:at] + junk + line[at:], False
    if op == "retype":
        old, new = draw(st.sampled_from(RETYPES))
        return line.replace(old, new, 1), old not in line
    other = draw(st.sampled_from(BASE_LINES))
    return line[: len(line) // 2] + other[len(other) // 2 :], False


def _span_ids(line: bytes) -> set[tuple[str, str]]:
    request = json.loads(line)
    return {(s["traceId"], s["spanId"]) for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}


def _report(lines: list[bytes]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traces.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
        return build_report(data, PRICES, KillSwitchState(path="k"), NOW)


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_collector_lines_never_crash_or_double_count(data):
    lines = [data.draw(mutated(line)) for line in BASE_LINES]
    mutated_lines = [line for line, _ in lines]
    intact_ids = set().union(*(_span_ids(line) for line, intact in lines if intact)) if any(i for _, i in lines) else set()
    result = _report(mutated_lines)
    inputs = result["inputs"]
    assert inputs["spans"] >= len(intact_ids)
    not_json = 0
    for line in mutated_lines:
        if not line.strip():
            continue  # a blank line is not an error
        try:  # invalid UTF-8 inside a key the reader skips is not an error worth a line: replace it
            json.loads(line.decode("utf-8", "replace"))
        except ValueError:
            not_json += 1
    # four bytes inserted before the first line that happen to give its length (hypothesis found
    # b"\x00\x00\x11x" before a 4,472-byte line) make a valid length-prefixed file, the collector's
    # other format: read as one framed message, rightly, so its "lines" are not lines
    framed = any(details["format"] == "framed" for details in inputs["file_details"])
    assert framed or inputs["bad_lines"] >= not_json
    if inputs["bad_lines"]:
        assert inputs["problems"] and all("line" in problem for problem in inputs["problems"])
    twice = _report(mutated_lines + mutated_lines)
    assert twice["inputs"]["spans"] == inputs["spans"]
    assert twice["agents"] == result["agents"]
    json.dumps(result)  # the report stays serialisable whatever the input held
