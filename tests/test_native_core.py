"""The native core (``alphatrace_native`` via ``meta_supervisor.build.native_reader``) reads a part exactly as
``python_part.read_part_python`` does, or declines.

Every part is read by both readers and compared as a normalised snapshot (``snapshot``): counts,
fingerprints, closed runs, the unpickled tallies and open runs, the kept signals byte for byte. On
canonical input (what alphatrace and the collector write, including its odd but legitimate cases)
the native core must take the part and agree; on hostile input it may decline (None) but must never
give a different result. The native core is required here: these tests fail when it is not
installed (``make native`` builds it).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import pickle
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import generate_workload
from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build import native_reader as native_part
from meta_supervisor.build import parallel as parallel_build
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.build.part_result import PartResult
from meta_supervisor.build.python_part import read_part_python
from meta_supervisor.reading.formats import ENV_MAX_LINE
from meta_supervisor.tally.agent_counts import DEFERRED_LLM
from meta_supervisor.tally.bounds import P_DEFERRED
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS
from otel import semconv as S
from services.config_error import ConfigError
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.conftest import count_merges_of
from tests.fixtures.report.otlp_builder import MS, T0, Llm, Run, Signal, lines_for, request, spans_of
from tests.native_cases import (
    BOM,
    CANONICAL,
    DAY_NS,
    HOSTILE,
    SCANNER_EDGES,
    dump,
    mixed_runs,
    other_span,
    scanner_edge_lines,
    span_lines,
    write,
)

PRICES = PriceTable.load()
OPTIONS = (PRICES, None, None, True, MAX_OPEN_RUNS)
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
MARKET = CsvMarketData(Path(__file__).parent / "fixtures" / "alpha" / "prices")


# --- the harness -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples as lists, NaN as a comparable marker, recursively (JSON-like data only)."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_key(key): _plain(item) for key, item in value.items()}
    return value


def _key(key: Any) -> Any:
    return tuple(_plain(list(key))) if isinstance(key, tuple) else key


def _tally(tally) -> dict:
    state = tally.to_state()
    state["day_runs"] = {row[0]: row[1:] for row in state["day_runs"]}
    state["asof_runs"] = {row[0]: row[1:] for row in state["asof_runs"]}
    state["day_models"] = {(row[0], row[1], row[2]): row[3:] for row in state["day_models"]}
    state["alpha"] = {(row[0], row[1]): row[2] for row in state["alpha"]}
    state["slowest"] = sorted(state["slowest"])
    state["failing"] = sorted(state["failing"])
    state["latencies_ns"] = sorted(tally.latencies_ns)
    if tally.signals is None:
        state["signals"] = None
    else:
        data, rows = tally.signals.to_state()
        state["signals"] = {**data, "rows": bytes(rows)}
    return _plain(state)


def _item_format(values) -> str | None:
    """'Q' for an array('Q') and for a memoryview cast to 'Q' alike (both hold 64-bit fingerprints)."""
    return getattr(values, "typecode", None) or getattr(values, "format", None)


def snapshot(part: PartResult) -> dict:
    """Everything a PartResult means, in a form where equal meaning is equal data."""
    assert isinstance(part, PartResult), f"not a PartResult: {type(part)!r}"
    state = part.aggregator_state
    inputs, agents, agent_order, pending, dead = pickle.loads(state) if isinstance(state, bytes) else state
    keys, states = list(part.closed_keys), list(part.closed_states)
    return {
        "consumed": part.consumed,
        "records": part.records,
        "partial_tail": part.partial_tail,
        "containers": (_item_format(part.span_fps), _item_format(part.closed_keys), type(part.closed_states).__name__),
        "span_fps": sorted(part.span_fps),
        "closed_count": (len(keys), len(states)),
        "closed": dict(zip(keys, states)),
        "inputs": _plain(inputs.to_state()),
        "agent_order": list(agent_order),
        "agents": {name: _tally(tally) for name, tally in agents.items()},
        "pending": {key: _plain(entry) for key, entry in pending.items()},
        "dead": sorted(dead),  # runs closed as unchecked with children since the last sweep (no entry)
    }


def differences(a: Any, b: Any, path: str = "", limit: int = 12) -> list[str]:
    """Where two snapshots differ: ``path: python=... native=...`` (at most ``limit``)."""
    out: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if len(out) >= limit or x == y:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for key in list(x) + [k for k in y if k not in x]:
                if key not in x or key not in y:
                    out.append(f"{where}[{key!r}]: python={_short(x.get(key, '<absent>'))} native={_short(y.get(key, '<absent>'))}")
                else:
                    walk(x[key], y[key], f"{where}[{key!r}]")
            return
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
            return
        out.append(f"{where}: python={_short(x)} native={_short(y)}")

    walk(a, b, path)
    return out


def _short(value: Any, size: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= size else text[:size] + f"... ({len(text)} chars)"


def native_read(path: Path, start: int = 0, stop: int | None = None, options=OPTIONS, first_number: int = 0) -> PartResult | None:
    return native_part.read_part(path, start, stop, options, first_number)


def both(path: Path, start: int = 0, stop: int | None = None, options=OPTIONS, first_number: int = 0) -> tuple[dict, dict | None]:
    """(snapshot of the Python reader's part, snapshot of the native core's part or None if it declined)."""
    python = snapshot(read_part_python(path, start, stop, options, first_number))
    part = native_read(path, start, stop, options, first_number)
    return python, None if part is None else snapshot(part)


def assert_taken_and_equal(path: Path, start: int = 0, stop: int | None = None, options=OPTIONS, first_number: int = 0) -> dict:
    python, native = both(path, start, stop, options, first_number)
    assert native is not None, f"the native core declined canonical input {path.name} [{start}:{stop}]"
    diff = differences(python, native)
    assert not diff, f"native differs from python on {path.name} [{start}:{stop}]:\n" + "\n".join(diff)
    return python


def assert_none_or_equal(path: Path, start: int = 0, stop: int | None = None, options=OPTIONS, first_number: int = 0) -> bool:
    """True if the native core took the part (and then it must agree)."""
    python, native = both(path, start, stop, options, first_number)
    if native is None:
        return False
    diff = differences(python, native)
    assert not diff, f"native took {path.name} [{start}:{stop}] and differs from python:\n" + "\n".join(diff)
    return True


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    if not native_core.available():
        pytest.fail("the native core is not installed: run make native")


@pytest.mark.parametrize("case", sorted(CANONICAL))
def test_canonical_input_is_taken_and_equal(native, tmp_path: Path, case: str) -> None:
    path = write(tmp_path, CANONICAL[case]())
    python = assert_taken_and_equal(path)
    assert python["inputs"]["spans"] > 0 and python["inputs"]["bad_lines"] == 0 and python["inputs"]["bad_spans"] == 0


def test_canonical_cases_cover_what_they_claim(tmp_path: Path) -> None:
    """The canonical inputs really contain the cases (checked on the Python reader alone)."""
    seen: dict[str, dict] = {}
    for case, make in CANONICAL.items():
        seen[case] = snapshot(read_part_python(write(tmp_path, make(), f"{case}.jsonl"), 0, None, OPTIONS))
    assert seen["killed_runs"]["agents"]["a"]["last_kill"] == [T0 + 5 * MS, "retired"]
    assert seen["missing_outcome"]["agents"]["a"]["outcomes"] == {"error": 1, "ok": 1}
    assert seen["mismatched_totals"]["agents"]["a"]["consistency"][1] == 3
    assert seen["mismatched_totals"]["pending"]
    assert len(seen["extra_llm_after_close"]["pending"]) == 1
    assert seen["duplicate_lines"]["inputs"]["duplicate_spans"] > 0
    assert seen["span_id_before_trace_id"]["inputs"]["duplicate_spans"] == 1 and seen["span_id_before_trace_id"]["inputs"]["spans"] == 6
    assert seen["duplicate_roots"]["inputs"]["duplicate_run_roots"] == 2
    assert any(key[2] for key in seen["simulated_resource"]["agents"]["a"]["day_models"])
    assert seen["supervisor_spans"]["inputs"]["supervisor_spans"] == 3
    assert seen["other_spans_with_alpha_events"]["inputs"]["other_spans"] == 4  # its embeddings span is an LLM call
    # its embeddings span names no agent and its trace has no agent span: deferred until one comes
    (entry,) = seen["other_spans_with_alpha_events"]["pending"].values()
    assert [(record[0], record[4]) for record in entry[P_DEFERRED]] == [(DEFERRED_LLM, "embeddings")]
    assert seen["other_spans_with_alpha_events"]["agents"]["b"]["kill_switch_errors"] == 1
    assert seen["invalid_signals_and_kill_switch_errors"]["agents"]["a"]["kill_switch_errors"] == 2
    assert len(seen["telemetry_losses"]["inputs"]["telemetry_losses"]) == 3
    signals = seen["signals_all_fields"]["agents"]["a"]["signals"]
    assert signals["count"] == 3 and signals["total"] == 10
    assert seen["signals_missing_fields"]["agents"]["b"]["signals"]["unusable"] == 8
    assert any(len(name) == 200 for name in seen["long_names"]["agent_order"])
    assert seen["bad_durations_and_days"]["agents"]["b"]["bad_durations"] == 2
    without_bom = [line.replace(BOM, b"") for line in CANONICAL["byte_order_marks"]()]
    plain = snapshot(read_part_python(write(tmp_path, without_bom, "plain.jsonl"), 0, None, OPTIONS))
    assert seen["byte_order_marks"]["inputs"] == plain["inputs"] and seen["byte_order_marks"]["agents"] == plain["agents"]
    assert seen["byte_order_marks"]["consumed"] == plain["consumed"] + 5 * len(BOM) and seen["byte_order_marks"]["partial_tail"] == 0
    orders = seen["key_orders"]
    assert orders["inputs"]["tail_sampled_spans"] == 5 and orders["inputs"]["spans"] == 8
    assert any(key[2] for key in orders["agents"]["a"]["day_models"]) and any(key[2] for key in orders["agents"]["b"]["day_models"])
    assert not any(key[2] for key in orders["agents"]["c"]["day_models"])
    shared = seen["many_agents_sharing_signal_names"]["agents"]
    assert len(shared) == 62 and ("S1009", "(other)") in shared["wide"]["alpha"] and len(shared["wide"]["signals"]["symbols"]) == 1001
    assert ("AAA", "(other)") in shared["filled"]["alpha"] and ("(other)", "(other)") in shared["filled"]["alpha"]
    counts = {key: seen["content_check_inputs"]["inputs"][key] for key in ("spans", "duplicate_spans", "conflicting_spans")}
    assert counts == {"spans": 9, "duplicate_spans": 9, "conflicting_spans": 0}


@pytest.mark.parametrize("profile", ["issue", "contract"])
def test_bench_workload(native, tmp_path: Path, profile: str) -> None:
    path = tmp_path / f"{profile}.jsonl"
    generate_workload.generate(path, 2000, seed=7, profile=profile)
    python = assert_taken_and_equal(path)
    assert python["inputs"]["spans"] == 4000 and python["closed_count"][0] == 2000
    # as the parallel build cuts it: line-boundary parts, the last one to the end of the file
    points = parallel_build.split_points(path, 0, path.stat().st_size, 3)
    assert len(points) == 4
    for k in range(3):
        assert_taken_and_equal(path, points[k], points[k + 1] if k < 2 else None, first_number=k)
    # without signals, without prices
    assert_taken_and_equal(path, options=(None, None, None, False, MAX_OPEN_RUNS))


OPTION_CASES = {
    "no_prices": (None, None, None, True, MAX_OPEN_RUNS),
    "no_signals": (PRICES, None, None, False, MAX_OPEN_RUNS),
    "no_prices_no_signals": (None, None, None, False, MAX_OPEN_RUNS),
    "since": (PRICES, T0 + 20 * 3_600_000 * MS, None, True, MAX_OPEN_RUNS),
    "until": (PRICES, None, T0 + 33 * 3_600_000 * MS + 1, True, MAX_OPEN_RUNS),
    "window": (PRICES, T0 + 10 * 3_600_000 * MS, T0 + 30 * 3_600_000 * MS, True, MAX_OPEN_RUNS),
    "empty_window": (PRICES, T0 + 10 * DAY_NS, T0 + 11 * DAY_NS, True, MAX_OPEN_RUNS),
}


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
def test_options(native, tmp_path: Path, name: str) -> None:
    # LLM spans start 1 ms after their root: a window edge at a root's start cuts runs in two
    # without run 6: the other case has a run 6 of its own (its root again with other content would be
    # a conflicting duplicate, which the core declines)
    runs = [run for run in mixed_runs(50) if run.trace != 6]
    path = write(tmp_path, lines_for(runs, per_line=3) + CANONICAL["other_spans_with_alpha_events"]())
    python = assert_taken_and_equal(path, options=OPTION_CASES[name])
    if name in ("since", "until", "window", "empty_window"):
        assert python["inputs"]["outside_window"] > 0


@pytest.mark.parametrize("per_line", [1, 5, 64, 1000])
def test_open_run_bound_at_the_end_of_each_batch(native, tmp_path: Path, per_line: int) -> None:
    """Roots before their LLM spans, 30 runs at a time, and a bound of 16 open runs: runs are evicted.
    The bound is applied after each batch (a ``scopeSpans`` entry), also when the core adds a line's
    spans as it parses them (``native/src/stream.rs``), so lines of any length give the same report."""
    runs = mixed_runs(240)
    spans: list[dict] = []
    for group in range(0, len(runs), 30):
        parts = [spans_of(run) for run in runs[group : group + 30]]
        spans += [part[-1] for part in parts] + [span for part in parts for span in part[:-1]]
    path = write(tmp_path, span_lines(spans, per_line=per_line))
    python = assert_taken_and_equal(path, options=(PRICES, None, None, True, 16))
    # a batch of all the spans closes every run before the bound is looked at: nothing evicted
    assert (python["inputs"]["evicted_roots"] > 0) == (per_line < len(spans))


def test_range_in_the_middle_of_a_file(native, tmp_path: Path) -> None:
    lines = lines_for(mixed_runs(30), per_line=1)
    path = write(tmp_path, lines)
    starts = [0]
    for text in lines:
        starts.append(starts[-1] + len(text.encode()))
    for first, last in [(3, 17), (1, 2), (17, 40), (40, len(lines))]:
        python = assert_taken_and_equal(path, starts[first], starts[last] if last < len(lines) else None, first_number=first)
        assert python["records"] == last - first and python["consumed"] == starts[last] - starts[first]
    python = assert_taken_and_equal(path, starts[5], starts[5])  # an empty range
    assert python["records"] == 0


def test_final_line_without_newline_is_taken(native, tmp_path: Path) -> None:
    lines = lines_for(mixed_runs(6), per_line=2)
    path = write(tmp_path, [*lines[:-1], lines[-1].rstrip("\n")])
    python = assert_taken_and_equal(path)
    assert python["partial_tail"] == 0 and python["records"] == len(lines)


def test_incomplete_final_line(native, tmp_path: Path) -> None:
    lines = lines_for(mixed_runs(6), per_line=2)
    for cut in (1, 17, len(lines[-1]) // 2, len(lines[-1]) - 3):
        path = write(tmp_path, [*lines[:-1], lines[-1][:cut]], f"cut-{cut}.jsonl")
        assert_none_or_equal(path)
        assert snapshot(read_part_python(path, 0, None, OPTIONS))["partial_tail"] == len(lines[-1][:cut].encode())


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_declined_or_equal(native, tmp_path: Path, case: str) -> None:
    path = write(tmp_path, HOSTILE[case])
    assert_none_or_equal(path)
    assert_none_or_equal(path, options=(None, None, None, False, MAX_OPEN_RUNS))


@pytest.mark.parametrize("case", sorted(SCANNER_EDGES))
def test_the_scanner_takes_what_serde_takes_and_refuses_what_it_refuses(native, tmp_path: Path, case: str) -> None:
    """The core reads a line's bytes with its own scanner (native/src/scan.rs) and falls back on
    serde_json's strict types for a line it refuses before any of its spans was added. Each case is
    a pair, read the same by the two readers / refused by serde_json: in the line's first span (the
    fallback decides) and in its second, after a span was added (the scanner alone decides)."""
    where, accepted, refused = SCANNER_EDGES[case]
    for after_good in (False, True):
        taken = write(tmp_path, scanner_edge_lines(where, accepted, after_good), f"taken-{after_good}.jsonl")
        assert assert_taken_and_equal(taken)["inputs"]["spans"] == 2
        declined = write(tmp_path, scanner_edge_lines(where, refused, after_good), f"declined-{after_good}.jsonl")
        assert native_read(declined) is None, f"{case}: the core read a line serde_json refuses ({after_good=})"


def test_hostile_ranges(native, tmp_path: Path) -> None:
    lines = lines_for(mixed_runs(8), per_line=2)
    path = write(tmp_path, lines)
    size = path.stat().st_size
    for start, stop in [(0, size // 2), (0, len(lines[0]) - 1), (len(lines[0]), size - 5), (3, None)]:
        assert_none_or_equal(path, start, stop, first_number=1)
    assert snapshot(read_part_python(path, 3, None, OPTIONS))["inputs"]["bad_lines"] == 1  # mid-line start: a bad line


def test_lines_over_the_line_cap_are_declined(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than the cap is a bad line for the Python reader even when it is valid JSON: the
    core, given the same cap, declines the part as soon as it sees one (it never holds more of it)."""
    cap = 16384
    monkeypatch.setenv(ENV_MAX_LINE, str(cap))
    lines = lines_for(mixed_runs(6), per_line=2)
    padded = '{"pad":"' + "x" * cap + '",' + lines[1][1:]  # valid, with spans, too long
    exact = '{"pad":"' + "x" * (cap - len(lines[2]) - 8) + '",' + lines[2][1:]  # exactly the cap, newline apart
    assert len(exact.encode()) == cap + 1
    cases = {
        "valid_but_too_long": [lines[0], padded, *lines[2:]],
        "junk_too_long": [lines[0], "y" * (cap + 1) + "\n", *lines[1:]],
        "unterminated_too_long": [*lines, "z" * (3 << 20)],
        "too_long_first": [padded, *lines],
    }
    for name, content in cases.items():
        path = write(tmp_path, content, f"{name}.jsonl")
        python = snapshot(read_part_python(path, 0, None, OPTIONS))
        assert python["inputs"]["bad_lines"] == 1 and python["partial_tail"] == 0, name
        assert native_read(path) is None, name
        starts = [0, len(lines[0].encode())]
        for start in starts:
            assert_none_or_equal(path, start, first_number=1)
    path = write(tmp_path, [lines[0], exact, *lines[3:]], "exact.jsonl")
    assert snapshot(read_part_python(path, 0, None, OPTIONS))["inputs"]["bad_lines"] == 0
    assert_taken_and_equal(path)


