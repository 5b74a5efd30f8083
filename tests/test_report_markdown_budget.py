"""``meta_report.md`` as a GitHub pull-request comment: it always fits (``meta_supervisor.render.md_budget``),
escaped first and cut after, with "… and N more" where a section is cut; ``@mentions``, issue
references and bidirectional controls from span data are inert (in the HTML page too)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_supervisor.cli import report as report_cli
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from meta_supervisor.render.md_budget import MAX_PAGE_CHARS, REST_IN, Section, fit_page, size
from services.markup_text import BIDI_CONTROLS, md_escape
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for

NOW = dt.datetime(2026, 1, 12, tzinfo=dt.UTC)
ESCAPE_HEAVY = "<&>|*_[]`\\~{}#@$"
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")  # what GitHub turns into a mention
REFERENCE = re.compile(r"(?i)(#|\bGH-)\d|https?://")  # an issue reference or an autolinked URL
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "150"))


def build(tmp_path: Path, runs: list[Run], kill: dict) -> Path:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for(runs, per_line=20)), encoding="utf-8")
    kill_file = tmp_path / "killed.json"
    kill_file.write_text(json.dumps(kill), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--input", str(traces), "--out", str(out), "--no-state", "--quiet", "--kill-file", str(kill_file)]
    assert report_cli.main([*argv, "--audit-log", str(tmp_path / "audit.jsonl")], now=lambda: NOW) == 0
    return out


def assert_fits(text: str) -> None:
    """At most MAX_PAGE_CHARS in code points and in UTF-16 code units, also with CRLF line breaks;
    no table row or ``<details>`` left open, no raw HTML, nothing GitHub would link."""
    crlf = text.replace("\n", "\r\n")
    assert len(crlf) <= MAX_PAGE_CHARS and len(crlf.encode("utf-16-le")) // 2 <= MAX_PAGE_CHARS
    assert size(text) == len(crlf.encode("utf-16-le")) // 2
    for line in text.split("\n"):
        assert not line.startswith("|") or line.endswith("|"), line
    assert text.count("<details>") == text.count("</details>")
    shown = re.sub(r"\]\(https?://[^)\s]*\)", "]", text)  # the report's own Jaeger links
    assert "<script" not in text and "<img" not in text and not MENTION.search(shown) and not REFERENCE.search(shown)
    assert not set(BIDI_CONTROLS) & set(text)


def test_many_failing_agents_with_escape_heavy_names_fit_a_comment(tmp_path: Path) -> None:
    """Before: 200 failing agents with 200-character names of Markdown specials made a page of
    about 170,000 characters (cut before escaping; the failing runs under no size cap)."""
    runs = []
    for a in range(200):
        name = f"{a:03d}" + (ESCAPE_HEAVY * 14)[:197]
        for r in range(15):  # 3,000 runs
            t = a * 15 + r + 1
            runs.append(Run(name, t, start_ms=t, outcome="error", error_type="<E&>" * 50, message="<@x #1 |*_>" * 30, llm=[Llm()]))
    out = build(tmp_path, runs, {f"{a:03d}" + (ESCAPE_HEAVY * 14)[:197]: {"reason": "<&>" * 100} for a in range(50)})
    text = (out / "meta_report.md").read_text(encoding="utf-8")
    assert_fits(text)
    assert re.search(r"\u2026 and [\d,]+ more agents \(see meta_report\.html / meta_report\.json\)", text)
    assert re.search(r"\u2026 and [\d,]+ more runs \(see", text)
    assert "### Needs attention" in text and "| agent | runs |" in text and "Inputs:" in text
    report = json.loads((out / "meta_report.json").read_text(encoding="utf-8"))
    assert render_markdown(report) == text


def test_mentions_references_and_bidi_controls_are_inert(tmp_path: Path) -> None:
    names = ["@octocat", "#1", "owner/repo#12", "GH-7", "\u202eevil\u2066x\u2069", "www.example.com"]
    runs = [
        Run(name, i + 1, outcome="error", error_type="@admins", message=f"see https://github.com/o/r/issues/1 and #{i} cc @team\u200f")
        for i, name in enumerate(names)
    ]
    out = build(tmp_path, runs, {"@octocat": {"reason": "asked by @boss in #99", "by": "@ops"}})
    text = (out / "meta_report.md").read_text(encoding="utf-8")
    assert_fits(text)
    assert "@\u200boctocat" in text and "#\u200b1" in text and "GH-\u200b7" in text and "https:\u200b//github.com" in text
    assert "\\[U+202E\\]evil\\[U+2066\\]x\\[U+2069\\]" in text  # shown, as `[U+202E]evil…`
    page = (out / "meta_report.html").read_text(encoding="utf-8")
    assert not set(BIDI_CONTROLS) & set(page) and "[U+202E]evil[U+2066]x[U+2069]" in page


PIECES = [*ESCAPE_HEAVY, *BIDI_CONTROLS, "a", "1", " ", "\n", ":", "/", "\U0001f680", "\u0301", "GH-", "https://", "www.", "\u200b"]
hostile_text = st.lists(st.sampled_from(PIECES), max_size=300).map("".join)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=hostile_text, limit=st.integers(1, 300))
def test_md_escape_cuts_after_escaping_never_inside_an_escape(text: str, limit: int) -> None:
    whole, cut = md_escape(text), md_escape(text, limit)
    assert len(cut) <= limit
    assert cut == whole or (cut.endswith("\u2026") and whole.startswith(cut[:-1]))
    if cut != whole:  # the escape of a prefix of the text, with its inert marks
        norm = " ".join(text.split())
        prefixes = {md_escape(norm[:j] + "x")[:-1].replace("\u200b", "") for j in range(len(norm) + 1)}
        assert cut[:-1].replace("\u200b", "") in prefixes and not cut[:-1].endswith(("@", "#"))
    assert not MENTION.search(whole) and not REFERENCE.search(whole) and not set(BIDI_CONTROLS) & set(whole)


@pytest.fixture(scope="module")
def base_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A report with every section: agents with failing runs, alpha quality (scored against
    agents/data), a supervisor section with kill-switch entries, input problems."""
    tmp_path = tmp_path_factory.mktemp("base")
    runs = [
        Run(n, i + 1, start_ms=i, outcome="error", message="m", signals=[("SPX", "up")], as_of="2017-03-01")
        for i, n in enumerate(["a", "b"] * 5)
    ]
    out = build(tmp_path, runs, {"a": {"reason": "r"}})
    return json.loads((out / "meta_report.json").read_text(encoding="utf-8"))


