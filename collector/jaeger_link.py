"""Print the Jaeger URL of the latest run of an agent, after checking Jaeger really has it.

    python collector/jaeger_link.py [AGENT] [--trace-file telemetry/traces.jsonl] [--jaeger http://127.0.0.1:16686]

Finds the newest ``invoke_agent AGENT`` root span in the collector's file output, then asks Jaeger's
v3 query API for that trace (retrying for a few seconds while the collector delivers it).

Environment: ``ALPHATRACE_TRACE_FILE``, ``ALPHATRACE_JAEGER_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def newest_run(trace_file: str, agent: str) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    with open(trace_file, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # the line being written
            try:
                request = json.loads(line)
            except ValueError:
                continue
            for rs in request.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        if span.get("name") == f"invoke_agent {agent}" and not span.get("parentSpanId"):
                            start = int(span.get("startTimeUnixNano", 0))
                            if best is None or start > best[1]:
                                best = (span["traceId"], start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("agent", nargs="?", default="llm_analyst")
    parser.add_argument("--trace-file", default=os.environ.get("ALPHATRACE_TRACE_FILE", "telemetry/traces.jsonl"))
    parser.add_argument("--jaeger", default=os.environ.get("ALPHATRACE_JAEGER_URL", "http://127.0.0.1:16686"))
    args = parser.parse_args()
    found = newest_run(args.trace_file, args.agent)
    if found is None:
        print(f"no run of {args.agent} in {args.trace_file}", file=sys.stderr)
        return 1
    trace_id = found[0]
    api = f"{args.jaeger.rstrip('/')}/api/v3/traces/{trace_id}"
    for _ in range(20):
        try:
            with urllib.request.urlopen(api, timeout=5) as response:
                if response.status == 200:
                    print(f"latest {args.agent} run in Jaeger: {args.jaeger.rstrip('/')}/trace/{trace_id}")
                    print(f"  (API: {api})")
                    return 0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    print(f"trace {trace_id} is in {args.trace_file} but Jaeger at {args.jaeger} does not have it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
