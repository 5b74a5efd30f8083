"""The report's alpha-quality and supervisor sections: figures computed by hand on a hand-made trace
and hand-made prices, the last signal per (agent, symbol, as-of) kept while reading, hostile symbols
(escaped, never a file path), ``--no-alpha-quality``, supervisor spans counted apart, and a person's
revive shown beside the retirement it holds."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from meta_supervisor.cli import report as report_cli
from meta_supervisor.supervisor.audit import append_audit
from meta_supervisor.supervisor.policy import Policy, decide_one
from otel import semconv
from services.kill_switch import load_kill_entries, revive
from tests.fixtures.report.otlp_builder import T0, Llm, Run, Signal, attrs, line, lines_for

PRICES = Path(__file__).parent / "fixtures" / "alpha" / "prices"  # AAA, BBB, GAP: see its README
NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)
HOSTILE = "<svg onload=alert(1)>"


def hand_made_runs() -> list[Run]:
    """Agent ``rule``: scorable signals on AAA and BBB, one superseded by a later run, one on the last
    bar (pending), one on a symbol outside the price folder and one hostile symbol (no data), one
    without an as-of date (unusable). Agent ``llm``: one signal and one priced LLM call."""
    return [
        Run("rule", 1, start_ms=0, signals=[Signal("AAA", "down", 0.1, -1.0, as_of="2024-01-02")]),  # superseded by run 2
        Run(
            "rule",
            2,
            start_ms=1000,
            signals=[Signal("AAA", "up", 0.8, 0.5, as_of="2024-01-02"), Signal("BBB", "up", 0.6, 0.2, as_of="2024-01-02")],
        ),
        Run(
            "rule",
            3,
            start_ms=2000,
            signals=[Signal("AAA", "down", 0.3, -0.4, as_of="2024-01-03"), Signal("BBB", "flat", 0.5, 0.0, as_of="2024-01-03")],
        ),
        Run(
            "rule",
            4,
            start_ms=3000,
            signals=[
                Signal("AAA", "up", 0.7, 0.3, as_of="2024-01-04", tradable=True),
                Signal("AAA", "up", 0.9, 0.9, as_of="2024-01-12"),  # the last bar: no next day yet
                Signal("../outside", "up", 0.9, 0.1, as_of="2024-01-02"),  # prices/../outside.csv exists
                Signal(HOSTILE, "up", 0.9, 0.1, as_of="2024-01-02"),
                ("AAA", "up"),  # no as-of date, no horizon: not scorable
            ],
        ),
        Run(
            "llm", 5, start_ms=4000, llm=[Llm(tokens_in=1000, tokens_out=100)], signals=[Signal("AAA", "up", 0.6, 0.2, as_of="2024-01-02")]
        ),
    ]


def argv_for(tmp_path: Path, *extra: str) -> list[str]:
    """The report command on tmp_path's traces.jsonl and prices/, writing to out/; no state unless extra gives one."""
    state = [] if "--state-dir" in extra else ["--no-state"]
    argv = ["--input", str(tmp_path / "traces.jsonl"), "--out", str(tmp_path / "out"), *state, "--quiet"]
    argv += ["--market-data", str(tmp_path / "prices"), "--kill-file", str(tmp_path / "killed.json")]
    argv += ["--audit-log", str(tmp_path / "audit.jsonl"), *extra]
    return argv


def build(tmp_path: Path, text: str, *extra: str, now: dt.datetime = NOW) -> tuple[dict, Path]:
    (tmp_path / "prices").mkdir(parents=True, exist_ok=True)
    for csv in PRICES.glob("*.csv"):
        shutil.copy(csv, tmp_path / "prices" / csv.name)
    shutil.copy(PRICES / "AAA.csv", tmp_path / "outside.csv")  # what a path-traversing symbol would reach
    traces = tmp_path / "traces.jsonl"
    traces.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert report_cli.main(argv_for(tmp_path, *extra), now=lambda: now) == 0
    return json.loads((out / "meta_report.json").read_text(encoding="utf-8")), out