def hostile(base: dict, text: str, agents: int, runs: int) -> dict:
    """``base`` with ``agents`` agents named after ``text``, each with ``runs`` failing runs, in every
    section the Markdown shows."""
    report = copy.deepcopy(base)
    template = report["agents"]["a"]
    failing = dict(template["failing_runs"][0], message=text, error_type=text)
    names = [f"{i}{text}" for i in range(agents)]
    report["agents"] = {n: dict(template, failing_runs=[failing] * runs, kill_reason=text, killed=True) for n in names}
    report["needs_attention"] = [{"agent": n, "why": text, "kind": "x"} for n in names]
    alpha = report["alpha_quality"]
    cell = next(iter(alpha["agents"].values()))
    h = str(alpha["primary_horizon"])
    symbols = {f"{i}{text}": cell["horizons"][h]["by_symbol"]["SPX"] for i in range(agents)}
    by_symbol = dict(cell, horizons={**cell["horizons"], h: {**cell["horizons"][h], "by_symbol": symbols}})
    alpha["agents"] = {n: by_symbol for n in names}
    decision = {"action": "hold", "would": text, "rule": text, "at": text, "result": text, "figures": {"runs": text}, "held_by": None}
    report["supervisor"] = dict(
        report["supervisor"], agents={n: decision for n in names}, kill_switch={n: {"reason": text, "by": text} for n in names}
    )
    report["inputs"]["problems"] = [{"file": text, "line": i, "error": text} for i in range(agents)]
    report["inputs"]["messages"] = [text] * agents
    return report


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=hostile_text, agents=st.integers(1, 300), runs=st.integers(0, 5))
def test_any_hostile_report_fits_a_comment(base_report: dict, text: str, agents: int, runs: int) -> None:
    report = hostile(base_report, text, agents, runs)
    markdown = render_markdown(report)
    assert_fits(markdown)
    if agents > 40:
        assert "more agents (see meta_report.html / meta_report.json)" in markdown
    assert not set(BIDI_CONTROLS) & set(render_html(report))


def test_the_page_guard_trims_sections_in_the_given_order() -> None:
    """Six sections each under the section cap but together over the page cap: the first in
    ``trim`` order gives up all its rows, the second some, the others none."""
    sections = [Section(key, [f"### {key}"], [f"- {key}{i} " + "x" * 100 for i in range(130)], "things") for key in "abcdef"]
    text = fit_page(["# top"], sections, [], ("absent", "f", "e", "d", "c", "b", "a"))
    assert size(text) <= MAX_PAGE_CHARS
    assert [s.shown for s in sections[:4]] == [130] * 4 and 0 < sections[4].shown < 130 and sections[5].shown == 0
    assert "\u2026 and 130 more things (see meta_report.html / meta_report.json)" in text
    assert text.index("### a") < text.index("### f")  # the page keeps its order


def test_the_page_guard_leaves_out_whole_sections_then_whole_lines() -> None:
    fixed = [Section(key, [f"### {key}", "y" * 25_000], ["- row"], "rows") for key in "abc"]
    text = fit_page(["# top"], fixed, ["bottom"], ("a", "b", "c"))
    assert size(text) <= MAX_PAGE_CHARS and "### b" in text and "### c" not in text
    assert f"\u2026 and 1 more sections (see {REST_IN})" in text and text.endswith("bottom")
    lines = [f"{i:03d}" + "z" * 996 for i in range(70)]
    text = fit_page(lines, [], [], ())
    assert size(text) <= MAX_PAGE_CHARS and text.endswith(f"\u2026 (the rest is in {REST_IN})")
    assert all(line in lines for line in text.split("\n")[:-1])  # whole lines only
