"""A report of many agents has its HTML rendered and written by a forked process while the JSON and
the Markdown are written (``render.outputs.write_report(html_aside=True)``, the report command): the
same three files byte for byte as written in one process, the same stats for the report record, and
an error in the other process raised as if it happened here, the previous HTML kept."""

from __future__ import annotations

import datetime as dt
import errno
import os
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.render import html
from meta_supervisor.render import outputs as report_outputs
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Tool, lines_for

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PRICES = PriceTable.load()


def fleet_report(tmp_path: Path, agents: int) -> dict:
    runs = [
        Run(f"agent-{index:04d}", index, start_ms=index * 1_000, duration_ms=50 + index % 700, llm=[Llm()], tools=[Tool("quote")])
        for index in range(agents)
    ]
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines_for(runs, per_line=4)))
    data, _ = build_inputs(BuildOptions(inputs=[str(traces)], prices=PRICES, workers=1, alpha_signals=False))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW)


def html_renderers(monkeypatch: pytest.MonkeyPatch, log: Path, fail=None) -> None:
    """Record in ``log`` the pid of each process rendering the HTML; ``fail(pid)`` may raise."""
    real = html.html_pieces

    def pieces(report):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if fail is not None:
            fail(os.getpid())
        return real(report)

    monkeypatch.setattr(html, "html_pieces", pieces)


def renderers(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()]


def test_a_large_report_has_its_html_written_by_another_process_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = fleet_report(tmp_path, report_outputs.HTML_ASIDE_AGENTS + 40)
    assert len(report["agents"]) == report_outputs.HTML_ASIDE_AGENTS + 40
    log = tmp_path / "renderers.log"
    html_renderers(monkeypatch, log)
    aside, here = {}, {}
    paths = report_outputs.write_report(report, tmp_path / "aside", written=aside, html_aside=True)
    report_outputs.write_report(report, tmp_path / "here", written=here)
    assert [path.name for path in paths] == ["meta_report.json", "meta_report.md", "meta_report.html"]
    first, second = renderers(log)
    assert first != os.getpid() and second == os.getpid()
    for path in paths:
        assert path.read_bytes() == (tmp_path / "here" / path.name).read_bytes()
    assert list(aside) == paths  # the report record's order
    for path, stat in aside.items():
        now = path.stat()
        assert (stat.st_ino, stat.st_size, stat.st_mtime_ns) == (now.st_ino, now.st_size, now.st_mtime_ns)
    assert sorted(p.name for p in (tmp_path / "aside").iterdir()) == sorted(path.name for path in paths)  # no temp file


def test_a_small_report_is_written_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = fleet_report(tmp_path, 5)
    log = tmp_path / "renderers.log"
    html_renderers(monkeypatch, log)
    report_outputs.write_report(report, tmp_path / "out", html_aside=True)
    assert renderers(log) == [os.getpid()]
    only_html = report_outputs.write_report(report, tmp_path / "only", ("html",), html_aside=True)
    assert [path.name for path in only_html] == ["meta_report.html"] and renderers(log) == [os.getpid()] * 2


def test_a_full_disk_in_the_html_process_is_raised_here_and_keeps_the_previous_html(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_outputs, "HTML_ASIDE_AGENTS", 2)
    report = fleet_report(tmp_path, 5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta_report.html").write_text("the previous report")
    build = os.getpid()

    def no_space(pid: int) -> None:
        if pid != build:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "meta_report.html"))

    html_renderers(monkeypatch, tmp_path / "renderers.log", no_space)
    with pytest.raises(OSError) as raised:
        report_outputs.write_report(report, out, html_aside=True)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out / "meta_report.html")
    assert (out / "meta_report.html").read_text() == "the previous report"
    assert sorted(p.name for p in out.iterdir()) == ["meta_report.html", "meta_report.json", "meta_report.md"]


def test_a_bug_in_the_html_process_fails_the_write_with_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_outputs, "HTML_ASIDE_AGENTS", 2)
    report = fleet_report(tmp_path, 5)
    build = os.getpid()

    def broken(pid: int) -> None:
        if pid != build:
            raise KeyError("a bug in the renderer")

    html_renderers(monkeypatch, tmp_path / "renderers.log", broken)
    with pytest.raises(RuntimeError, match=r"(?s)writing .*meta_report.html failed in its process:.*KeyError: 'a bug in the renderer'"):
        report_outputs.write_report(report, tmp_path / "out", html_aside=True)
    assert not (tmp_path / "out" / "meta_report.html").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_report_command_writes_a_large_html_aside_unless_one_process_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    from meta_supervisor.cli import report as report_cli

    fleet_report(tmp_path, report_outputs.HTML_ASIDE_AGENTS + 10)  # writes traces.jsonl
    log = tmp_path / "renderers.log"
    html_renderers(monkeypatch, log)
    argv = ["--input", str(tmp_path / "traces.jsonl"), "--out", str(tmp_path / "out"), "--no-state", "--no-alpha-quality"]
    argv += ["--kill-file", str(tmp_path / "killed.json"), "--audit-log", str(tmp_path / "audit.jsonl"), "--quiet", "--workers", workers]
    assert report_cli.main(argv, now=lambda: NOW) == 0
    (renderer,) = renderers(log)
    assert (renderer == os.getpid()) == (workers == "1")  # --workers 1: no extra process at all
    assert (tmp_path / "out" / "meta_report.html").read_text().count("agent-0") >= report_outputs.HTML_ASIDE_AGENTS