def test_hostile_cases_are_hostile(tmp_path: Path) -> None:
    """A sample of the hostile inputs really reaches the paths it is meant to (checked on the Python reader)."""

    def read(case: str) -> dict:
        return snapshot(read_part_python(write(tmp_path, HOSTILE[case], f"{case}.jsonl"), 0, None, OPTIONS))

    assert read("corrupt_line")["inputs"]["bad_lines"] == 1
    assert read("attributes_not_a_list")["inputs"]["bad_spans"] == 1
    assert read("missing_ids")["inputs"]["spans_without_id"] == 1
    assert read("missing_ids_repeated")["inputs"]["duplicate_spans"] == 1
    assert read("huge_tokens")["agents"]["a"]["bad_token_values"] == 1
    assert read("blank_lines")["inputs"]["bad_lines"] == 0
    assert read("many_models_and_symbols")["agents"]["m"]["signals"]["count"] == 60
    assert read("megabyte_values")["consumed"] > 2 << 20
    assert read("nul_run_then_lines")["inputs"]["bad_lines"] == 1 and read("nul_run_then_lines")["inputs"]["spans"] > 0
    assert read("zero_length_frames")["inputs"]["bad_lines"] == 1
    nul_prefixed = read("nul_prefixed_line")["inputs"]  # the NUL run is a bad line, the line after it is read
    assert nul_prefixed["bad_lines"] == 1 and nul_prefixed["spans"] == read("nul_run_then_lines")["inputs"]["spans"]
    inputs = read("conflicting_duplicates")["inputs"]
    assert (inputs["spans"], inputs["duplicate_spans"], inputs["conflicting_spans"]) == (5, 4, 18)
    assert len(inputs["conflicting_examples"]) == 3  # three spans have conflicting copies
    inputs = read("content_check_inputs_changed")["inputs"]
    # start times beyond 64 bits both read as 0: that span's later copy is exact
    assert (inputs["spans"], inputs["duplicate_spans"], inputs["conflicting_spans"]) == (9, 10, 8)


