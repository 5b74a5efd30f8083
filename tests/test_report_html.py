"""The HTML and Markdown reports: self-contained, every span-derived string escaped, and a real
browser (headless Chromium) shows a hostile agent name as text. The browser test saves a screenshot
under pytest's tmp dir; it skips when Chromium is missing, except with CI=true, where it fails."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from meta_supervisor.cli import report as report_cli
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for

HOSTILE = "<script>alert(1)</script>"
NOW = dt.datetime(2026, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def hostile_report(tmp_path: Path) -> Path:
    runs = []
    names = [HOSTILE, 'quote" onmouseover="alert(2)', "momentum", "\u65e5\u672c\u8a9e"]
    for i in range(40):
        name = names[i % len(names)]
        runs.append(
            Run(
                name,
                i + 1,
                start_ms=(i % 7) * 86_400_000 + i,
                duration_ms=100 + 37 * i,
                outcome="error" if i % 5 == 0 else "ok",
                message="<img src=x onerror=alert(3)>",
                error_type="<svg onload=alert(4)>",
                llm=[Llm(model="<b>gpt</b>", tokens_in=100 + i, tokens_out=10)] if i % 3 else [Llm(tokens_in=500, tokens_out=50)],
                signals=[("<i>SPX</i>", "up"), ("SPX", "up" if i % 3 else "down", 0.3 + i / 100, (i % 5) / 5)],
                as_of=f"2017-03-{1 + i % 28:02d}",  # scored against agents/data
            )
        )
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for(runs, per_line=5)), encoding="utf-8")
    kill = tmp_path / "killed.json"
    kill.write_text(json.dumps({HOSTILE: {"reason": "<b>risk</b>", "by": "ops", "at": "2026-01-10T00:00:00Z"}}))
    out = tmp_path / "out"
    argv = [
        "--input",
        str(traces),
        "--out",
        str(out),
        "--no-state",
        "--quiet",
        "--kill-file",
        str(kill),
        "--jaeger-url",
        "javascript:alert(5)//",
    ]
    assert report_cli.main(argv, now=lambda: NOW) == 0
    return out


def test_html_is_self_contained_and_escaped(hostile_report: Path) -> None:
    page = (hostile_report / "meta_report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for needle in ("<img", "<svg onload", "<b>gpt", "<i>SPX", "<b>risk", 'onmouseover="alert'):
        assert needle not in page
    assert 'href="javascript' not in page  # links only for http(s) Jaeger URLs
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external assets
    # cost, p95, per-day charts; alpha: IC by horizon (two kinds), calibration; worth: PnL and drawdown of 4 agents
    assert page.count("<svg") == 6 + 4 * 2
    worth = page[page.index('<section class="worth">') :]
    worth = worth[: worth.index("</section>")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in worth and "<script" not in worth  # the hostile agent, in the table and charts
    alpha = page[page.index('<section class="alpha-quality">') :]
    alpha = alpha[: alpha.index("</section>")]
    assert "&lt;i&gt;SPX&lt;/i&gt;" in alpha and "<i>" not in alpha  # the hostile symbol, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in alpha and "<script" not in alpha  # the hostile agent, in tables and charts


def test_markdown_is_escaped_and_fits_a_comment(hostile_report: Path) -> None:
    text = (hostile_report / "meta_report.md").read_text(encoding="utf-8")
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in text or "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "| agent | runs |" in text and "### Needs attention" in text
    assert "### Alpha quality" in text and "&lt;i&gt;SPX&lt;/i&gt;" in text and "<i>" not in text
    assert len(text) < 65_536


def test_renderers_are_pure_functions_of_the_report(hostile_report: Path) -> None:
    report = json.loads((hostile_report / "meta_report.json").read_text(encoding="utf-8"))
    assert render_html(report) == (hostile_report / "meta_report.html").read_text(encoding="utf-8")
    assert render_markdown(report) == (hostile_report / "meta_report.md").read_text(encoding="utf-8")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.browser
def test_headless_chromium_renders_hostile_names_as_text(hostile_report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is required on CI (apt-get install -y chromium) to check the HTML report in a browser")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); the HTML report was not checked in a browser")
    page = (hostile_report / "meta_report.html").as_uri()
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1600",
    ]
    screenshot = tmp_path / "meta_report.png"
    shot = subprocess.run([*common, f"--screenshot={screenshot}", page], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a drawn page, not a blank one
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    elements = Elements()
    elements.feed(dom.stdout)
    assert {"script", "img", "iframe", "object"}.isdisjoint(elements.tags)  # nothing injected an element
    assert not [attr for attr in elements.attributes if attr.startswith("on")]  # nor an event handler
    assert HOSTILE in elements.text  # the hostile name is shown, as text
    assert 'quote" onmouseover="alert(2)' in elements.text
    assert "alphatrace meta report" in elements.text


class Elements(HTMLParser):
    """Tags, attribute names and text of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.chunks: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def test_progress_bar_only_on_a_terminal_and_after_a_moment() -> None:
    import io

    from meta_supervisor.cli.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    terminal = Terminal()
    bar = ProgressBar(terminal, delay=0.5, clock=lambda: now[0])
    bar.update(10, 100)  # too early: nothing drawn
    assert terminal.getvalue() == ""
    now[0] = 1.0
    bar.update(50_000_000, 100_000_000)
    assert "50.0%" in terminal.getvalue() and "MB/s" in terminal.getvalue()
    bar.finish()
    assert terminal.getvalue().endswith("\r")
    piped = io.StringIO()
    quiet = ProgressBar(piped, delay=0.0, clock=lambda: now[0])
    quiet.update(1, 2)
    assert piped.getvalue() == ""  # not a terminal: logs and pipes stay clean


@pytest.mark.parametrize("command", [["meta_supervisor/build_meta_report.py"], ["-m", "meta_supervisor.build_meta_report"]])
def test_no_argument_command_from_the_project_root(tmp_path: Path, command: list[str]) -> None:
    import sys

    root = Path(__file__).resolve().parent.parent
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for([Run("momentum", 1, llm=[Llm()])], per_line=2)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ALPHATRACE_", "OTEL_"))}
    env.update(
        ALPHATRACE_TRACE_FILE=str(traces),
        ALPHATRACE_REPORT_DIR=str(tmp_path / "reports"),
        ALPHATRACE_REPORT_STATE_DIR=str(tmp_path / "state"),
        ALPHATRACE_KILL_SWITCH_FILE=str(tmp_path / "killed.json"),
    )
    done = subprocess.run([sys.executable, *command], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    report = json.loads((tmp_path / "reports" / "meta_report.json").read_text())
    assert report["agents"]["momentum"]["runs"] == 1
