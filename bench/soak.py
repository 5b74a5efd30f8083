"""Soak: many agents on the real scheduler for a long time; memory must stay flat and every span must
sit under its own run.

    .venv/bin/python bench/soak.py [--agents 50] [--minutes 10] [--interval 1.0] [--out DIR]

The agents are the shipped four modules, repeated under distinct names, on the shipped market data
(replayed as of 2017-06-30), the LLM over the simulated transport, spans to the embedded file exporter.
RSS is sampled every 15 s; at the end the trace file is checked: every LLM span's parent is a run span
with the same ``alphatrace.run.id`` and agent name.

Reads no environment variables beyond what the modules it starts document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scheduler
from otel import semconv
from otel.provider import configure_telemetry
from services.ai_analysis import resolve_llm_settings
from services.clock import ReplayClock
from services.fleet_config import AgentSpec, load_fleet_config
from services.kill_switch import KillSwitch
from services.market_data import CsvMarketData

MODULES = ("agents.momentum", "agents.mean_reversion", "agents.llm_analyst", "agents.ensemble")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def check_tree(trace_file: Path) -> dict[str, int]:
    spans = {}
    for line in trace_file.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    span["attrs"] = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    spans[span["spanId"]] = span
    children = [s for s in spans.values() if s.get("parentSpanId")]
    misparented = sum(
        1
        for c in children
        if spans.get(c["parentSpanId"], {}).get("attrs", {}).get(semconv.AGENT_RUN_ID) != c["attrs"].get(semconv.AGENT_RUN_ID)
        or spans[c["parentSpanId"]]["attrs"].get("gen_ai.agent.name") != c["attrs"].get("gen_ai.agent.name")
    )
    return {"spans": len(spans), "runs": len(spans) - len(children), "llm_spans": len(children), "misparented": misparented}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between runs of each agent")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="alphatrace-soak-"))
    trace_file = folder / "traces.jsonl"
    fleet = load_fleet_config()
    agents = {f"agent_{i:02d}": AgentSpec(f"agent_{i:02d}", MODULES[i % len(MODULES)], args.interval) for i in range(args.agents)}
    object.__setattr__(fleet, "agents", agents)
    object.__setattr__(fleet, "max_workers", args.agents)
    telemetry = configure_telemetry(trace_file=trace_file, llm_simulated=True, env={})
    settings = resolve_llm_settings({"provider": "simulated"}, env={})
    fleet_scheduler = scheduler.build_fleet(
        fleet, telemetry, ReplayClock(date(2017, 6, 30)), CsvMarketData(), KillSwitch(folder / "killed.json"), settings
    )
    samples = []
    fleet_scheduler.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(15)
            samples.append((round(time.monotonic() - started), round(rss_mb(), 1)))
            print(f"t={samples[-1][0]:>4}s rss={samples[-1][1]} MB", flush=True)
    finally:
        fleet_scheduler.shutdown(wait=True)
        telemetry.shutdown()
    tree = check_tree(trace_file)
    first_half = [rss for t, rss in samples if t <= args.minutes * 30]
    second_half = [rss for t, rss in samples if t > args.minutes * 30]
    result = {
        "agents": args.agents,
        "minutes": args.minutes,
        "interval_s": args.interval,
        **tree,
        "rss_mb_first_sample": samples[0][1] if samples else None,
        "rss_mb_last_sample": samples[-1][1] if samples else None,
        "rss_mb_max_first_half": max(first_half, default=None),
        "rss_mb_max_second_half": max(second_half, default=None),
        "accounting": telemetry.accounting.snapshot().describe(),
        "trace_file_mb": round(trace_file.stat().st_size / 1e6, 1),
    }
    print(json.dumps(result, indent=2))
    return 0 if tree["misparented"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
