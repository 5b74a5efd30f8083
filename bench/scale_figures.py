"""The figures behind docs/scale.md's capacity model, measured on this machine.

    .venv/bin/python bench/scale_figures.py [--runs 20000] [--llm-calls 5] [--json out.json]

Sends ``runs`` agent runs (a root ``invoke_agent`` span with the run totals, ``llm-calls`` ``chat`` child
spans with GenAI usage attributes, three ``alpha.signal`` events) through the real SDK and OTLP/HTTP
into the real collector (``collector-config.yaml``, file exporter, the spanmetrics connector, as a
gateway runs it; then ``collector/agent-config.yaml`` in front of it, as an agent collector) and
reads each collector process's CPU time from ``/proc/<pid>/stat`` before and after: spans per
collector CPU-second and file bytes per span do not depend on how busy the machine is (wall time
does; it is printed, not used). The report's own speed is docs/benchmarks.md's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from otel import semconv
from otel.provider import configure_telemetry
from tests import stack

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def send_runs(endpoint: str, runs: int, llm_calls: int) -> int:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_MAX_QUEUE_SIZE": "65536", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    telemetry = configure_telemetry(env=env, instrument_openai=False, export_handoff=True)
    tracer = telemetry.tracer()
    for i in range(runs):
        totals = {semconv.RUN_LLM_CALLS: llm_calls, semconv.RUN_INPUT_TOKENS: 600 * llm_calls, semconv.RUN_OUTPUT_TOKENS: 90 * llm_calls}
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": f"agent_{i % 1000}",
            semconv.AGENT_RUN_ID: f"r{i}",
            **totals,
        }
        with tracer.start_as_current_span(f"invoke_agent agent_{i % 1000}", attributes=attributes) as root:
            for _ in range(llm_calls):
                chat = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.usage.input_tokens": 600,
                    "gen_ai.usage.output_tokens": 90,
                    "gen_ai.agent.name": f"agent_{i % 1000}",
                    semconv.AGENT_RUN_ID: f"r{i}",
                }
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes=chat):
                    pass
            for symbol in ("SPX", "AAPL", "WTI"):
                root.add_event(
                    semconv.EVENT_ALPHA_SIGNAL,
                    {
                        semconv.ALPHA_SYMBOL: symbol,
                        semconv.ALPHA_DIRECTION: "long",
                        semconv.ALPHA_CONFIDENCE: 0.61,
                        semconv.ALPHA_HORIZON: 5,
                    },
                )
    assert telemetry.shutdown(timeout_seconds=120)
    return telemetry.accounting.snapshot().exported


def measure(runs: int, llm_calls: int, through_agent: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if through_agent:
            fleet = stack.MultiHost(Path(tmp), ["bench"], gateways=1).start()
            gateway, agent = fleet.gateways[0], fleet.agent_collectors["bench"]
            endpoint, stop = agent.otlp_http_endpoint, fleet.stop
        else:
            gateway = stack.LocalStack(Path(tmp), with_jaeger=False).start()
            agent, endpoint, stop = None, gateway.otlp_http_endpoint, gateway.stop
        try:
            pids = {"gateway": gateway.collector.popen.pid} | ({"agent": agent.collector.popen.pid} if agent else {})
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            spans = send_runs(endpoint, runs, llm_calls)
            deadline = time.monotonic() + 300
            while (arrived := _span_count(gateway)) < spans:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the gateway's file has {arrived} of {spans} spans after 300 s\n{gateway.log_tails(5)}")
                time.sleep(1.0)
            wall = time.monotonic() - started
            used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            size = sum(path.stat().st_size for path in gateway.trace_files())
        finally:
            stop()
    out = {"tier": "agent collector -> gateway" if through_agent else "gateway", "runs": runs, "spans": spans, "wall_s": round(wall, 2)}
    out["file_bytes_per_span"] = round(size / spans)
    for name, seconds in used.items():
        out[f"{name}_cpu_s"] = round(seconds, 2)
        out[f"{name}_spans_per_cpu_s"] = round(spans / seconds) if seconds else None
    return out


def _span_count(gateway: stack.LocalStack) -> int:
    """Spans in the gateway's files (every span has one ``"spanId"`` key; parsing would cost more)."""
    return sum(path.read_bytes().count(b'"spanId"') for path in gateway.trace_files())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--llm-calls", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reason = stack.ensure_built()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    results = [measure(args.runs, args.llm_calls, through_agent=False), measure(args.runs, args.llm_calls, through_agent=True)]
    for row in results:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
