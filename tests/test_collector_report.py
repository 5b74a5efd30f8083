"""The meta report reads what the real collector writes: the same per-agent figures from the
collector's file (fed over OTLP http/protobuf and gRPC) as from the embedded exporter for the same
workload, and rotated, zstd-compressed and protobuf output read transparently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scheduler
from otel.provider import configure_telemetry
from services.agent_run_wrapper import AgentRunWrapper
from tests import stack

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
# Figures that depend only on the workload, not on timing or ids.
DETERMINISTIC = (
    "runs",
    "errors",
    "error_rate",
    "skipped_killed",
    "llm_calls",
    "tokens_in",
    "tokens_out",
    "tokens",
    "tokens_cached",
    "cost_usd",
    "alpha_signals",
    "simulated_llm_calls",
    "unpriced_llm_calls",
    "outcomes",
    "alpha_by_symbol",
    "models",
)


def report(inputs: list[Path], out: Path) -> dict:
    args = [sys.executable, "meta_supervisor/build_meta_report.py", "--out", str(out), "--no-state", "--quiet", "--format", "json"]
    for path in inputs:
        args += ["--input", str(path)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "meta_report.json").read_text())


def figures(built_report: dict) -> dict:
    return {name: {key: agent.get(key) for key in DETERMINISTIC} for name, agent in built_report["agents"].items()}


def _replay(world, monkeypatch, days: int, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert scheduler.main(["--replay", "--days", str(days), "--config", str(world["config"])]) == 0
    for key in env:
        monkeypatch.delenv(key)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_file_gives_the_same_report_as_the_embedded_exporter(built, world, tmp_path, monkeypatch, protocol):
    embedded_file = tmp_path / "embedded" / "traces.jsonl"
    _replay(world, monkeypatch, 4, ALPHATRACE_TRACE_FILE=str(embedded_file))
    with stack.LocalStack(tmp_path / "stack", with_jaeger=False) as running:
        endpoint = running.otlp_http_endpoint if protocol == "http/protobuf" else f"http://{running.otlp_grpc_endpoint}"
        _replay(world, monkeypatch, 4, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
        expected_spans = sum(1 for line in embedded_file.read_text().splitlines() for _ in _spans(line))
        running.wait_for_trace_lines(lambda lines: sum(1 for line in lines for _ in _spans(line)) >= expected_spans)
        collector_file = running.trace_file
        from_collector = report([collector_file], tmp_path / "out-collector")
    from_embedded = report([embedded_file], tmp_path / "out-embedded")
    assert from_embedded["inputs"]["spans"] == from_collector["inputs"]["spans"] == expected_spans
    assert figures(from_collector) == figures(from_embedded)
    assert figures(from_embedded)["llm_analyst"]["llm_calls"] == 4
    assert all(agent["consistency"]["mismatched"] == 0 for agent in from_collector["agents"].values())


def _spans(line: str):
    for rs in json.loads(line).get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            yield from ss.get("spans", [])


def _emit_runs(endpoint: str, runs: int) -> int:
    telemetry = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, instrument_openai=False)
    wrapper = AgentRunWrapper(telemetry.tracer(), accounting=telemetry.accounting)

    def agent() -> None:
        # Incompressible bytes, so that 1 MB rotation happens even with zstd.
        with telemetry.tracer().start_as_current_span("load prices", attributes={"note": os.urandom(1200).hex()}):
            pass

    for _ in range(runs):
        wrapper.run("momentum", agent)
    assert telemetry.shutdown(timeout_seconds=30)
    return telemetry.accounting.snapshot().exported


@pytest.mark.parametrize(
    ("name", "env", "args"),
    [
        ("rotated json", {"ALPHATRACE_TRACE_FILE_MAX_MEGABYTES": "1"}, []),
        ("rotated zstd", {"ALPHATRACE_TRACE_FILE_MAX_MEGABYTES": "1", "ALPHATRACE_TRACE_FILE_COMPRESSION": "zstd"}, []),
        ("zstd native", {"ALPHATRACE_TRACE_FILE_COMPRESSION": "zstd"}, ["--feature-gates=exporter.file.nativeCompression"]),
        ("proto", {"ALPHATRACE_TRACE_FILE_FORMAT": "proto", "ALPHATRACE_TRACE_FILE_MAX_MEGABYTES": "1"}, []),
    ],
)
def test_rotated_compressed_and_proto_output_is_read_by_the_report(built, tmp_path, name, env, args):
    runs = 1500
    with stack.LocalStack(tmp_path / "stack", with_jaeger=False, env=env, collector_args=args) as running:
        exported = _emit_runs(running.otlp_http_endpoint, runs)
        folder = running.trace_file.parent
        deadline = time.monotonic() + 30
        built_report = {}
        while time.monotonic() < deadline:
            built_report = report([folder], tmp_path / "out")
            if built_report["inputs"]["spans"] >= exported:
                break
            time.sleep(0.5)
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert exported == 2 * runs
    assert built_report["inputs"]["spans"] == exported, (name, files)
    assert built_report["agents"]["momentum"]["runs"] == runs
    assert built_report["inputs"]["bad_lines"] == 0 and built_report["inputs"]["duplicate_spans"] == 0
    if "MAX_MEGABYTES" in json.dumps(env):
        assert len(files) > 1, f"{name}: expected rotated backups, got {files}"
