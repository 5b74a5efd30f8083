"""Property: shuffling, splitting and duplicating input lines never changes the report.

Runs are generated with everything the report distinguishes (outcomes, several LLM calls, simulated
and unpriced models, signals (scorable ones superseding each other, and unusable ones), invalid
signals, run totals that do and do not add up, LLM spans with more or fewer calls than the root
claims, LLM spans whose root never comes, LLM and tool spans that name no agent and count for their
run's). The same spans are then written as lines in another
order, cut into other lines, with lines and single spans repeated, and across several files; only
the duplicate counter and the file statistics may differ (the alpha-quality section included).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from otel import semconv
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, Tool, request, spans_of

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MARKET = CsvMarketData(Path(__file__).parent / "fixtures" / "alpha" / "prices")  # AAA, BBB in January 2024

# scorable signals: few (symbol, as-of) pairs and two event times, so one signal supersedes another
# in every way (later time; same time, other span; same span, later position)
scorable = st.builds(
    Signal,
    symbol=st.sampled_from(["AAA", "BBB", "ZZZ"]),
    direction=st.sampled_from(["up", "down", "flat"]),
    prob_up=st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5]),
    score=st.sampled_from([-1.0, 0.0, 0.25, 2.0]),
    as_of=st.sampled_from(["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-12", "not a date"]),
    horizon=st.sampled_from([1, 5, 0]),
    tradable=st.sampled_from([None, True, False]),
    time_ns=st.sampled_from([None, 1_767_225_600_000_000_000, 1_767_225_600_000_000_001]),
)

llm_calls = st.builds(
    Llm,
    model=st.sampled_from(["gpt-4o-mini", "gpt-4o", "mystery-model"]),
    tokens_in=st.integers(0, 5000),
    tokens_out=st.integers(0, 500),
    cached=st.one_of(st.none(), st.integers(0, 300)),
    error=st.booleans(),
    agent=st.sampled_from(["-", "-", None]),  # None: no agent name, as other instrumentations write (its run's)
)
tool_calls = st.builds(
    Tool,
    name=st.sampled_from(["quote", "search"]),
    error=st.booleans(),
    duration_ms=st.sampled_from([0, 5, 250]),
    agent=st.sampled_from(["-", None]),
)


@st.composite
def runs(draw) -> list[tuple[Run, bool]]:
    count = draw(st.integers(1, 12))
    out = []
    for trace in range(1, count + 1):
        outcome = draw(st.sampled_from(["ok", "ok", "error", "killed", None]))
        calls = draw(st.lists(llm_calls, max_size=3)) if outcome != "killed" else []
        totals: bool | dict = outcome != "killed"
        twist = draw(st.sampled_from(["none", "none", "claims_more", "claims_fewer", "tokens_off", "no_totals"]))
        if totals and twist == "claims_more":
            totals = {semconv.RUN_LLM_CALLS: len(calls) + 1}
        elif totals and twist == "claims_fewer" and calls:
            totals = {semconv.RUN_LLM_CALLS: len(calls) - 1}
        elif totals and twist == "tokens_off":
            totals = {semconv.RUN_INPUT_TOKENS: 1}
        elif twist == "no_totals":
            totals = False
        run = Run(
            draw(st.sampled_from(["momentum", "meanrev", "<b>x</b>", "\u00e9t\u00e9"])),
            trace,
            start_ms=draw(st.integers(0, 3 * 86_400_000)),
            duration_ms=draw(st.integers(0, 10_000)),
            outcome=outcome,
            llm=calls,
            tools=draw(st.lists(tool_calls, max_size=2)),
            signals=draw(
                st.lists(
                    st.one_of(st.tuples(st.sampled_from(["SPX", "NDX"]), st.sampled_from(["up", "down", "flat", "??"])), scorable),
                    max_size=4,
                )
            ),
            invalid=draw(st.lists(st.sampled_from(["NaN", "prob_up > 1"]), max_size=1)),
            totals=totals,
            kill_reason="paused" if outcome == "killed" else None,
            error_type="E" if outcome == "error" else None,
            losses=draw(st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(0, 9)))),
        )
        out.append((run, draw(st.booleans())))
    return out


def write_lines(path: Path, groups: list[tuple[list[dict], bool]]) -> None:
    # the process (service.instance.id) follows the resource, so it survives any regrouping of spans
    path.write_text(
        "".join(json.dumps(request(spans, simulated, f"process-{simulated}"), separators=(",", ":")) + "\n" for spans, simulated in groups)
    )


def report_for(folder: Path) -> dict:
    data, _ = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, workers=1))
    result = build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)
    inputs = result["inputs"]
    for key in ("duplicate_spans", "files", "file_details"):
        inputs.pop(key)
    return result


@settings(
    max_examples=int(__import__("os").environ.get("PROPERTY_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(generated=runs(), data=st.data())
def test_shuffle_split_duplicate_never_change_the_report(generated, data) -> None:
    # one line per run, as the exporter would write them (LLM spans before their root)
    spans = [(span, simulated) for run, simulated in generated for span in spans_of(run)]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        write_lines(base / "traces.jsonl", [(spans_of(run), simulated) for run, simulated in generated])
        expected = report_for(base)

        # shuffle single spans, cut them into lines of random sizes, repeat some lines and spans
        order = data.draw(st.permutations(range(len(spans))))
        shuffled = [spans[i] for i in order]
        extra = data.draw(st.lists(st.sampled_from(range(len(spans))), max_size=4))
        shuffled += [spans[i] for i in extra]
        groups: list[tuple[list[dict], bool]] = []
        i = 0
        while i < len(shuffled):
            size = data.draw(st.integers(1, 4))
            chunk = shuffled[i : i + size]
            for simulated in (False, True):  # a line has one resource: split by the simulated flag
                part = [span for span, flag in chunk if flag == simulated]
                if part:
                    groups.append((part, simulated))
            i += size
        groups += data.draw(st.lists(st.sampled_from(groups), max_size=3)) if groups else []
        files = data.draw(st.integers(1, 3))
        other = Path(tmp) / "other"
        other.mkdir()
        for k in range(files):
            write_lines(other / f"traces-{k}.jsonl", groups[k::files])
        assert report_for(other) == expected