def test_alpha_quality_figures_by_hand(tmp_path: Path) -> None:
    # AAA closes 01-02 100, 01-03 110, 01-04 99, 01-05 120; BBB 01-02 50, 01-03 40, 01-05 60 (no 01-04)
    report, out = build(tmp_path, "".join(lines_for(hand_made_runs(), per_line=2)))
    alpha = report["alpha_quality"]
    assert (alpha["signals"], alpha["duplicates_dropped"], alpha["unusable_signals"]) == (10, 1, 1)
    assert alpha["today"] == "2026-01-03" and alpha["market_data"] == str(tmp_path / "prices") and alpha["daily_omitted"] is False
    rule = alpha["agents"]["rule"]
    assert rule["signals"] == 8 and rule["tradable_signals"] == 1
    assert rule["symbols"] == sorted(["../outside", "AAA", "BBB", HOSTILE])
    assert (rule["first_as_of"], rule["last_as_of"]) == ("2024-01-02", "2024-01-12")
    h1 = rule["horizons"]["1"]
    # scored: AAA 01-02 up +10% (hit), AAA 01-03 down -10% (hit), AAA 01-04 up +21/99 (hit), BBB 01-02 up -20% (miss),
    # BBB 01-03 flat +50% (left out of the hit rate); AAA 01-12 pending; ../outside and the hostile symbol: no data
    assert (h1["signals"], h1["scored"], h1["pending"], h1["no_data"]) == (8, 5, 1, 2)
    assert (h1["directional"], h1["flat"], h1["hits"], h1["hit_rate"]) == (4, 1, 3, 0.75)
    assert h1["brier"] == pytest.approx((0.2**2 + 0.3**2 + 0.3**2 + 0.6**2 + 0.5**2) / 5)
    assert h1["up_rate"] == pytest.approx(3 / 5)
    assert (h1["long_count"], h1["short_count"]) == (3, 1)
    assert h1["mean_return_long"] == pytest.approx((0.1 + 21 / 99 - 0.2) / 3)
    assert h1["mean_return_short"] == pytest.approx(99 / 110 - 1)
    assert h1["by_symbol"]["../outside"]["scored"] == 0  # never read from prices/../outside.csv
    assert h1["by_symbol"]["AAA"]["hits"] == 3 and h1["by_symbol"]["BBB"]["hit_rate"] == 0.0
    cell = next(c for c in h1["calibration"] if c["lo"] == 0.8)
    assert (cell["count"], cell["mean_prob_up"], cell["observed_up_rate"]) == (1, 0.8, 1.0)
    # the LLM agent: 1000 input and 100 output tokens of gpt-4o-mini; AAA 01-02 -> 01-09 over five days: +0%
    llm = alpha["agents"]["llm"]
    assert llm["horizons"]["5"]["scored"] == 1 and llm["horizons"]["5"]["hits"] == 0  # a zero return is a miss
    assert llm["cost"]["cost_usd"] == pytest.approx(report["agents"]["llm"]["cost_usd"]) == pytest.approx(0.00021)
    assert llm["cost"]["cost_per_scored_signal_usd"] == pytest.approx(0.00021)
    assert alpha["agents"]["rule"]["cost"]["cost_usd"] == 0.0 and alpha["agents"]["rule"]["cost"]["ic_per_dollar"] is None
    markdown = (out / "meta_report.md").read_text(encoding="utf-8")
    assert "### Alpha quality" in markdown and "| rule | 1 | 5 | 1 | 75.0% (base 60.0%) |" in markdown
    assert f"1 `{semconv.EVENT_ALPHA_SIGNAL}` events lack what scoring needs" in markdown


def test_pending_until_today(tmp_path: Path) -> None:
    """With today 2024-01-04 a one-day return ending on 01-05 is not known yet."""
    report, _ = build(tmp_path, "".join(lines_for(hand_made_runs())), now=dt.datetime(2024, 1, 4, 18, tzinfo=dt.UTC))
    h1 = report["alpha_quality"]["agents"]["rule"]["horizons"]["1"]
    # scored: AAA 01-02 (exit 01-03), AAA 01-03 (exit 01-04), BBB 01-02 (exit 01-03); pending: AAA 01-04, BBB 01-03, AAA 01-12
    assert (h1["scored"], h1["pending"], h1["no_data"]) == (3, 3, 2)