# --- property: mutated canonical lines are declined or read alike ----------------------------------------

signals_strategy = st.builds(
    Signal,
    symbol=st.sampled_from(["AAA", "BBB", "\u00e9<b>"]),
    direction=st.sampled_from(["up", "down", "flat", "??"]),
    prob_up=st.sampled_from([0.0, 0.3, 1.0, 1.5]),
    score=st.sampled_from([-1.0, 0.25, 2.0]),
    as_of=st.sampled_from(["2024-01-02", "2024-01-05", "not a date"]),
    horizon=st.sampled_from([1, 5, 0]),
    tradable=st.sampled_from([None, True, False]),
    time_ns=st.sampled_from([None, T0, T0 + 1]),
)


@st.composite
def canonical_lines(draw) -> list[dict]:
    runs = []
    for trace in range(1, draw(st.integers(1, 6)) + 1):
        outcome = draw(st.sampled_from(["ok", "ok", "error", "killed", None]))
        calls = [] if outcome == "killed" else draw(st.lists(st.builds(Llm, model=st.sampled_from(["gpt-4o-mini", "mystery"])), max_size=3))
        twist = draw(st.sampled_from([True, True, False, {S.RUN_LLM_CALLS: 1}, {S.RUN_INPUT_TOKENS: 1}]))
        runs.append(
            Run(
                draw(st.sampled_from(["a", "b", "\u00e9t\u00e9"])),
                trace,
                start_ms=draw(st.integers(0, 3 * 86_400_000)),
                outcome=outcome,
                llm=calls,
                signals=draw(st.lists(st.one_of(signals_strategy, st.tuples(st.just("SPX"), st.just("up"))), max_size=3)),
                invalid=draw(st.lists(st.just("NaN"), max_size=1)),
                totals=twist if outcome != "killed" else False,
                kill_reason="paused" if outcome == "killed" else None,
                losses=draw(st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(0, 9)))),
            )
        )
    spans = [span for run in runs for span in spans_of(run)]
    per_line = draw(st.integers(1, 4))
    simulated = draw(st.booleans())
    return [request(spans[i : i + per_line], simulated, "p") for i in range(0, len(spans), per_line)]


