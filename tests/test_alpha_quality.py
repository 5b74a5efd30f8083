"""Alpha quality on cases with known answers: Spearman and IC (cross-sectional and per-symbol time
series), hit rate with flat and zero returns, Brier, calibration, long/short means, pending, duplicates,
cost efficiency, and the Markdown/HTML snippets."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from alpha.quality import dedupe, ic_summary, newey_west_t_stat, primary_ic, render_html, render_markdown, score_signals, spearman
from alpha.records import SignalRecord
from meta_supervisor.build.run_records import read_records
from services.market_data import CsvMarketData
from tests.fleet_fixtures import business_days

DAY0 = date(2024, 1, 1)  # a Monday


def weekdays(count: int) -> list[date]:
    return business_days(DAY0, count)


def market_from_returns(folder: Path, returns: dict[str, list[float]]) -> CsvMarketData:
    """Each symbol's close starts at 100 and moves by the given one-day returns, on weekdays."""
    folder.mkdir(parents=True, exist_ok=True)
    for symbol, moves in returns.items():
        closes = [100.0]
        for r in moves:
            closes.append(closes[-1] * (1 + r))
        rows = ["date,open,high,low,close,volume"] + [f"{day},,,,{close!r}," for day, close in zip(weekdays(len(closes)), closes)]
        (folder / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    return CsvMarketData(folder)


def sig(agent: str, symbol: str, day: date, score: float, direction: str = "up", prob_up: float = 0.5, t: int = 0) -> SignalRecord:
    return SignalRecord(agent, symbol, day, direction, prob_up, score, 1, True, "t", "s", t)


# --- statistics ------------------------------------------------------------------------------


def test_spearman_known_answers():
    assert spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swap among five: 1 - 6 * 2 / (5 * 24) = 0.9
    assert spearman([1, 2, 3, 4, 5], [0.1, 0.2, 0.3, 0.5, 0.4]) == pytest.approx(0.9)
    # ties take the average rank: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4) give 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([7, 7, 8, 9], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side has no rank correlation
    assert spearman([1], [2]) is None


def test_ic_summary_mean_sample_std_and_t_stat():
    summary = ic_summary([1.0, 0.9, 0.5])
    assert summary["mean"] == pytest.approx(0.8)
    assert summary["std"] == pytest.approx(math.sqrt(0.07))  # (0.04 + 0.01 + 0.09) / 2
    assert summary["t_stat"] == pytest.approx(0.8 / math.sqrt(0.07) * math.sqrt(3))
    assert summary["t_stat_hac"] == pytest.approx(summary["t_stat"])  # 0 lags: the plain t-stat
    empty = {"std": None, "t_stat": None, "t_stat_hac": None, "hac_lags": 0}
    assert ic_summary([0.3]) == {"mean": 0.3, **empty, "n": 1}
    assert ic_summary([]) == {"mean": None, **empty, "n": 0}


# Issue 15: a t-stat valid for overlapping horizons (tests/test_statsmodels_crosscheck.py checks it against statsmodels).
def test_newey_west_t_stat_known_answers():
    # [1, 2, 3, 4], 1 lag: e = (-1.5, -0.5, 0.5, 1.5), sum e^2 = 5, sum e_t e_(t-1) = 1.25, weight 1/2:
    # S = 5 + 2 * 0.5 * 1.25 = 6.25; t = 2.5 * sqrt(4 * 3 / 6.25) = sqrt(12)
    assert newey_west_t_stat([1.0, 2.0, 3.0, 4.0], 1) == pytest.approx(math.sqrt(12))
    values = [0.3, -0.1, 0.2, 0.25, 0.05, 0.4, -0.2, 0.1]
    assert newey_west_t_stat(values, 0) == pytest.approx(ic_summary(values)["t_stat"])
    # positively autocorrelated values: the HAC t is smaller than the plain one, which takes them as independent
    trending = [0.1, 0.12, 0.15, 0.11, -0.02, -0.05, -0.01, 0.03, 0.2, 0.22, 0.18, 0.05]
    assert 0 < newey_west_t_stat(trending, 4) < ic_summary(trending)["t_stat"]
    summary = ic_summary(trending, hac_lags=4)
    assert (summary["hac_lags"], summary["t_stat_hac"]) == (4, newey_west_t_stat(trending, 4))


@pytest.mark.parametrize(
    ("values", "lags"),
    [
        ([0.1] * 8 + [0.2], 4),  # 9 < 2 * (4 + 1)
        ([0.1, 0.2, 0.3], 1),  # 3 < 2 * (1 + 1)
        ([], 0),
        ([0.1] * 20, 4),  # no variation (the mean differs from 0.1 in the last bit)
        ([0.1, float("nan")] * 10, 4),
        ([0.1, float("inf")] * 10, 1),
    ],
)
def test_hac_t_stat_is_none_with_too_few_constant_or_non_finite_values(values, lags):
    assert newey_west_t_stat(values, lags) is None
    assert ic_summary(values, lags)["t_stat_hac"] is None


def test_hac_t_stat_needs_twice_its_lag_window_and_no_negative_lags():
    assert newey_west_t_stat([0.1] * 9 + [0.2], 4) is not None  # 10 = 2 * (4 + 1)
    assert newey_west_t_stat([0.1] * 8 + [0.2], 4) is None
    with pytest.raises(ValueError, match="lags must be >= 0"):
        newey_west_t_stat([0.1, 0.2], -1)


@pytest.mark.parametrize("values", [[0.1] * 20, [0.1, float("nan")] * 10, [0.1, float("inf")] * 10])
def test_plain_t_stat_of_constant_or_non_finite_values_is_none_not_huge_or_nan(values):
    assert ic_summary(values)["t_stat"] is None


# --- cross-sectional IC ------------------------------------------------------------------------


def test_cross_sectional_ic_per_date_then_mean_std_t(tmp_path):
    # Five symbols, three dates; the one-day return of symbol i on date t is returns[i][t].
    returns = {
        "S1": [0.01, 0.01, 0.05],
        "S2": [0.02, 0.02, 0.04],
        "S3": [0.03, 0.03, 0.03],
        "S4": [0.04, 0.05, 0.02],
        "S5": [0.05, 0.04, 0.01],
    }
    market = market_from_returns(tmp_path, returns)
    days = weekdays(3)
    scores = [1, 2, 3, 4, 5]  # same ranking every day
    signals = [sig("a", s, day, scores[i]) for i, s in enumerate(returns) for day in days]
    section = score_signals(signals, market, horizons=(1,), primary_horizon=1)
    xs = section["agents"]["a"]["horizons"]["1"]["ic_cross_sectional"]
    # day 0: perfect (1.0); day 1: one swap (0.9); day 2: reversed (-1.0)
    assert [xs["daily"][day.isoformat()] for day in days] == pytest.approx([1.0, 0.9, -1.0])
    assert xs["mean"] == pytest.approx(0.3)
    assert xs["std"] == pytest.approx(math.sqrt((0.49 + 0.36 + 1.69) / 2))
    assert xs["t_stat"] == pytest.approx(0.3 / math.sqrt(1.27) * math.sqrt(3))
    assert xs["n"] == 3
    assert (xs["hac_lags"], xs["t_stat_hac"]) == (0, pytest.approx(xs["t_stat"]))  # 1-day returns do not overlap


def test_cross_sectional_hac_t_stat_uses_horizon_minus_one_lags():
    market = CsvMarketData()  # the shipped history: 2017, eight symbols on the NYSE calendar
    symbols = ["SPX", "IXIC", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]
    days = market.trading_days("SPX", date(2017, 2, 1), date(2017, 11, 30))
    signals = []
    for day in days:  # a momentum score: the last five days' return
        for symbol in symbols:
            bars = market.closes(symbol, day, 6)
            signals.append(sig("m", symbol, day, bars[-1].close / bars[0].close - 1))
    section = score_signals(signals, market, horizons=(1, 5, 10), primary_horizon=5)
    for h in (1, 5, 10):
        xs = section["agents"]["m"]["horizons"][str(h)]["ic_cross_sectional"]
        assert xs["hac_lags"] == h - 1
        assert xs["t_stat_hac"] == pytest.approx(newey_west_t_stat(list(xs["daily"].values()), h - 1), abs=1e-12)
        if h > 1:  # overlapping returns: the plain t-stat overstates the evidence
            assert abs(xs["t_stat_hac"]) < abs(xs["t_stat"])
    ic = primary_ic(section["agents"]["m"], 5)
    cell = section["agents"]["m"]["horizons"]["5"]["ic_cross_sectional"]
    assert (ic["kind"], ic["t_stat_hac"], ic["hac_lags"]) == ("cross_sectional", cell["t_stat_hac"], 4)


def test_cross_sectional_ic_skips_dates_with_too_few_symbols_or_constant_scores(tmp_path):
    market = market_from_returns(tmp_path, {s: [0.01 * (i + 1), 0.02, 0.03] for i, s in enumerate("ABCDE")})
    d0, d1, _ = weekdays(3)
    signals = [sig("a", s, d0, i) for i, s in enumerate("ABCDE")]  # date 0: five symbols, IC 1
    signals += [sig("a", s, d1, 1.0) for s in "ABCDE"]  # date 1: constant scores, undefined
    signals += [sig("b", s, d0, i) for i, s in enumerate("ABCD")]  # four symbols < min 5
    section = score_signals(signals, market, horizons=(1,), primary_horizon=1)
    a = section["agents"]["a"]["horizons"]["1"]["ic_cross_sectional"]
    assert (a["mean"], a["n"], a["dates_undefined"], a["dates_too_few_symbols"]) == (pytest.approx(1.0), 1, 1, 0)
    b = section["agents"]["b"]["horizons"]["1"]["ic_cross_sectional"]
    assert (b["mean"], b["n"], b["dates_too_few_symbols"]) == (None, 0, 1)


# --- per-symbol time-series IC -------------------------------------------------------------------


def test_time_series_ic_per_symbol_then_across_symbols(tmp_path):
    market = market_from_returns(
        tmp_path, {"UP": [0.01, 0.02, 0.03, 0.04, 0.0], "DN": [0.04, 0.03, 0.02, 0.01, 0.0], "FEW": [0.01, 0.02, 0.0]}
    )
    days = weekdays(4)
    signals = [sig("a", "UP", day, s) for day, s in zip(days, [2, 1, 3, 4])]  # one swap of four: 1 - 6*2/60 = 0.8
    signals += [sig("a", "DN", day, s) for day, s in zip(days, [1, 2, 3, 4])]  # reversed: -1
    signals += [sig("a", "FEW", day, s) for day, s in zip(days[:2], [1, 2])]  # 2 < min 3: no IC
    section = score_signals(signals, market, horizons=(1,), primary_horizon=1, min_time_series=3)
    cell = section["agents"]["a"]["horizons"]["1"]
    assert cell["by_symbol"]["UP"]["ic_time_series"] == pytest.approx(0.8)
    assert cell["by_symbol"]["DN"]["ic_time_series"] == pytest.approx(-1.0)
    assert cell["by_symbol"]["FEW"]["ic_time_series"] is None
    ts = cell["ic_time_series"]
    assert (ts["mean"], ts["n"], ts["symbols_too_few_signals"]) == (pytest.approx(-0.1), 2, 1)
    assert ts["std"] == pytest.approx(math.sqrt(0.81 + 0.81))
    assert ts["t_stat"] == pytest.approx(-0.1 / math.sqrt(1.62) * math.sqrt(2))
    assert ts["hac_lags"] == 0 and ts["t_stat_hac"] == pytest.approx(ts["t_stat"])  # observations are symbols
    assert primary_ic(section["agents"]["a"], 1) == {
        "kind": "time_series",
        "mean": pytest.approx(-0.1),
        "t_stat": ts["t_stat"],
        "t_stat_hac": ts["t_stat_hac"],
        "hac_lags": 0,
        "n": 2,
    }


# --- hit rate, Brier, long/short ---------------------------------------------------------------


def test_hit_rate_brier_long_short_and_calibration(tmp_path):
    moves = {"A": [0.10], "B": [-0.05], "C": [-0.20], "D": [0.0], "E": [0.30]}
    market = market_from_returns(tmp_path, moves)
    day = weekdays(1)[0]
    signals = [
        sig("a", "A", day, 0.8, "up", 0.8),  # hit
        sig("a", "B", day, 0.6, "up", 0.6),  # miss
        sig("a", "C", day, -0.5, "down", 0.3),  # hit
        sig("a", "D", day, -0.4, "down", 0.4),  # zero return: a miss
        sig("a", "E", day, 0.0, "flat", 0.5),  # no directional call
    ]
    cell = score_signals(signals, market, horizons=(1,), primary_horizon=1)["agents"]["a"]["horizons"]["1"]
    assert (cell["scored"], cell["directional"], cell["flat"], cell["hits"]) == (5, 4, 1, 2)
    assert cell["hit_rate"] == pytest.approx(0.5)
    # outcomes up: A and E; (0.8-1)^2 + 0.6^2 + 0.3^2 + 0.4^2 + (0.5-1)^2 = 0.04 + 0.36 + 0.09 + 0.16 + 0.25
    assert cell["brier"] == pytest.approx(0.9 / 5)
    assert cell["up_rate"] == pytest.approx(2 / 5)
    assert cell["mean_return_long"] == pytest.approx((0.10 - 0.05) / 2)
    assert cell["mean_return_short"] == pytest.approx((-0.20 + 0.0) / 2)
    assert cell["long_short_spread"] == pytest.approx(0.125)
    bins = {round(b["lo"], 1): b for b in cell["calibration"]}
    assert len(cell["calibration"]) == 10
    assert (bins[0.8]["count"], bins[0.8]["observed_up_rate"]) == (1, 1.0)
    assert (bins[0.6]["count"], bins[0.6]["observed_up_rate"]) == (1, 0.0)
    assert (bins[0.0]["count"], bins[0.0]["mean_prob_up"]) == (0, None)
    assert cell["by_symbol"]["A"]["hit_rate"] == 1.0 and cell["by_symbol"]["E"]["hit_rate"] is None


def test_pending_signals_are_counted_not_scored(tmp_path):
    market = market_from_returns(tmp_path, {"A": [0.1, 0.2]})  # three bars
    d0, d1, d2 = weekdays(3)
    signals = [sig("a", "A", d0, 1.0), sig("a", "A", d1, 1.0), sig("a", "A", d2, 1.0)]
    section = score_signals(signals, market, horizons=(1, 2), primary_horizon=1)
    h1, h2 = section["agents"]["a"]["horizons"]["1"], section["agents"]["a"]["horizons"]["2"]
    assert (h1["signals"], h1["scored"], h1["pending"]) == (3, 2, 1)
    assert (h2["scored"], h2["pending"]) == (1, 2)
    assert h2["mean_return_long"] == pytest.approx(1.1 * 1.2 - 1)
    limited = score_signals(signals, market, horizons=(1,), primary_horizon=1, today=d1)
    assert limited["agents"]["a"]["horizons"]["1"]["scored"] == 1  # d1 -> d2 ends after today


def test_the_last_duplicate_counts():
    first = sig("a", "A", DAY0, 1.0, t=10)
    later = sig("a", "A", DAY0, -1.0, "down", t=20)
    other = sig("b", "A", DAY0, 0.5, t=5)
    kept, dropped = dedupe([later, first, other])
    assert dropped == 1
    assert kept == [later, other]


def test_cost_efficiency_per_scored_signal_and_ic_per_dollar(tmp_path):
    market = market_from_returns(tmp_path, {"UP": [0.01, 0.02, 0.03, 0.04, 0.0]})
    signals = [sig("llm", "UP", day, s) for day, s in zip(weekdays(4), [2, 1, 3, 4])]
    signals += [sig("rule", "UP", day, s) for day, s in zip(weekdays(4), [2, 1, 3, 4])]
    section = score_signals(signals, market, {"llm": 2.0, "rule": 0.0}, horizons=(1,), primary_horizon=1, min_time_series=3)
    llm, rule = section["agents"]["llm"]["cost"], section["agents"]["rule"]["cost"]
    assert llm == {
        "cost_usd": 2.0,
        "scored_signals": 4,
        "cost_per_scored_signal_usd": 0.5,
        "ic": pytest.approx(0.8),
        "ic_kind": "time_series",
        "ic_per_dollar": pytest.approx(1.6),
    }
    assert (rule["cost_per_scored_signal_usd"], rule["ic_per_dollar"]) == (0.0, None)


def test_bad_horizons_are_refused(tmp_path):
    market = market_from_returns(tmp_path, {"A": [0.1]})
    with pytest.raises(ValueError, match="primary horizon"):
        score_signals([], market, horizons=(1, 5), primary_horizon=10)
    with pytest.raises(ValueError, match="positive"):
        score_signals([], market, horizons=(0,), primary_horizon=0)


# --- the section is JSON and renders -------------------------------------------------------------


def test_section_is_stable_json_and_renders_escaped(tmp_path):
    market = market_from_returns(tmp_path, {s: [0.01 * i, -0.01 * i, 0.0] for i, s in enumerate("ABCDE", 1)})
    hostile = "<script>alert(1)</script>"
    signals = [
        sig(agent, s, day, i * k, "up" if k > 0 else "down", 0.7 if k > 0 else 0.2)
        for agent, k in ((hostile, 1), ("rule", -1))
        for i, s in enumerate("ABCDE")
        for day in weekdays(2)
    ]
    section = score_signals(signals, market, {"rule": 0.25}, horizons=(1, 2), primary_horizon=1)
    text = json.dumps(section, allow_nan=False, sort_keys=True)
    assert json.loads(text) == section
    assert list(section["agents"]) == sorted(section["agents"])
    assert list(section["agents"]["rule"]["horizons"]) == ["1", "2"]
    html_text = render_html(section)
    assert hostile not in html_text and "&lt;script&gt;" in html_text
    assert html_text.count("<svg") == 3 and "cross-sectional IC" in html_text and "per-symbol time-series IC" in html_text
    markdown = render_markdown(section)
    assert "Cross-sectional IC" in markdown and "Per-symbol time-series IC" in markdown and "| rule | 1 |" in markdown


def test_pages_show_the_hac_t_stat_beside_the_plain_one(tmp_path):
    market = market_from_returns(tmp_path, {s: [0.01 * i * (-1) ** d for d in range(12)] for i, s in enumerate("ABCDE", 1)})
    signals = [sig("a", s, day, (i * d) % 5) for i, s in enumerate("ABCDE") for d, day in enumerate(weekdays(8))]
    section = score_signals(signals, market, horizons=(1, 2), primary_horizon=2)
    xs = section["agents"]["a"]["horizons"]["2"]["ic_cross_sectional"]
    assert xs["t_stat"] is not None and xs["t_stat_hac"] is not None and xs["hac_lags"] == 1
    shown = f"t={xs['t_stat']:.2f}, HAC t={xs['t_stat_hac']:.2f}"
    assert shown in render_markdown(section) and shown in render_html(section)
    assert "Newey-West" in render_markdown(section)
    one_day = section["agents"]["a"]["horizons"]["1"]["ic_cross_sectional"]  # 0 lags: the HAC t is the plain t, not repeated
    assert f"(n={one_day['n']}, t={one_day['t_stat']:.2f})" in render_markdown(section)
    empty = score_signals([], market)
    assert "No alpha signals" in render_markdown(empty) and "No alpha signals" in render_html(empty)


def test_signals_read_from_otlp_json_lines(tmp_path: Path):
    def attr(key, value):
        kind = {bool: "boolValue", int: "intValue", float: "doubleValue", str: "stringValue"}[type(value)]
        return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}

    event = {
        "name": "alpha.signal",
        "timeUnixNano": "7",
        "attributes": [
            attr("alpha.symbol", "SPX"),
            attr("alpha.direction", "up"),
            attr("alpha.prob_up", 0.6),
            attr("alpha.score_final", 0.2),
            attr("alpha.horizon", 5),
            attr("alpha.as_of", "2017-01-03"),
            attr("alpha.tradable", False),
        ],
    }
    out_of_range = {**event, "attributes": [attr("alpha.prob_up", 1.5) if a["key"] == "alpha.prob_up" else a for a in event["attributes"]]}
    span = {
        "traceId": "ab",
        "spanId": "cd",
        "name": "invoke_agent llm",
        "startTimeUnixNano": "1000000",
        "endTimeUnixNano": "3500000",
        "attributes": [
            attr("gen_ai.operation.name", "invoke_agent"),
            attr("gen_ai.agent.name", "llm"),
            attr("agent.run.outcome", "ok"),
            attr("agent.run.as_of", "2017-01-03"),
            attr("agent.run.cost_usd", 0.25),
        ],
        "events": [event, {"name": "alpha.signal", "attributes": [attr("alpha.symbol", "X")]}, out_of_range],
    }
    line = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    (tmp_path / "traces.jsonl").write_text("\n".join([line, line, "{not json", ""]) + "\n")
    records = read_records([str(tmp_path / "traces.jsonl")]).records  # the report's reader
    assert (records.bad_lines, records.bad_signals, len(records.runs)) == (1, 2, 1)  # the repeated line is one span
    run = records.runs[0]
    assert (run.agent, run.outcome, run.as_of, run.duration_ms, run.cost_usd) == ("llm", "ok", date(2017, 1, 3), 2.5, 0.25)
    assert records.signals == [SignalRecord("llm", "SPX", date(2017, 1, 3), "up", 0.6, 0.2, 5, False, "ab", "cd", 7)]