def test_the_last_signal_wins_whatever_the_order(tmp_path: Path) -> None:
    runs = hand_made_runs()
    forward, _ = build(tmp_path / "a", "".join(lines_for(runs)))
    backward, _ = build(tmp_path / "b", "".join(reversed(lines_for(runs))) + lines_for(runs)[0])  # reversed, and a retry
    assert forward["alpha_quality"].pop("market_data") != backward["alpha_quality"].pop("market_data")  # a copy each
    assert forward["alpha_quality"] == backward["alpha_quality"]
    aaa = forward["alpha_quality"]["agents"]["rule"]["horizons"]["1"]["by_symbol"]["AAA"]
    assert (aaa["long_count"], aaa["short_count"]) == (2, 1)  # run 2's AAA 01-02 up (not run 1's down) and 01-04; 01-03 down


def test_hostile_symbol_is_escaped_in_the_alpha_section(tmp_path: Path) -> None:
    _, out = build(tmp_path, "".join(lines_for(hand_made_runs())))
    page = (out / "meta_report.html").read_text(encoding="utf-8")
    start = page.index('<section class="alpha-quality">')
    section = page[start : page.index("</section>", start)]
    assert "&lt;svg onload=alert(1)&gt;" in section and "<svg onload" not in page
    assert section.count("<svg") == 3  # cross-sectional and time-series IC by horizon, calibration: inline SVG
    assert "<script" not in page and "href=" not in section and "src=" not in section  # nothing external
    markdown = (out / "meta_report.md").read_text(encoding="utf-8")
    assert "&lt;svg onload=alert\\(1\\)&gt;" in markdown or "&lt;svg onload=alert(1)&gt;" in markdown
    assert "<svg" not in markdown


def test_no_alpha_quality_flag(tmp_path: Path) -> None:
    report, out = build(tmp_path, "".join(lines_for(hand_made_runs())), "--no-alpha-quality")
    assert report["alpha_quality"] is None
    with_alpha, _ = build(tmp_path / "with", "".join(lines_for(hand_made_runs())))
    for key in ("inputs", "agents", "fleet", "days", "needs_attention"):  # read with the narrower decoder: the same
        assert report[key] == json.loads(json.dumps(with_alpha[key]).replace(str(tmp_path / "with"), str(tmp_path))), key
    assert report["agents"]["rule"]["alpha_signals"] == 10  # still counted, just not scored
    assert "Left out" in (out / "meta_report.html").read_text(encoding="utf-8")


def test_missing_market_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("", encoding="utf-8")
    argv = ["--input", str(traces), "--out", str(tmp_path / "o"), "--no-state", "--market-data", str(tmp_path / "nowhere")]
    assert report_cli.main(argv) == 2
    assert "--no-alpha-quality" in capsys.readouterr().err


def supervisor_span(name: str, trace: int, span: int, attributes: dict) -> dict:
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(T0 + 10_000_000_000),
        "endTimeUnixNano": str(T0 + 10_001_000_000),
        "attributes": attrs(attributes),
        "status": {},
    }


