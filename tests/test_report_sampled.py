"""A trace file from a tail-sampling collector (issue 18): the report says its input was sampled and
never presents its counts as totals; the counts themselves are what the file holds, as without the mark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.render.markdown import render_markdown
from otel import semconv
from tests import genai_fixtures
from tests.test_genai_shapes import NOW, PRICES, report_of

STATEMENT = "tail: every error, stopped or refused run and span over 30000 ms; 10% of the rest"


@pytest.fixture(params=["off", "on"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(native_core.ENV, request.param)
    return request.param


def _mark_first_lines(path: Path, lines: int) -> int:
    """Put the collector's sampling mark on the resources of the first ``lines`` lines; returns
    how many spans they hold."""
    out, marked = [], 0
    for number, line in enumerate(path.read_text().splitlines()):
        request = json.loads(line)
        if number < lines:
            for resource_spans in request["resourceSpans"]:
                resource = resource_spans.setdefault("resource", {})
                resource.setdefault("attributes", []).append({"key": semconv.RESOURCE_SAMPLING, "value": {"stringValue": STATEMENT}})
                marked += sum(len(scope.get("spans", [])) for scope in resource_spans["scopeSpans"])
        out.append(json.dumps(request, separators=(",", ":")))
    path.write_text("\n".join(out) + "\n")
    return marked


def test_a_sampled_file_is_reported_as_sampled_with_the_same_counts(reader: str, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plain = report_of(tmp_path / "plain", "genai_tool_calling")
    path = genai_fixtures.write(tmp_path, "genai_tool_calling")
    marked = _mark_first_lines(path, 2)
    assert 0 < marked < plain["inputs"]["spans"]
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
    sampled = build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)

    assert plain["inputs"]["tail_sampled_spans"] == 0
    assert sampled["inputs"]["tail_sampled_spans"] == marked
    assert sampled["agents"] == plain["agents"]  # the mark changes what is said, not what is counted
    [item] = [i for i in sampled["needs_attention"] if i["kind"] == "tail_sampled"]
    assert item["value"] == marked and "not totals" in item["why"]
    assert not [i for i in plain["needs_attention"] if i["kind"] == "tail_sampled"]
    assert "**Sampled input**" in render_markdown(sampled) and "Sampled input" not in render_markdown(plain)