REPLACEMENTS = [None, 0, -1, 1.5, True, False, "", "x", "NaN", "123", [], {}, [1], {"a": 1}, 10**20]
MUTATIONS = ["drop_key", "retype", "shuffle_attrs", "duplicate_attr", "shuffle_lines", "duplicate_line", "unicode", "rename_key"]


def _slots(document: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a JSON document, in a fixed order."""
    out = []
    stack = [document]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            out.append((node, key))
            stack.append(value)
    return out


def mutate(lines: list[dict], data: st.DataObject) -> list[dict]:
    lines = copy.deepcopy(lines)
    for kind in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3), label="mutations"):
        document = {"lines": lines}
        slots = _slots(document)[1:]
        if kind == "shuffle_lines":
            lines[:] = data.draw(st.permutations(lines))
        elif kind == "duplicate_line":
            i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines)))
            lines.insert(j, copy.deepcopy(lines[i]))
        elif kind in ("drop_key", "rename_key"):
            keyed = [(node, key) for node, key in slots if isinstance(node, dict)]
            if not keyed:
                continue
            node, key = keyed[data.draw(st.integers(0, len(keyed) - 1))]
            if kind == "drop_key":
                del node[key]
                continue
            node[data.draw(st.sampled_from(["", "traceid", key + "x", "key", "value", "intValue", "stringValue"]))] = node.pop(key)
        elif kind == "retype":
            node, key = slots[data.draw(st.integers(0, len(slots) - 1))]
            node[key] = data.draw(st.sampled_from([r for r in REPLACEMENTS if type(r) is not type(node[key]) or r != node[key]]))
        elif kind == "unicode":
            texts = [(node, key) for node, key in slots if isinstance(node[key], str)]
            if texts:
                node, key = texts[data.draw(st.integers(0, len(texts) - 1))]
                node[key] = data.draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=8))
        else:
            lists = [node[key] for node, key in slots if key == "attributes" and isinstance(node[key], list) and node[key]]
            if lists:
                target = lists[data.draw(st.integers(0, len(lists) - 1))]
                if kind == "shuffle_attrs":
                    target[:] = data.draw(st.permutations(target))
                else:
                    i, j = data.draw(st.integers(0, len(target) - 1)), data.draw(st.integers(0, len(target)))
                    twin = copy.deepcopy(target[i])
                    if isinstance(twin, dict) and data.draw(st.booleans()):
                        twin["value"] = data.draw(st.sampled_from([{"stringValue": "other"}, {"intValue": "3"}, {"doubleValue": 0.5}]))
                    target.insert(j, twin)
    return lines


def test_mutated_lines_are_declined_or_equal(native, tmp_path: Path) -> None:
    counts = {"plain": 0, "plain_taken": 0, "mutated": 0, "mutated_taken": 0}
    folder = tmp_path / "examples"
    folder.mkdir()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(documents=canonical_lines(), data=st.data())
    def check(documents: list[dict], data: st.DataObject) -> None:
        ascii_only = data.draw(st.booleans(), label="ascii")
        plain = write(folder, [dump(document, ascii_only) for document in documents], "plain.jsonl")
        counts["plain"] += 1
        counts["plain_taken"] += assert_none_or_equal(plain)
        mutated = write(folder, [dump(document, ascii_only) for document in mutate(documents, data)], "mutated.jsonl")
        counts["mutated"] += 1
        counts["mutated_taken"] += assert_none_or_equal(mutated)
        collect = data.draw(st.booleans(), label="collect_signals")
        bound = data.draw(st.sampled_from((2, 3, 8, MAX_OPEN_RUNS)), label="max_open_runs")  # small: runs evicted
        assert_none_or_equal(mutated, options=(PRICES if collect else None, None, None, collect, bound))

    check()
    print(f"native took {counts['plain_taken']}/{counts['plain']} plain and {counts['mutated_taken']}/{counts['mutated']} mutated inputs")
    assert counts["plain"] >= 20
    assert counts["plain_taken"] >= 0.9 * counts["plain"], counts
    assert counts["mutated_taken"] > 0, counts


# --- end to end: the report with the native core equals the report without ---------------------------------


@pytest.fixture
def count_merges(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    return count_merges_of(monkeypatch)


def test_report_with_native_core_equals_report_without(
    native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_merges: list[bool]
) -> None:
    path = write(tmp_path, lines_for(mixed_runs(120, agents=("momentum", "meanrev", "<b>x</b>", "\u00e9t\u00e9")), per_line=1))
    taken = tmp_path / "native-taken.txt"
    original = native_part.read_part

    def recording(*args, **kwargs):  # runs in the forked child: it leaves a note in a file
        part = original(*args, **kwargs)
        with open(taken, "a") as note:
            note.write("taken\n" if part is not None else "declined\n")
        return part

    monkeypatch.setattr(native_part, "read_part", recording)

    def report() -> dict:
        data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=2))
        return build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)

    monkeypatch.setenv(native_core.ENV, "on")
    with_native = report()
    notes = taken.read_text().split() if taken.exists() else ["(no note: the native read raised)"]
    assert notes and set(notes) == {"taken"}, notes  # every part offered to the native core was read by it
    monkeypatch.setenv(native_core.ENV, "off")
    without = report()
    assert len(count_merges) >= 2 and all(count_merges)  # parts were read apart and merged
    assert with_native == without
    assert len(with_native["agents"]) == 4 and with_native["inputs"]["spans"] > 200


def _inputs_both_ways(monkeypatch: pytest.MonkeyPatch, paths: list[Path], **options) -> tuple:
    """``build_inputs`` of ``paths`` with the native core on, then off: (on, off)."""
    results = []
    for mode in ("on", "off"):
        monkeypatch.setenv(native_core.ENV, mode)
        data, _ = build_inputs(BuildOptions(inputs=[str(p) for p in paths], prices=PRICES, **options))
        results.append(data)
    return tuple(results)


def _root(trace: int, agent: str, outcome: str = "ok") -> dict:
    values = {S.GEN_AI_OPERATION_NAME: "invoke_agent", S.GEN_AI_AGENT_NAME: agent, S.AGENT_RUN_OUTCOME: outcome}
    return other_span(trace, 1, f"invoke_agent {agent}", values)


def test_a_span_repeated_in_a_later_file_is_counted_once(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The merge of the later file is refused (it repeats a span) and that file is read again in
    Python; the refused merge leaves nothing behind (it used to leave deleted slots that filled the
    table until the next probe never ended)."""
    first = write(tmp_path, span_lines([_root(1 + i, "a") for i in range(10)]), "a.jsonl")
    batches = [[_root(10_000 + i, "a") for i in range(j, j + 50)] for j in range(0, 700, 50)]
    lines = [line for batch in batches for line in span_lines(batch, per_line=50)]
    second = write(tmp_path, [*lines, *span_lines([_root(6, "a")])], "b.jsonl")
    on, off = _inputs_both_ways(monkeypatch, [first, second])
    assert (on.inputs.spans, on.inputs.duplicate_spans) == (off.inputs.spans, off.inputs.duplicate_spans) == (710, 1)
    assert on.agents["a"].outcomes == off.agents["a"].outcomes == {"ok": 710}


def test_table_limits_hold_across_files(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """15 outcomes in one file and 10 more in the next: read in order, the 21st and later fold into
    "(other)"; a merge that would go past a table's limit is refused so that the same happens."""
    first = write(tmp_path, span_lines([_root(1 + i, "a", f"o{i}") for i in range(15)]), "a.jsonl")
    second = write(tmp_path, span_lines([_root(100 + i, "a", f"p{i}") for i in range(10)]), "b.jsonl")
    seen: list[tuple[int, int]] = []
    on, off = _inputs_both_ways(monkeypatch, [first, second], progress=lambda done, total: seen.append((done, total)))
    assert on.agents["a"].outcomes == off.agents["a"].outcomes
    assert len(off.agents["a"].outcomes) == 21 and off.agents["a"].outcomes["(other)"] == 5
    total = first.stat().st_size + second.stat().st_size
    assert max(done for done, _ in seen) == total and seen[-1] == (total, total)  # the refused merge's bytes counted once


def test_open_runs_of_an_agent_beyond_the_agent_limit(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 agents, then an LLM span of a new one: read in order it is "(other)"'s open run."""
    from meta_supervisor.tally.bounds import MAX_AGENTS

    first = write(tmp_path, span_lines([_root(1 + i, f"agent{i}") for i in range(MAX_AGENTS)], per_line=500), "a.jsonl")
    llm = other_span(50_000, 2, "chat m", {S.GEN_AI_OPERATION_NAME: "chat", S.GEN_AI_AGENT_NAME: "newcomer", S.AGENT_RUN_ID: "r1"})
    second = write(tmp_path, span_lines([llm]), "b.jsonl")
    on, off = _inputs_both_ways(monkeypatch, [first, second])
    assert list(on.agents) == list(off.agents) and "newcomer" not in on.agents
    assert on.pending == off.pending and on.pending["r1"][0] == "(other)"


def test_a_declined_part_reports_its_bytes_once(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, [*lines_for(mixed_runs(50), per_line=1), "corrupt\n"])
    size = path.stat().st_size
    for mode in ("on", "off"):
        monkeypatch.setenv(native_core.ENV, mode)
        seen: list[tuple[int, int]] = []
        build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, progress=lambda done, total, seen=seen: seen.append((done, total))))
        assert seen[-1] == (size, size), mode


# --- configuration ---------------------------------------------------------------------------------------------


def test_bogus_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(native_core.ENV, "bogus")
    with pytest.raises(ConfigError, match="ALPHATRACE_NATIVE"):
        native_core.mode()
    from meta_supervisor.cli import report as report_cli

    code = report_cli.main(["--input", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out"), "--no-state", "--quiet"])
    assert code == 2 and "ALPHATRACE_NATIVE='bogus'" in capsys.readouterr().err  # at start-up, before any reading
    assert not (tmp_path / "out").exists()


def test_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("", "auto"), ("auto", "auto"), (" ON ", "on"), ("Off", "off")]:
        monkeypatch.setenv(native_core.ENV, value)
        assert native_core.mode() == expected
    monkeypatch.setenv(native_core.ENV, "off")
    assert native_part.read_part(Path("/nonexistent"), 0, None, OPTIONS) is None  # off: never used


# --- the harness itself ------------------------------------------------------------------------------------


def test_harness_tells_parts_apart(tmp_path: Path) -> None:
    """``snapshot`` and ``differences`` see every kind of difference and no difference where there is none."""
    path = write(tmp_path, lines_for(mixed_runs(40), per_line=3))
    a = snapshot(read_part_python(path, 0, None, OPTIONS))
    assert differences(a, snapshot(read_part_python(path, 0, None, OPTIONS))) == []
    other = write(tmp_path, lines_for(mixed_runs(39), per_line=3), "other.jsonl")
    assert differences(a, snapshot(read_part_python(other, 0, None, OPTIONS)))
    assert differences(a, snapshot(read_part_python(path, 0, None, (None, None, None, True, MAX_OPEN_RUNS))))  # pending costs differ
    assert differences(a, snapshot(read_part_python(path, 0, None, (PRICES, None, None, False, MAX_OPEN_RUNS))))  # no signal store
    part = read_part_python(path, 0, None, OPTIONS)
    inputs, agents, order, pending, dead = pickle.loads(part.aggregator_state)
    agents["a"].latencies_ns.append(1)
    changed = PartResult(
        part.consumed,
        part.records,
        part.partial_tail,
        pickle.dumps((inputs, agents, order, pending, dead)),
        part.span_fps,
        part.closed_keys,
        part.closed_states,
    )
    assert any("latencies_ns" in line for line in differences(a, snapshot(changed)))
    reordered = PartResult(
        part.consumed,
        part.records,
        part.partial_tail,
        part.aggregator_state,
        array("Q", reversed(part.span_fps)),
        part.closed_keys,
        part.closed_states,
    )
    assert differences(a, snapshot(reordered)) == []  # the order of fingerprints means nothing
    as_list = PartResult(
        part.consumed, part.records, part.partial_tail, part.aggregator_state, list(part.span_fps), part.closed_keys, part.closed_states
    )
    assert any("containers" in line for line in differences(a, snapshot(as_list)))
    assert a["agents"]["a"]["signals"]["rows"] and a["closed"] and a["span_fps"]


def test_vectors_kept_from_line_to_line_carry_nothing_over(native, tmp_path: Path) -> None:
    """The scanner keeps its emptied attribute and event vectors from one line to the next
    (``scan_spans.rs``, ``Spare``): lines of many signals and attributes (past what it keeps),
    then small ones, resources of other sizes, a resource after its spans, give the Python
    reader's tallies, line by line."""
    big = Run("a", 1, signals=[(f"S{k}", "up") for k in range(80)], llm=[Llm()] * 3)
    small = [Run("b", 2 + i, start_ms=i * 1000, signals=[("SPX", "down")]) for i in range(4)]
    again = [
        Run("a", 9, start_ms=9000, signals=[(f"T{k}", "down") for k in range(70)]),
        *[Run("b", 10 + i, start_ms=i * 900) for i in range(4)],
    ]
    spans = [span for run in [big, *small, *again] for span in spans_of(run)]
    for span in spans[:3]:
        span["attributes"] += [{"key": f"extra.{k}", "value": {"stringValue": str(k)}} for k in range(70)]
    lines = span_lines(spans, per_line=1)
    other = [span for run in [Run("c", 20 + i, signals=[("NDX", "up")]) for i in range(2)] for span in spans_of(run)]
    lines[2:2] = span_lines(other, per_line=2, instance="host-1")  # a resource of four attributes
    later = json.loads(lines[-1])  # the scope before its resource: read whole, then the resource
    entry = later["resourceSpans"][0]
    later["resourceSpans"][0] = {"scopeSpans": entry["scopeSpans"], "resource": entry["resource"]}
    lines.append(json.dumps(later, separators=(",", ":")) + "\n")
    python = assert_taken_and_equal(write(tmp_path, lines))
    assert python["inputs"]["spans"] > 0 and python["inputs"]["bad_lines"] == 0