def test_supervisor_section_shows_a_revive_beside_the_decision_it_holds(tmp_path: Path) -> None:
    kill_file, audit = tmp_path / "killed.json", tmp_path / "audit.jsonl"
    revive("rule", "I trust it <b>", by="dave", path=kill_file, now=lambda: NOW)
    figures = {"runs": 100, "errors": 50, "error_rate": 0.5, "cost_per_day_usd": 0.0, "p95_latency_ms": 1.0, "scored_signals": 0}
    figures.update({"ic": None, "ic_t_stat": None, "ic_t_stat_hac": None, "hit_rate": None, "brier": None})
    decision = decide_one("rule", figures, Policy(), "live", load_kill_entries(kill_file)["rule"], None)
    assert decision.action == "hold"
    audited = {**decision.to_json(), "at": "2026-01-03T11:00:00Z", "applied": False, "policy": "p", "dry_run": False}
    append_audit([{**audited, "result": "no change"}], audit)
    # the spans supervise --apply writes into the same file: the supervisor's, not any agent's
    spans = [
        supervisor_span(semconv.SPAN_SUPERVISOR_RUN, 99, 1, {semconv.SUPERVISOR_DECISIONS: 1}),
        supervisor_span(semconv.SPAN_SUPERVISOR_DECIDE, 99, 2, {semconv.SUPERVISOR_AGENT: "rule", semconv.SUPERVISOR_ACTION: "hold"}),
    ]
    text = "".join(lines_for(hand_made_runs())) + line(spans)
    report, out = build(tmp_path, text)
    assert report["inputs"]["supervisor_spans"] == 2 and report["inputs"]["other_spans"] == 0
    assert set(report["agents"]) == {"llm", "rule"}  # no "(unknown agent)"
    section = report["supervisor"]
    assert section["audit_log"] == str(audit) and section["error"] is None and section["held"] == ["rule"]
    held = section["agents"]["rule"]
    assert (held["action"], held["would"], held["rule"]) == ("hold", "retire", "retire.error_rate_above")
    assert (held["held_by"]["by"], held["held_by"]["state"]) == ("dave", "revived")
    assert section["kill_switch"]["rule"]["state"] == "revived" and section["kill_switch"]["rule"]["by"] == "dave"
    assert report["agents"]["rule"]["killed"] is False  # a revive does not stop the agent
    attention = [item for item in report["needs_attention"] if item["kind"] == "policy_held"]
    assert attention == [
        {
            "kind": "policy_held",
            "agent": "rule",
            "value": "retire.error_rate_above",
            "why": "the policy would retire it (retire.error_rate_above) but dave revived it at 2026-01-03T12:00:00Z: "
            "the person's entry holds the decision",
        }
    ]
    markdown = (out / "meta_report.md").read_text(encoding="utf-8")
    assert "### Supervisor decisions" in markdown and "hold (policy: retire)" in markdown
    assert "dave (revived, 2026-01-03T12:00:00Z): I trust it &lt;b&gt;" in markdown and "<b>" not in markdown
    page = (out / "meta_report.html").read_text(encoding="utf-8")
    assert '<tr class="held"><td>rule</td>' in page and "hold (policy: retire)" in page
    assert "revived by dave" in page and "I trust it &lt;b&gt;" in page


def test_an_unreadable_audit_log_does_not_stop_the_report(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()  # a folder where the log should be
    report, _ = build(tmp_path, "".join(lines_for(hand_made_runs())))
    assert report["supervisor"]["agents"] == {} and "audit log" in report["supervisor"]["error"]


def test_a_build_with_nothing_new_reuses_the_scored_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from meta_supervisor.assemble import alpha as report_alpha
    from meta_supervisor.assemble import report as report_model
    from meta_supervisor.assemble import worth as report_worth

    first, out = build(tmp_path, "".join(lines_for(hand_made_runs())), "--state-dir", str(tmp_path / "state"))
    assert len(list((tmp_path / "state").glob("report-*.alpha.bin"))) == 1
    argv = argv_for(tmp_path, "--state-dir", str(tmp_path / "state"))

    def not_again(*args, **kwargs):
        raise AssertionError("scored again although nothing changed")

    monkeypatch.setattr(report_model, "alpha_quality_section", not_again)
    monkeypatch.setattr(report_model, "worth_section", not_again)
    for record in (tmp_path / "state").glob("*.record"):
        record.unlink()  # the report made again (not kept as is: cli.report_record), from the cached sections
    assert report_cli.main(argv, now=lambda: NOW) == 0
    assert json.loads((out / "meta_report.json").read_text(encoding="utf-8")) == first  # the cached sections, exactly
    assert first["worth"] is not None
    # other prices: scored again (the cache is keyed on the market data files)
    monkeypatch.setattr(report_model, "alpha_quality_section", report_alpha.alpha_quality_section)
    monkeypatch.setattr(report_model, "worth_section", report_worth.worth_section)
    aaa = tmp_path / "prices" / "AAA.csv"
    aaa.write_text(aaa.read_text().replace("2024-01-03,,,,110,", "2024-01-03,,,,90,"))
    os.utime(aaa, ns=(1, 1))
    assert report_cli.main(argv, now=lambda: NOW) == 0
    changed = json.loads((out / "meta_report.json").read_text(encoding="utf-8"))
    # AAA 01-02 up now loses 10% and 01-03 down sees +10%: only AAA 01-04 up is still a hit
    assert changed["alpha_quality"]["agents"]["rule"]["horizons"]["1"]["hits"] == 1
    assert changed["inputs"] == first["inputs"]
